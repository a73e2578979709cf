"""SIGTERM is how a worker normally ends (a rolling deploy, a scale-down): it must end within
SHUTDOWN_TIMEOUT_S plus Faust's own stop, lose nothing and write nothing twice, also while its
batch waits out an outage. Real stack, real `faust worker` processes, real producer."""

from __future__ import annotations

from infra import postgres
from infra import versitygw as s3  # the S3 service
from infra.fleet import counts
from tests.e2e.streams import check_exactly_once, corpus, producer_succeeded, report, setup

SHUTDOWN_TIMEOUT_S = 5
# Faust's own stop after the drain (commit, leave the group, close clients) takes a few seconds
STOP_MARGIN_S = 10


def _env(settings, stack_env):
    s, env = setup(settings, stack_env)
    return s, {**env, "SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S), "RETRY_BACKOFF_MAX_S": "2"}


def test_sigterm_mid_stream_then_a_rolling_restart_of_three_workers(
    e2e, stack_settings, db_conn, dev_images, stack_env
):
    keys = corpus(stack_settings, dev_images, copies=3)
    s, env = _env(stack_settings, stack_env)
    fleet, producer = e2e.stream(s, env, "rolling", keys, seconds=60, workers=3)
    stops = []
    fleet.wait_for("the first 100 rows", lambda: sum(counts(s)) >= 100, 300)
    for name in ("worker-1", "worker-2", "worker-3"):
        rows_before = sum(counts(s))
        took, code = fleet.terminate(name)
        stops.append({"worker": name, "exit_s": round(took, 1), "exit_code": code, "rows_before": rows_before})
        assert took < SHUTDOWN_TIMEOUT_S + STOP_MARGIN_S, f"{name} took {took:.1f}s to stop"
        fleet.start(name)
        fleet.wait_for("3 workers in the group again", lambda: fleet.members() == 3, 120)
    producer_succeeded(producer)
    fleet.wait_rows(len(keys), 600)
    assert stops[-1]["rows_before"] < len(keys), "the stream ended before the last restart"
    e2e.stop()
    figures = check_exactly_once(s, keys)
    report("sigterm-rolling", {**figures, "stops": stops})


def _sigterm_during_outage(e2e, settings, stack_env, dev_images, stack, name, stop, start):
    keys = corpus(settings, dev_images, copies=2)
    s, env = _env(settings, stack_env)
    fleet, producer = e2e.stream(s, env, name, keys, seconds=20)
    fleet.wait_for("the first 100 rows", lambda: sum(counts(s)) >= 100, 300)
    stop(stack)
    fleet.wait_for("worker-1 retrying its batch", lambda: fleet.metric("worker-1", "vs_batch_retries_total") >= 1, 120)
    took, code = fleet.terminate("worker-1")
    # before the bounded drain, Faust waited for the batch until the service came back
    assert took < SHUTDOWN_TIMEOUT_S + STOP_MARGIN_S, f"worker-1 took {took:.1f}s to stop during the outage"
    start(stack)
    fleet.start("worker-3")  # a new worker, as a deployment would start one
    producer_succeeded(producer)
    fleet.wait_rows(len(keys), 600)
    e2e.stop()
    figures = check_exactly_once(s, keys)
    report(name, {**figures, "sigterm_exit_s": round(took, 1), "exit_code": code})


def test_sigterm_while_postgres_is_down(e2e, stack_settings, db_conn, dev_images, stack_env, stack):
    _sigterm_during_outage(
        e2e, stack_settings, stack_env, dev_images, stack, "sigterm-pg", postgres.stop, postgres.start
    )


def test_sigterm_while_s3_is_down(e2e, stack_settings, db_conn, dev_images, stack_env, stack):
    _sigterm_during_outage(e2e, stack_settings, stack_env, dev_images, stack, "sigterm-s3", s3.stop, s3.start)
