"""Fault injection on the real stack: workers killed with SIGKILL, the broker restarted,
PostgreSQL and S3 taken away mid-stream. Every key must end in exactly one row.

Figures of each run go to test-artifacts/reliability-*.json (docs/reliability.md).
VS_FAULT_KILLS (default 5) sets how many kills the kill test makes; 20 is the soak run.
"""

from __future__ import annotations

import os
import random
import time

from infra import kafka, postgres
from infra import versitygw as s3  # the S3 service
from infra.fleet import counts
from tests.e2e.streams import check_exactly_once, corpus, producer_succeeded, report, setup


def test_workers_killed_with_sigkill_lose_nothing(e2e, stack_settings, db_conn, dev_images, stack_env):
    kills_wanted = int(os.environ.get("VS_FAULT_KILLS", "5"))
    keys = corpus(stack_settings, dev_images, copies=4)
    s, env = setup(stack_settings, stack_env)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    fleet, producer = e2e.stream(s, env, "kill", keys, seconds=6.0 * kills_wanted)
    kills, started = [], time.monotonic()
    while len(kills) < kills_wanted:
        time.sleep(rng.uniform(1.5, 5.0))
        done = sum(counts(s))
        if done >= len(keys):
            break
        victim = rng.choice(sorted(fleet.procs))
        fleet.kill9(victim)
        kills.append({"t": round(time.monotonic() - started, 1), "worker": victim, "rows_before": done})
        fleet.start(victim)
    producer_succeeded(producer)
    fleet.wait_rows(len(keys), 900)
    time.sleep(3)
    assert all(fleet.alive().values()), "a worker died on its own"
    e2e.stop()
    assert len(kills) >= kills_wanted, f"the stream ended after {len(kills)} kills (seed {seed})"
    figures = check_exactly_once(s, keys)
    report(
        "kill9",
        {
            **figures,
            "kills": len(kills),
            "seed": seed,
            "kill_log": kills,
            "seconds": round(time.monotonic() - started, 1),
        },
    )


def _outage(e2e, settings, db_conn, dev_images, stack_env, stack, name, stop, start, pause_s, copies=2):
    keys = corpus(settings, dev_images, copies=copies)
    s, env = setup(settings, stack_env)
    fleet, producer = e2e.stream(s, env, name, keys, seconds=pause_s + 30)
    fleet.wait_for("the first 150 rows", lambda: sum(counts(s)) >= 150, 300)
    stop(stack)
    down_at = time.monotonic()
    while time.monotonic() - down_at < pause_s:
        assert all(fleet.alive().values()), f"a worker died while {name} was down"
        time.sleep(1)
    start(stack)
    rows_at_restart = sum(counts(s))
    producer_succeeded(producer)
    fleet.wait_rows(len(keys), 600)
    time.sleep(3)
    assert all(fleet.alive().values()), "a worker died"
    e2e.stop()
    figures = check_exactly_once(s, keys)
    assert rows_at_restart < len(keys), "the outage came too late to test anything"
    report(name, {**figures, "outage_s": pause_s, "rows_when_service_returned": rows_at_restart})


def test_kafka_broker_restart_mid_stream(e2e, stack_settings, db_conn, dev_images, stack_env, stack):
    _outage(
        e2e, stack_settings, db_conn, dev_images, stack_env, stack, "kafka-restart", kafka.stop, kafka.start, pause_s=5
    )


def test_postgres_down_for_30s_mid_stream(e2e, stack_settings, db_conn, dev_images, stack_env, stack):
    _outage(
        e2e,
        stack_settings,
        db_conn,
        dev_images,
        stack_env,
        stack,
        "postgres-down",
        postgres.stop,
        postgres.start,
        pause_s=30,
    )


def test_s3_unreachable_for_10s_mid_stream(e2e, stack_settings, db_conn, dev_images, stack_env, stack):
    _outage(e2e, stack_settings, db_conn, dev_images, stack_env, stack, "s3-down", s3.stop, s3.start, pause_s=10)
