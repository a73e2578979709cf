"""A zoo of bad and awkward input, uploaded and produced like any image, through real
workers: what can be classified is, the rest becomes error rows (and dead letters), and
the workers stay alive and process the good images around them."""

from __future__ import annotations

import io
import json
import sys
import time
import uuid

import numpy as np
from confluent_kafka import Consumer, Producer
from PIL import Image

from infra.fleet import counts, fleet_env, run
from tests.consumer import images_zoo as zoo
from upload import ensure_bucket

LONG_KEY = ("long/" + "/".join(["k" * 198] * 5)).ljust(1000, "k")  # 1,000 characters; no path part over 255 bytes
assert len(LONG_KEY) == 1000


def bomb_png() -> bytes:
    """A real 10000 x 10000 (100 MP) PNG of ~100 KB: decoded, it would take 300 MB as RGB."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((10_000, 10_000), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_bad_input_zoo(e2e, stack_settings, db_conn, dev_images, stack_env):
    photo = (dev_images / "n01530575_brambling.JPEG").read_bytes()
    must_classify = {
        "zoo/alpha.png": zoo.transparent_png(),
        "zoo/cmyk.jpg": zoo.cmyk_jpeg(),
        "zoo/16bit.png": zoo.png_16bit(40000),
        "zoo/animated.gif": zoo.palette_gif_animated(),
        "zoo/1x1.png": zoo.one_pixel_png(),
        "zoo/gray.jpg": zoo.grayscale_jpeg(),
        'zoo/it\'s "quoted".jpg': photo,
        "zoo/semi;colon; DROP TABLE image_info;--.jpg": photo,
        "zoo/<script>alert(1)</script>.jpg": photo,
        "zoo/emoji-🐈‍⬛.jpg": photo,
        LONG_KEY: photo,
        **{f"good/{p.name}": p.read_bytes() for p in sorted(dev_images.glob("*.JPEG"))[:40]},
    }
    must_fail = {
        "zoo/corrupt.jpg": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20, {"corrupt", "not_an_image"}),
        "zoo/truncated.jpg": (zoo.truncated_jpeg(), {"corrupt"}),
        "zoo/zero-bytes.jpg": (b"", {"empty"}),
        "zoo/text.jpg": (b"hello, I am a text file\n", {"not_an_image"}),
        "zoo/bomb-100mp.png": (bomb_png(), {"too_large"}),
    }
    s = stack_settings.model_copy(update={"max_image_pixels": 50_000_000})
    s3 = stack_settings.s3_client()
    ensure_bucket(s3, stack_settings.s3_bucket)
    for key, data in {**must_classify, **{k: v for k, (v, _) in must_fail.items()}}.items():
        s3.put_object(Bucket=stack_settings.s3_bucket, Key=key, Body=data)
    keys = [*must_classify, *must_fail, "zoo/never-uploaded.jpg"]
    stdin = "".join(k + "\n" for k in keys)

    env = {**fleet_env(s, stack_env), "MAX_IMAGE_PIXELS": "50000000"}
    fleet = e2e.fleet(s, env, "zoo", workers=2)
    assert (
        f"sent {len(keys)} of {len(keys)}"
        in run([sys.executable, "-m", "producer", "--stdin"], env, input=stdin).stdout
    )
    raw = Producer(s.kafka_client_config())
    raw.produce(s.kafka_topic, value=b"", partition=0)
    raw.produce(s.kafka_topic, value=b"\xff\xfe\xfa not utf-8", partition=1)
    assert raw.flush(30) == 0
    expected = len(keys) + 2
    fleet.wait_rows(expected, 600)
    time.sleep(3)
    assert all(fleet.alive().values()), f"a worker died\n{fleet.log_tails()}"
    e2e.stop()

    assert counts(s) == (len(must_classify), len(must_fail) + 3)
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT image_key, jsonb_array_length(top_k) FROM prediction_results")
        results = dict(cur.fetchall())
        cur.execute("SELECT image_key, error_type, detail FROM prediction_errors")
        errors = {k: (t, d) for k, t, d in cur.fetchall()}
    assert set(results) == set(must_classify)
    assert all(n == 5 for n in results.values())
    for key, (_, allowed) in must_fail.items():
        assert errors[key][0] in allowed, (key, errors[key])
    assert errors["zoo/never-uploaded.jpg"][0] == "missing"
    assert "10000x10000" in errors["zoo/bomb-100mp.png"][1]
    bad_messages = {k: v for k, v in errors.items() if v[0] == "bad_message"}
    assert len(bad_messages) == 2 and any(k.startswith("<empty message p0@") for k in bad_messages)

    # the same failures were published to the dead-letter topic, with their reasons
    consumer = Consumer(
        {**s.kafka_client_config(), "group.id": f"dlq-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([s.kafka_dead_letter_topic])
    letters, deadline = {}, time.monotonic() + 30
    while len(letters) < len(errors) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            body = json.loads(msg.value())
            letters[body["image_key"]] = body["error_type"]
    consumer.close()
    assert letters == {k: t for k, (t, _) in errors.items()}
