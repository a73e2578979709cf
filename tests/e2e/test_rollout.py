"""A promote in the middle of a stream on two running `faust worker` processes serving two
models on one trunk pass (a trained one and ImageNet's), then shadow, compare and rollback, on
the real stack: every key one row per model, the version that wrote it in the row, no v1 row
written on a host after it switched to v2, no restart."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

from db.connection import connect
from infra.fleet import REPO, counts
from tests.e2e.streams import (
    check_exactly_once,
    corpus,
    producer_succeeded,
    report,
    setup,
)


def training(env, *args) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "training", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout


def rows_by_version(settings, name: str) -> list[tuple[str, int, str, float]]:
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT image_key, model_version, hostname, extract(epoch FROM time)::float8 FROM prediction_results"
                " WHERE model = %s",
                (name,),
            )
            return cur.fetchall()
    finally:
        conn.close()


def test_promote_mid_stream_shadow_and_rollback_without_a_restart(
    e2e, stack_settings, db_conn, dev_images, stack_env, coarse_dir, weights_path, tmp_path
):
    name = f"coarse-{uuid.uuid4().hex[:6]}"
    # a throwaway model's exported graphs go with the test, not into the user's cache
    cache = {"MODEL_CACHE_DIR": str(tmp_path / "cache")}
    base_env = {**stack_env, **cache, "MODEL_WEIGHTS": str(weights_path), "TORCH_THREADS": "2"}
    training(base_env, "fit", str(coarse_dir), "--name", name)
    training(base_env, "fit", str(coarse_dir), "--name", name, "--max-epochs", "4", "--seed", "1")
    training(base_env, "promote", f"{name}@1")

    keys = corpus(stack_settings, dev_images, copies=2)
    s, env = setup(stack_settings.model_copy(update={"model_name": name}), stack_env)
    env = {
        **env,
        **cache,
        "MODEL_NAMES": f"{name},squeezenet1_1",
        "MODEL_POLL_S": "1",
        "MODEL_WEIGHTS": str(weights_path),
    }
    fleet, producer = e2e.stream(s, env, "rollout", keys, seconds=30)
    fleet.wait_for("the first 250 rows", lambda: sum(counts(s)) >= 250, 300)
    promoted_at = time.time()
    training(env, "promote", f"{name}@2")
    producer_succeeded(producer)
    fleet.wait_rows(len(keys), 600)
    figures = check_exactly_once(s, keys)
    rows = rows_by_version(s, name)

    # shadow the retired v1 beside production v2 on a second stream, then compare
    training(env, "shadow", f"{name}@1")
    time.sleep(3)  # > MODEL_POLL_S + load
    extra = [f"again/{k}" for k in keys[:200]]
    s3 = s.s3_client()
    for k in extra:
        s3.copy_object(Bucket=s.s3_bucket, Key=k, CopySource={"Bucket": s.s3_bucket, "Key": k[len("again/") :]})
    producer2 = e2e.producer(env, extra, "rollout-shadow")
    producer_succeeded(producer2)
    fleet.wait_rows(len(keys) + len(extra), 300)
    compared = training(env, "compare", name)

    # rollback: promote v1 again; new keys get v1, rows of v2 are never overwritten by v1
    training(env, "promote", f"{name}@1")
    time.sleep(3)
    rolled = [f"rolled/{k}" for k in keys[:100]]
    for k in rolled:
        s3.copy_object(Bucket=s.s3_bucket, Key=k, CopySource={"Bucket": s.s3_bucket, "Key": k[len("rolled/") :]})
    producer3 = e2e.producer(env, rolled + keys[:50], "rollout-rollback")  # the 50 old keys: already v2
    producer_succeeded(producer3)
    fleet.wait_rows(len(keys) + len(extra) + len(rolled), 300)
    time.sleep(3)
    assert all(fleet.alive().values()) and fleet.starts == 2, "a worker restarted or died"
    e2e.stop()
    imagenet = check_exactly_once(s, [*keys, *extra, *rolled], model="squeezenet1_1")
    assert {v for _, v, _, _ in rows_by_version(s, "squeezenet1_1")} == {0}  # the built-in has no versions

    v1 = [r for r in rows if r[1] == 1]
    v2 = [r for r in rows if r[1] == 2]
    assert v1 and v2, f"v1 rows {len(v1)}, v2 rows {len(v2)}: the promote did not land mid-stream"
    switch = {}
    for host in {r[2] for r in rows}:
        last_v1 = max((r[3] for r in v1 if r[2] == host), default=0)
        first_v2 = min((r[3] for r in v2 if r[2] == host), default=float("inf"))
        assert last_v1 < first_v2, f"{host} wrote a v1 row after its first v2 row"
        switch[host] = round(first_v2 - promoted_at, 1)
    assert all(lag < 20 for lag in switch.values()), f"seconds from promote to a host's first v2 row: {switch}"

    final = {k: v for k, v, _, _ in rows_by_version(s, name)}
    assert all(final[f"rolled/{k}"] == 1 for k in keys[:100])
    assert all(final[k] == 2 for k in keys[:50] if k in {r[0] for r in v2})  # never back to v1
    conn = connect(s)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM shadow_predictions WHERE model = %s AND version = 1", (name,))
        shadow_rows = cur.fetchone()[0]
    conn.close()
    assert shadow_rows >= len(extra)
    assert "top-1 agreement" in compared
    report(
        "rollout",
        {
            **figures,
            "v1_rows": len(v1),
            "v2_rows": len(v2),
            "switch_s_by_host": switch,
            "shadow_rows": shadow_rows,
            "imagenet_rows": imagenet["rows"],
            "compare": compared.splitlines()[0],
        },
    )
