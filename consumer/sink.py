"""A batch's rows into PostgreSQL: one transaction when the database takes them all; when it
refuses a row (a data error, not an outage), the rows are written one by one so that the
one bad row becomes an error row and its neighbours are still classified."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Optional, Protocol

import psycopg2

from common.errors import ErrorType, TransientError, VisionScalingError, pg_error_is_transient
from consumer.messages import Message
from db.embeddings import Embedding
from db.events import KeyEvent
from db.queries import ErrorRow, Prediction, ShadowPrediction, write_batch

log = logging.getLogger(__name__)


Refused = list[tuple[Message, ErrorRow]]
Arrivals = dict[tuple[str, str], int]  # (source, kind) -> count, db.events.count_arrivals


class RowSink(Protocol):
    def write(
        self,
        predictions: list[tuple[Message, Prediction]],
        failures: list[tuple[Message, ErrorRow]],
        shadows: Sequence[ShadowPrediction] = (),
        events: Sequence[KeyEvent] = (),
        arrivals: Optional[Arrivals] = None,
        vectors: Sequence[Embedding] = (),
    ) -> Refused:
        """Write all rows, with the S3 events their keys arrived by, the arrival counts and the
        images' embeddings, or
        raise TransientError; returns the messages whose row was refused, each with the error
        row recorded for it instead."""

    def close(self) -> None: ...


class RowsRefused(VisionScalingError):
    """PostgreSQL answered, and refused these rows for what they contain."""


class RowWriter:
    """Owns the worker's database connection (opened on first use, reopened after an outage)."""

    def __init__(self, connect: Callable):
        self.connect = connect
        self._conn = None

    def _write(
        self,
        predictions: list[Prediction],
        errors: list[ErrorRow],
        shadows: Sequence[ShadowPrediction] = (),
        events: Sequence[KeyEvent] = (),
        arrivals: Optional[Arrivals] = None,
        vectors: Sequence[Embedding] = (),
    ) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self.connect()
            write_batch(self._conn, predictions, errors, shadows, events, arrivals, vectors)
        except psycopg2.Error as exc:
            if pg_error_is_transient(exc):
                self.close()
                raise TransientError(f"PostgreSQL unavailable: {str(exc).strip()}") from exc
            raise RowsRefused(f"{type(exc).__name__} [{exc.pgcode}]: {str(exc).strip()}"[:1000]) from exc

    def write(
        self,
        predictions: list[tuple[Message, Prediction]],
        failures: list[tuple[Message, ErrorRow]],
        shadows: Sequence[ShadowPrediction] = (),
        events: Sequence[KeyEvent] = (),
        arrivals: Optional[Arrivals] = None,
        vectors: Sequence[Embedding] = (),
    ) -> list[tuple[Message, ErrorRow]]:
        """Write everything; returns the messages whose row was refused, with the error row
        recorded for them instead (TransientError when the database is unreachable). Shadow
        rows are not the record of anything: when the batch is refused they are left out.
        One by one, each row goes with its key's events and embedding, so an event is applied
        with its row and no embedding is written without one."""
        try:
            self._write([p for _, p in predictions], [e for _, e in failures], shadows, events, arrivals, vectors)
            return []
        except RowsRefused as exc:
            log.warning("batch of %d rows refused (%s); writing them one by one", len(predictions) + len(failures), exc)
        by_key: dict[str, list[KeyEvent]] = {}
        for e in events:
            by_key.setdefault(e.image_key, []).append(e)
        rows = [*predictions, *failures]
        with_rows = {row.image_key for _, row in rows}
        self._write([], [], events=[e for e in events if e.image_key not in with_rows], arrivals=arrivals)
        refused: list[tuple[Message, ErrorRow]] = []
        for m, row in rows:
            own = by_key.pop(row.image_key, [])  # a key's events go with its first row only
            try:
                if isinstance(row, Prediction):
                    self._write([row], [], events=own, vectors=[v for v in vectors if v.image_key == row.image_key])
                else:
                    self._write([], [row], events=own)
            except RowsRefused as exc:
                by_key[row.image_key] = own  # applied with the error row that replaces it
                refused.append(
                    (
                        m,
                        ErrorRow(
                            row.image_key,
                            row.model,
                            ErrorType.INTERNAL,
                            f"PostgreSQL refused the row: {exc}",
                            row.hostname,
                        ),
                    )
                )
        for m, err in refused:
            try:
                self._write([], [err], events=by_key.pop(err.image_key, []))
            except RowsRefused as exc:  # not even an error row: the dead-letter topic is its record
                log.error(
                    "no row could be written for %r (partition %d offset %d): %s; it goes to "
                    "the dead-letter topic only",
                    err.image_key[:200],
                    m.partition,
                    m.offset,
                    exc,
                )
        return refused

    def close(self) -> None:
        conn: Optional[object] = self._conn
        self._conn = None
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                pass
