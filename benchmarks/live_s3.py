"""Live from S3: the pipeline fed by the S3 server's own notifications against fed by the
producer, in one run on a stack of its own, and put -> row latency at a steady put rate.

    python -m benchmarks.live_s3 [--images 2000] [--workers 2] [--out benchmarks/results/live_s3.json]

1. producer: the photos uploaded first (to a gateway that publishes nothing), then
   `python -m producer` sends their keys to W workers; throughput from the first to the last row;
2. notifications: as many photos PUT first to a versitygw publishing to a staging topic, then
   its event messages sent to the workers' topic at full speed: the same feed as 1, each
   message the S3 server's JSON instead of a bare key;
3. live: as many photos PUT from 8 threads while the workers classify, the gateway publishing
   straight to the workers' topic: what the machine does when it also takes the PUTs (the
   uploading client runs here too, uncounted);
4. latency: photos PUT at half the notification-fed throughput, one at a time, each PUT's end
   -> its row's time (same machine, same clock), p50 / p95 / max.
CPU milliseconds per image of the S3 server, Kafka, PostgreSQL and the workers for 1 to 3.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from benchmarks import cpu
from benchmarks.local_stack import temporary_stack
from benchmarks.pipeline import percentile, row_times, start_workers, truncate, variant
from benchmarks.plot import throughput
from benchmarks.report import emit
from common.imaging import find_images
from infra import versitygw
from infra.fleet import Fleet, fleet_env, run
from infra.process import free_port
from settings import Settings
from upload import upload_dir

HERE = Path(__file__).resolve().parent


def put_all(settings: Settings, photos: list[Path], prefix: str, count: int, rate: float | None = None) -> dict:
    """PUT `count` photos (cycling) under `prefix`: from 8 threads, or one at `rate` per second.
    Returns key -> the time its PUT was answered."""
    s3, done = settings.s3_client(), {}

    def put(i: int) -> None:
        key = f"{prefix}/{i:06d}-{photos[i % len(photos)].name}"
        s3.upload_file(str(photos[i % len(photos)]), settings.s3_bucket, key)
        done[key] = time.time()

    if rate is None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(count)))
    else:
        start = time.monotonic()
        for i in range(count):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            put(i)
    return done


def staged_events(settings: Settings, topic: str, n: int) -> list[bytes]:
    """The first n object events published to `topic` (the gateway's test event left out)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {**settings.kafka_client_config(), "group.id": f"stage-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    out: list[bytes] = []
    deadline = time.monotonic() + 120
    while len(out) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error() and b'"Records"' in msg.value():
            out.append(msg.value())
    consumer.close()
    if len(out) < n:
        sys.exit(f"only {len(out)} of {n} events arrived on {topic}")
    return out


def send(settings: Settings, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer(settings.kafka_client_config())
    for value in values:
        producer.produce(settings.kafka_topic, value)
        producer.poll(0)
    producer.flush(60)


def measured(fleet: Fleet, n: int, pids: dict[str, int], feed) -> tuple[float, dict]:
    """Run `feed()`, wait for n rows; (img/s first -> last row, CPU seconds per process group)."""
    everyone = cpu.with_workers(pids, fleet.procs)
    before = cpu.snapshot(everyone)
    feed()
    fleet.wait_rows(n, 1800)
    used = cpu.grouped(cpu.used(before, cpu.snapshot(everyone)))
    per_image = {k: round(1000 * v / n, 2) for k, v in used.items()}
    return round(throughput([t for t, _ in row_times(fleet.settings)]), 1), per_image


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.live_s3", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--latency-images", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "live_s3.json")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    threads = max(1, cores // args.workers)
    photos = find_images(Settings().shared_dir / "images" / "dev")
    if not photos:
        sys.exit("no dev photos: set SHARED_DIR")
    with temporary_stack() as cfg:
        tag = uuid.uuid4().hex[:6]
        settings = Settings(kafka_topic=f"live-{tag}", faust_app_id=f"live-{tag}", s3_bucket="live")
        env = fleet_env(settings, {**os.environ})
        pids = cpu.service_pids(cfg)
        result: dict = {}

        # 1. fed by the producer, from the stack's gateway (it publishes nothing)
        for i in range(-(-args.images // len(photos))):
            upload_dir(settings, photos[0].parent, prefix=f"copy{i}")
        s, e = variant(settings, env, "producer")
        fleet = Fleet(s, e, "producer")
        start_workers(fleet, args.workers, threads)
        try:
            feed = partial(run, [sys.executable, "-m", "producer", "--limit", str(args.images)], e)
            result["producer_img_s"], result["producer_cpu_ms_per_image"] = measured(fleet, args.images, pids, feed)
        finally:
            fleet.stop()
        truncate(settings)

        # 2. fed by notifications: the photos PUT first to a gateway publishing to a staging
        #    topic (not measured), then its event messages sent to the workers' topic as fast
        #    as the producer sends keys: the same feed, in the S3 server's own words
        s, e = variant(settings, env, "live")
        home, port = cfg.state_dir / "live-gateway", free_port()
        gw = versitygw.Gateway(home, port, events_topic=f"{s.kafka_topic}-staged")
        versitygw.start_gateway(cfg, gw)
        endpoint = f"http://{cfg.host}:{gw.port}"
        s, e = s.model_copy(update={"s3_endpoint_url": endpoint}), {**e, "S3_ENDPOINT_URL": endpoint}
        s.s3_client().create_bucket(Bucket=s.s3_bucket)
        put_all(s, photos, "queued", args.images)
        events = staged_events(s, gw.events_topic, args.images)
        versitygw.stop_gateway(gw)
        # 3. live: a gateway on the same data publishing to the workers' topic, PUTs while the
        #    workers classify (a burst from 8 threads, on the same 2 cores), then latency
        gw = versitygw.Gateway(home, port, events_topic=s.kafka_topic)
        versitygw.start_gateway(cfg, gw)
        fleet = Fleet(s, e, "live")
        start_workers(fleet, args.workers, threads)
        try:
            gw_pids = {**pids, "s3": versitygw.gateway_pid(gw)}
            feed = partial(send, s, events)
            result["notification_img_s"], result["notification_cpu_ms_per_image"] = measured(
                fleet, args.images, gw_pids, feed
            )
            truncate(settings)
            feed = partial(put_all, s, photos, "burst", args.images)
            result["live_put_img_s"], result["live_put_cpu_ms_per_image"] = measured(fleet, args.images, gw_pids, feed)
            truncate(settings)
            rate = max(1.0, result["notification_img_s"] / 2)
            put_at = put_all(s, photos, "steady", args.latency_images, rate)
            fleet.wait_rows(args.latency_images, 600)
            latency = _latencies(s, put_at)
        finally:
            fleet.stop()
            versitygw.stop_gateway(gw)
    result.update(
        {
            "notification_over_producer": round(result["notification_img_s"] / result["producer_img_s"], 2),
            "live_put_over_producer": round(result["live_put_img_s"] / result["producer_img_s"], 2),
            "latency_put_rate_img_s": round(rate, 1),
            "put_to_row_p50_s": round(percentile(latency, 0.5), 3),
            "put_to_row_p95_s": round(percentile(latency, 0.95), 3),
            "put_to_row_max_s": round(max(latency), 3),
            "images": args.images,
            "latency_images": args.latency_images,
            "workers": args.workers,
            "torch_threads_per_worker": threads,
            "machine": f"{platform.machine()} {platform.processor() or ''} {cores} cores ({platform.node()})".strip(),
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    emit(result, args.out)
    return 0


def _latencies(settings: Settings, put_at: dict[str, float]) -> list[float]:
    from db.connection import connect

    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT image_key, extract(epoch FROM time) FROM prediction_results WHERE image_key = ANY(%s)",
                (list(put_at),),
            )
            return [float(t) - put_at[k] for k, t in cur.fetchall()]
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
