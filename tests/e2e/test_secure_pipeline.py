"""The whole pipeline on the locked-down stack (`python -m infra.stack up --secure`: Kafka over
SASL_SSL with ACLs, PostgreSQL and S3 over verified TLS), each process with only its own rights:
the workers as the `worker` principal and a vs_worker login, the producer as `producer` with the
read-only vs_viewer login, training and promotion as vs_trainer, the viewer and consumer.status
as `monitor`. Upload, produce, two workers, rows; a promote mid-stream; the viewer; a missing
key's error row and dead letter; and no secret in any log, output, dead letter or error row."""

from __future__ import annotations

import csv
import http.cookiejar
import json
import re
import sys
import time
import urllib.parse
import urllib.request
import uuid

from confluent_kafka import Consumer

from common.reach import kafka_config
from db.connection import connect
from infra import postgres, secure
from infra.fleet import ARTIFACTS, counts, fleet_env, run
from tests.e2e.browser import start_viewer
from tests.e2e.streams import check_exactly_once, producer_succeeded


def _names(secure_stack):
    """A pipeline of the test's own (topic, dead-letter topic, group, bucket), granted as an
    operator would for a new pipeline: topics made by admin, each principal's ACLs."""
    tag = uuid.uuid4().hex[:6]
    topic, dead, group = f"secure-{tag}", f"secure-{tag}-dead", f"vs-secure-{tag}"
    secure.grant(secure_stack.cfg, topic, dead, group)
    return {"KAFKA_TOPIC": topic, "KAFKA_DEAD_LETTER_TOPIC": dead, "FAUST_APP_ID": group, "S3_BUCKET": f"sec-{tag}"}


def _coarse_labels(shared_dir, prefix: str, path) -> None:
    """image_key,category for the dev photos the coarse map covers: what `fit --labels` reads."""
    coarse = {r["class_index"]: r["coarse"] for r in csv.DictReader((shared_dir / "images" / "coarse.csv").open())}
    dev = csv.DictReader((shared_dir / "images" / "dev" / "labels.csv").open())
    rows = [(f"{prefix}/{r['filename']}", coarse[r["class_index"]]) for r in dev if r["class_index"] in coarse]
    path.write_text("image_key,category\n" + "".join(f"{k},{c}\n" for k, c in rows))


def _viewer_session(url: str, name: str, password: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(url + "/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"name": name, "password": password, "csrf_token": token}).encode()
    assert opener.open(url + "/login", data=form, timeout=10).status == 200
    return opener


def test_the_pipeline_on_the_locked_down_stack(e2e, secure_stack, dev_images, shared_dir, weights_path, tmp_path):
    names = _names(secure_stack)
    common = {**names, "MODEL_WEIGHTS": str(weights_path), "MODEL_CACHE_DIR": str(tmp_path / "cache")}
    admin = secure_stack.env("admin", None, **common)
    trainer = secure_stack.env("monitor", "trainer", **common, TORCH_THREADS="2")
    producer = secure_stack.env("producer", "viewer", **common)
    monitor = secure_stack.env("monitor", "viewer", **common)
    settings = secure_stack.settings("admin", None, **common)
    outputs: list[str] = []

    def sh(cmd: list[str], env: dict) -> str:
        res = run([sys.executable, *cmd], env)
        outputs.append(res.stdout + res.stderr)
        return res.stdout

    uploaded = sh(["upload.py", str(dev_images), "--prefix", "p0"], admin)
    assert "uploaded 500, skipped 0, failed 0; 500 new keys registered" in uploaded

    # phase 1: ImageNet's model, two workers as `worker`, the producer as `producer`
    workers = fleet_env(settings, secure_stack.env("worker", "worker", **common))
    fleet = e2e.fleet(settings, workers, "secure", workers=2)
    assert "sent 500 of 500 keys" in sh(["-m", "producer"], producer)
    fleet.wait_rows(500, 600)

    def status() -> dict:
        return json.loads(sh(["-m", "consumer.status", "--json"], monitor))

    fleet.wait_for("offsets committed (lag 0)", lambda: status()["kafka"]["total_lag"] == 0, 60)
    st = status()
    assert st["kafka"]["group_state"] == "STABLE" and len(st["kafka"]["members"]) == 2
    assert st["database"]["results_total"] == 500
    check_exactly_once(settings, sorted(f"p0/{p.name}" for p in dev_images.glob("*.JPEG")))
    fleet.stop()

    # phase 2: a model of coarse categories trained from the stored embeddings as vs_trainer,
    # served beside ImageNet's; version 2 promoted while the stream runs
    model = f"coarse-{uuid.uuid4().hex[:6]}"
    labels = tmp_path / "coarse.csv"
    _coarse_labels(shared_dir, "p0", labels)
    for seed in ("0", "1"):
        sh(["-m", "training", "fit", "--labels", str(labels), "--name", model, "--seed", seed], trainer)
    sh(["-m", "training", "promote", f"{model}@1"], trainer)
    sh(["upload.py", str(dev_images), "--prefix", "p1"], admin)
    keys = sorted(f"p1/{p.name}" for p in dev_images.glob("*.JPEG"))
    s2 = settings.model_copy(update={"model_name": model})
    serving = {**workers, "MODEL_NAMES": f"{model},squeezenet1_1", "MODEL_POLL_S": "1"}
    fleet2 = e2e.fleet(s2, serving, "secure-promote", workers=2)
    stream = e2e.producer(producer, keys, fleet2.tag, rate=len(keys) / 30)
    fleet2.wait_for("the first 150 rows", lambda: counts(s2)[0] >= 150, 300)
    sh(["-m", "training", "promote", f"{model}@2"], trainer)
    producer_succeeded(stream)
    fleet2.wait_rows(len(keys), 600)
    fleet2.wait_for("offsets committed (lag 0)", lambda: status()["kafka"]["total_lag"] == 0, 60)
    fleet2.stop()
    check_exactly_once(s2, keys)
    check_exactly_once(settings, [*(f"p0/{p.name}" for p in dev_images.glob("*.JPEG")), *keys])
    conn = connect(settings)
    with conn, conn.cursor() as cur:  # noqa: SIM117
        cur.execute("SELECT hostname, model_version, max(time), min(time) FROM prediction_results"
                    " WHERE model = %s GROUP BY 1, 2", (model,))  # fmt: skip
        spans = cur.fetchall()
    assert {v for _, v, _, _ in spans} == {1, 2}, f"the promote did not land mid-stream: {spans}"
    for host in {h for h, _, _, _ in spans}:
        v1 = [last for h, v, last, _ in spans if h == host and v == 1]
        v2 = [first for h, v, _, first in spans if h == host and v == 2]
        assert not (v1 and v2) or v1[0] < v2[0], f"{host} wrote a v1 row after its first v2 row"

    # the viewer as `monitor` and vs_viewer: lag from Kafka, thumbnails from S3 over TLS
    account = {"VIEWER_PASSWORD": "a viewer password " + uuid.uuid4().hex[:8]}
    sh(["-m", "viewer", "create-user", "boss", "--role", "admin"], {**monitor, **account})
    viewer, url = start_viewer(monitor, "secure-viewer.log")
    e2e.adopt(viewer)
    session = _viewer_session(url, "boss", account["VIEWER_PASSWORD"])
    stats = json.loads(session.open(url + "/api/stats", timeout=30).read())
    assert stats["kafka"]["total_lag"] == 0 and not stats["kafka"]["members"], stats["kafka"]
    thumb = session.open(url + "/thumb?" + urllib.parse.urlencode({"key": keys[0]}), timeout=30)
    assert thumb.headers["Content-Type"] == "image/jpeg" and thumb.read()[:2] == b"\xff\xd8"

    # a key no object has: an error row and a dead letter, the rest of the stream unharmed
    fleet3 = e2e.fleet(settings, workers, "secure-missing", workers=1)
    producer_succeeded(e2e.producer(producer, ["p1/no-such-photo.jpg"], fleet3.tag))
    fleet3.wait_for("the error row", lambda: counts(settings)[1] == 1, 120)
    dead_letters = _read_all(settings, names["KAFKA_DEAD_LETTER_TOPIC"])
    assert len(dead_letters) == 1 and b"no-such-photo" in dead_letters[0]
    e2e.stop()

    # no password nor secret key anywhere a person or a log collector would see it
    with conn, conn.cursor() as cur:
        cur.execute("SELECT image_key || ' ' || error_type || ' ' || detail FROM prediction_errors")
        error_rows = [r[0] for r in cur.fetchall()]
    conn.close()
    logs = [path.read_text(errors="replace") for f in (fleet, fleet2, fleet3) for path in f.logs.values()]
    logs.append((ARTIFACTS / "secure-viewer.log").read_text(errors="replace"))
    # and the services' own logs and Kafka's segments (the metadata log holds only SCRAM hashes)
    service_logs = {*secure_stack.cfg.state_dir.rglob("*.log"), *postgres.data_dir(secure_stack.cfg).rglob("*.log")}
    assert len(service_logs) >= 3
    logs += [path.read_text(errors="replace") for path in service_logs]
    seen = "\n".join([*outputs, *logs, *error_rows, *(d.decode(errors="replace") for d in dead_letters)])
    assert "no-such-photo" in seen and "batch" in seen  # the scan reads what was written
    leaked = [name for name, value in secure_stack.named_secrets().items() if value in seen]
    assert not leaked, f"secrets in logs or outputs: {leaked}"


def _read_all(settings, topic: str) -> list[bytes]:
    """Every message of `topic`, key and value and headers, read as admin."""
    consumer = Consumer(
        {**kafka_config(settings), "group.id": f"scan-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    found, deadline = [], time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(1)
            if msg is not None and msg.error() is None:
                headers = b" ".join(k.encode() + b"=" + (v or b"") for k, v in (msg.headers() or []))
                found.append(b" ".join([msg.key() or b"", msg.value() or b"", headers]))
                deadline = min(deadline, time.monotonic() + 3)
    finally:
        consumer.close()
    return found
