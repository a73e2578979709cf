"""Trainings started from the viewer (migration 0013): one running job per model name, a
heartbeat while its viewer watches it, and its end. Only SQL; viewer/jobs.py runs them."""

from __future__ import annotations

from typing import Optional

import psycopg2
import psycopg2.extensions

from common.errors import VisionScalingError

Conn = psycopg2.extensions.connection


class AlreadyRunning(VisionScalingError, RuntimeError):
    """The model name has a training running already."""


def mark_lost(conn: Conn, stale_s: float) -> int:
    """Running jobs whose viewer stopped beating: lost, so they never stay "running"."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE training_jobs SET state = 'lost', finished_at = now(),
                      message = 'the viewer that ran it stopped (' || coalesce(message, 'no output') || ')'
               WHERE state = 'running' AND heartbeat < now() - %s * interval '1 second'""",
            (stale_s,),
        )
        return cur.rowcount


def start(conn: Conn, model_name: str, who: str) -> int:
    """A new running job; AlreadyRunning when the name has one."""
    with conn.cursor() as cur:
        cur.execute("SAVEPOINT job")
        try:
            cur.execute(
                "INSERT INTO training_jobs (model_name, started_by) VALUES (%s, %s) RETURNING id", (model_name, who)
            )
        except psycopg2.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT job")
            raise AlreadyRunning(model_name) from None
        return cur.fetchone()[0]


def beat(conn: Conn, job_id: int, message: Optional[str]) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE training_jobs SET heartbeat = now(), message = coalesce(%s, message) WHERE id = %s",
            (message, job_id),
        )


def finish(conn: Conn, job_id: int, state: str, message: str, version: Optional[int]) -> None:
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE training_jobs SET state = %s, message = %s, version = %s, finished_at = now(), heartbeat = now()
               WHERE id = %s""",
            (state, message, version, job_id),
        )


def recent(conn: Conn, stale_s: float, model_name: Optional[str] = None, limit: int = 20) -> list[dict]:
    """The newest jobs; a running one not heard of for stale_s shows as lost (a read writes nothing:
    the next start records it)."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT id, model_name, started_by, started_at, finished_at,
                      CASE WHEN state = 'running' AND heartbeat < now() - %s * interval '1 second'
                           THEN 'lost' ELSE state END,
                      message, version
               FROM training_jobs WHERE %s::text IS NULL OR model_name = %s ORDER BY id DESC LIMIT %s""",
            (stale_s, model_name, model_name, limit),
        )
        return [
            {
                "id": i,
                "model": m,
                "started_by": b,
                "started_at": s.isoformat(),
                "finished_at": f and f.isoformat(),
                "state": st,
                "message": msg,
                "version": v,
            }
            for i, m, b, s, f, st, msg, v in cur.fetchall()
        ]
