"""Kafka administration shared by the producer, the workers, the status command and the
viewer: the topics created with the configured partitions and replication, and the
consumer group's lag per partition."""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common.reach import kafka_config
from settings import Settings

log = logging.getLogger(__name__)


def ensure_topic(settings: Settings, timeout: float = 30.0, name: str | None = None) -> int:
    """Create KAFKA_TOPIC (or `name`) if missing; returns its partition count. An existing
    topic is kept as it is (a warning if its partition count differs from KAFKA_PARTITIONS)."""
    admin = AdminClient(kafka_config(settings))
    name = name or settings.kafka_topic
    existing = admin.list_topics(timeout=timeout).topics
    if name not in existing:
        future = admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=settings.kafka_partitions,
                    replication_factor=settings.kafka_replication_factor,
                    # with acks=all, a write needs this many replicas in sync: 2 of 3 survives a broker
                    config={"min.insync.replicas": str(settings.kafka_min_insync_replicas)},
                )
            ],
            operation_timeout=timeout,
        )[name]
        try:
            future.result(timeout=timeout)
            log.info("created topic %s with %d partitions", name, settings.kafka_partitions)
        except KafkaException as exc:
            if exc.args[0].code() != exc.args[0].TOPIC_ALREADY_EXISTS:  # a concurrent creator won
                raise
        existing = admin.list_topics(topic=name, timeout=timeout).topics
    partitions = len(existing[name].partitions)
    if partitions != settings.kafka_partitions:
        log.warning(
            "topic %s has %d partitions, KAFKA_PARTITIONS=%d: keeping the topic as it is",
            name,
            partitions,
            settings.kafka_partitions,
        )
    return partitions


def kafka_status(settings: Settings, timeout: float = 10.0) -> dict:
    admin = AdminClient(kafka_config(settings))
    group, topic = settings.faust_app_id, settings.kafka_topic
    # All topics, not list_topics(topic=...): asking for one topic by name makes a broker with
    # auto.create.topics.enable create it, with the broker's default partition count.
    metadata = admin.list_topics(timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return {"topic": topic, "group": group, "error": f"topic {topic} does not exist"}
    partitions = sorted(metadata.partitions)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    committed = {
        tp.partition: tp.offset
        for tp in admin.list_consumer_group_offsets([request])[group].result(timeout=timeout).topic_partitions
    }
    # the group's own id (a consumer needs one), never subscribed nor committing: on a secured
    # cluster, DESCRIBE on the topic and the group is all the status needs (infra/secure.py)
    probe = Consumer({**kafka_config(settings), "group.id": group, "enable.auto.commit": False})
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
    return {
        "topic": topic,
        "group": group,
        "group_state": state,
        "members": members,
        "partitions": rows,
        "total_lag": sum(r["lag"] for r in rows),
    }
