"""python -m consumer.status [--json] — how far the fleet is, from Kafka and PostgreSQL.

Per partition: the consumer group's committed offset, the end offset and the lag; the
group's state and members; per host: images written in the last minute and in total;
errors by type; keys still without a row.
"""
from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Optional

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from db.connection import connect
from db.queries import progress
from settings import Settings, get_settings


def kafka_status(settings: Settings, timeout: float = 10.0) -> dict:
    admin = AdminClient(settings.kafka_client_config())
    group, topic = settings.faust_app_id, settings.kafka_topic
    # All topics, not list_topics(topic=...): asking for one topic by name makes a broker with
    # auto.create.topics.enable create it, with the broker's default partition count.
    metadata = admin.list_topics(timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return {"topic": topic, "group": group, "error": f"topic {topic} does not exist"}
    partitions = sorted(metadata.partitions)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    committed = {tp.partition: tp.offset for tp in
                 admin.list_consumer_group_offsets([request])[group].result(timeout=timeout).topic_partitions}
    probe = Consumer({**settings.kafka_client_config(), "group.id": f"vs-status-{uuid.uuid4().hex}",
                      "enable.auto.commit": False})
    rows = []
    try:
        for p in partitions:
            low, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            done = committed.get(p, -1)
            lag = high - (done if done >= 0 else low)
            rows.append({"partition": p, "committed": done if done >= 0 else None, "end": high, "lag": lag})
    finally:
        probe.close()
    try:
        desc = admin.describe_consumer_groups([group])[group].result(timeout=timeout)
        state = str(desc.state).rsplit(".", 1)[-1]
        members = sorted(f"{m.client_id}@{m.host}" for m in desc.members)
    except Exception as exc:  # noqa: BLE001 - no such group yet
        state, members = f"unknown ({exc})", []
    return {"topic": topic, "group": group, "group_state": state, "members": members,
            "partitions": rows, "total_lag": sum(r["lag"] for r in rows)}


def database_status(settings: Settings) -> dict:
    conn = connect(settings)
    try:
        with conn:
            return progress(conn, settings.model_name)
    finally:
        conn.close()


def render(status: dict) -> str:
    k, d = status["kafka"], status["database"]
    lines = [f"topic {k['topic']}, group {k['group']}"]
    if "error" in k:
        lines.append(f"  {k['error']}")
    else:
        lines.append(f"  group {k['group_state']}, {len(k['members'])} member(s): {', '.join(k['members']) or '-'}")
        lines.append(f"  {'partition':>9} {'committed':>10} {'end':>10} {'lag':>8}")
        for r in k["partitions"]:
            committed = "-" if r["committed"] is None else r["committed"]
            lines.append(f"  {r['partition']:>9} {committed:>10} {r['end']:>10} {r['lag']:>8}")
        lines.append(f"  total lag {k['total_lag']}")
    lines.append(f"model {d['model']}: {d['results_total']} classified, {d['errors_total']} errors, "
                 f"{d['keys_without_row']} of {d['registered_keys']} registered keys without a row")
    lines.append(f"  {'host':<24} {'last min':>9} {'total':>9}")
    for h in d["hosts"]:
        lines.append(f"  {h['hostname']:<24} {h['last_minute']:>9} {h['total']:>9}")
    for error_type, n in d["errors"].items():
        lines.append(f"  errors {error_type}: {n}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m consumer.status", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    settings = get_settings()
    status = {"kafka": kafka_status(settings), "database": database_status(settings)}
    print(json.dumps(status, indent=2) if args.json else render(status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
