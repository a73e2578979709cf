"""What a scale event costs a steady stream: workers added and removed the way KEDA and the
HPA do it (the chart's ScaledObject: the HPA's default scale-up doubles the replicas, or adds
4, per 15 s; scale-down removes many at once, each pod sent SIGTERM), while keys arrive at a
fixed rate. The workers are benchmarks/fixed_answer_app.py's (the real worker with the model
replaced by a fixed answer after a sleep per image, so that many fit on one machine), each
logging every message it has written. Per event:
- the seconds until the consumer group was stable with its new members;
- the longest time without any row written (the whole fleet stalled), and the longest delay
  from a key sent to its row written (some partitions stalled while they moved), beside the
  steady state's before any event;
- messages written again (the same partition and offset written twice: a redelivery), and
  how many were written more than twice.

    python -m benchmarks.scale_events [--sizes 4,8,16,24,12,4] [--rate 120] [--interval 40]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks import cpu
from benchmarks.fleet_scale import COMMAND
from benchmarks.local_stack import bench_settings, dev_photos, temporary_stack, upload_copies, worker_counts
from benchmarks.pipeline import percentile
from common.kafka_admin import ensure_topic, kafka_status
from db.connection import connect
from infra.fleet import REPO, Fleet, fleet_env
from settings import Settings

HERE = Path(__file__).resolve().parent


def feed(settings: Settings, env: dict, rate: float, seconds: float, log: Path) -> subprocess.Popen:
    """The project's producer sending the registered keys round and round at `rate` keys/s, at
    most for `seconds`."""
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT image_key FROM image_info ORDER BY image_key")
            keys = [k for (k,) in cur.fetchall()]
    finally:
        conn.close()
    lines = int(rate * seconds) + 1
    path = log.with_suffix(".keys")
    path.write_text("".join(keys[i % len(keys)] + "\n" for i in range(lines)))
    with open(path) as stdin, open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "producer", "--stdin", "--rate", str(rate)],
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    return proc


def written(log_dir: Path) -> list[tuple[float, int, int, float]]:
    """Every (time written, partition, offset, time sent) any worker wrote, oldest first."""
    rows = []
    for path in log_dir.glob("*.log"):
        for line in path.read_text().splitlines():
            t, p, o, sent = line.split()
            rows.append((float(t), int(p), int(o), float(sent)))
    return sorted(rows)


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest time without a write in [start, end], counting from the last write before
    start and up to end."""
    before = [t for t in times if t < start]
    points = ([before[-1]] if before else [start]) + [t for t in times if start <= t <= end] + [end]
    return max(b - a for a, b in zip(points, points[1:]))


def analyse(rows: list[tuple[float, int, int, float]], events: list[dict], end: float) -> tuple[dict, list[dict]]:
    """The steady state before any event (messages written again, the longest and p99 delay
    from sent to written) and, per event: the seconds until the group was stable; the longest
    time without any row written (the whole fleet stalled); the longest delay of a message
    written in its span (some partitions stalled while they moved); the messages written again
    and those written a third time within its span."""
    times = [r[0] for r in rows]
    seen: Counter = Counter()
    marks = [e["time"] for e in events] + [end]
    spans: list[dict] = [{"again": 0, "third": 0, "delays": []} for _ in range(len(events) + 1)]
    for t, p, o, sent in rows:
        seen[p, o] += 1
        span = spans[sum(1 for m in marks[:-1] if t >= m)]  # 0: before the first event
        span["again"] += seen[p, o] == 2
        span["third"] += seen[p, o] == 3
        if seen[p, o] == 1:
            span["delays"].append(t - sent)
    steady = spans[0]
    out = {
        "written_again": steady["again"],
        "max_delay_s": round(max(steady["delays"], default=0.0), 2),
        "p99_delay_s": round(percentile(steady["delays"], 0.99), 2) if steady["delays"] else None,
    }
    per_event = []
    for n, event in enumerate(events):
        per_event.append(
            {
                "from": event["from"],
                "to": event["to"],
                "stable_s": round(event["stable_s"], 1),
                "no_row_s": round(longest_gap(times, event["time"], marks[n + 1]), 2),
                "max_delay_s": round(max(spans[n + 1]["delays"], default=0.0), 2),
                "written_again": spans[n + 1]["again"],
                "written_more_than_twice": spans[n + 1]["third"],
            }
        )
    return out, per_event


def resize(fleet: Fleet, size: int, names: list[str]) -> None:
    """Start workers up to `size`, or SIGTERM the newest ones at once (as a scale-down does)."""
    while len(names) < size:
        names.append(f"scale-{fleet.starts + 1}")
        fleet.start(names[-1])
    leaving = names[size:]
    del names[size:]
    for name in leaving:
        fleet.procs[name].send_signal(signal.SIGTERM)
    for name in leaving:
        fleet.procs.pop(name).wait(timeout=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.scale_events",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--sizes",
        type=worker_counts,
        default="4,8,16,24,12,4",
        help="fleet sizes in turn (the first: before any event)",
    )
    ap.add_argument("--partitions", type=int, default=48)
    ap.add_argument("--rate", type=float, default=120.0, help="keys per second, steady")
    ap.add_argument("--interval", type=float, default=40.0, help="seconds between events")
    ap.add_argument("--ms-per-image", type=float, default=20.0, help="the fixed answer's sleep per image")
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    sizes = args.sizes
    base = Settings()
    dev = dev_photos(base)
    logs = Path(tempfile.mkdtemp(prefix="vs-scale-"))
    events: list[dict] = []
    with temporary_stack():
        settings = bench_settings("scale", kafka_partitions=args.partitions)
        env = {
            **fleet_env(settings, {**os.environ}),
            "KAFKA_PARTITIONS": str(args.partitions),
            "FIXED_ANSWER_MS_PER_IMAGE": str(args.ms_per_image),
            "FIXED_ANSWER_LOG_DIR": str(logs),
        }
        upload_copies(settings, dev, 1)
        ensure_topic(settings)
        fleet = Fleet(settings, env, "scale", command=COMMAND)
        names: list[str] = []
        producer = None
        try:
            resize(fleet, sizes[0], names)
            fleet.wait_for(f"{sizes[0]} members", lambda: fleet.members() == sizes[0], 600)
            # keys for longer than the scenario can last; stopped after the last event's interval
            producer = feed(settings, env, args.rate, 3 * args.interval * len(sizes), logs / "producer")
            started = time.time()
            time.sleep(args.interval)
            for before, after in zip(sizes, sizes[1:]):
                print(f"{before} -> {after} workers...", file=sys.stderr)
                t = time.time()
                resize(fleet, after, names)
                fleet.wait_for(f"{after} members", lambda n=after: fleet.members() == n, 300)
                events.append({"from": before, "to": after, "time": t, "stable_s": time.time() - t})
                time.sleep(max(0.0, t + args.interval - time.time()))
            producer.terminate()
            producer.wait(timeout=60)
            stream_end = time.time()
            sent = sum(p["end"] for p in kafka_status(settings)["partitions"])  # every message in the topic
            deadline = time.monotonic() + 120
            while len({r[1:3] for r in written(logs)}) < sent and time.monotonic() < deadline:
                time.sleep(1)  # the last messages' rows
        finally:
            if producer is not None and producer.poll() is None:
                producer.kill()
            fleet.stop()
    rows = written(logs)
    shutil.rmtree(logs, ignore_errors=True)
    times = [r[0] for r in rows]
    steady, per_event = analyse(rows, events, stream_end)
    steady["no_row_s"] = round(longest_gap(times, started + 5, events[0]["time"]), 2) if events else None
    figures = {
        "machine": f"{cpu.model_name()}, {os.cpu_count()} cores",
        "partitions": args.partitions,
        "rate_keys_s": args.rate,
        "ms_per_image": args.ms_per_image,
        "interval_s": args.interval,
        "stream_s": round(stream_end - started, 1),
        "messages_sent": sent,
        "messages_written": len({r[1:3] for r in rows}),  # at least once
        "steady": steady,
        "events": per_event,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "scale_events.json").write_text(json.dumps(figures, indent=2) + "\n")
    draw(args.out_dir / "scale_events.png", times, started, events, figures)
    print(json.dumps(figures, indent=2))
    return 0


def draw(path: Path, times: list[float], started: float, events: list[dict], figures: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4.2))
    step = 0.5
    bins = Counter(int((t - started) / step) for t in times if t >= started)
    xs = range(max(bins) + 1 if bins else 0)
    ax.plot([x * step for x in xs], [bins.get(x, 0) / step for x in xs], lw=0.8, label="rows written/s")
    for e, summary in zip(events, figures["events"]):
        ax.axvline(e["time"] - started, color="tab:red", lw=0.8)
        label = f"{e['from']}→{e['to']}\nlongest delay {summary['max_delay_s']} s"
        ax.text(e["time"] - started + 0.5, ax.get_ylim()[1] * 0.9, label, fontsize=8, va="top")
    ax.axhline(figures["rate_keys_s"], color="k", ls="--", lw=0.8, label="keys sent/s")
    ax.set_xlabel("seconds")
    ax.set_ylabel("rows/s (0.5 s bins)")
    ax.legend(loc="lower right")
    ax.set_title(f"{figures['machine']}: scale events under a steady {figures['rate_keys_s']:g} keys/s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
