"""The image-keys topic: created with the configured partition count if missing."""
from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from settings import Settings

log = logging.getLogger(__name__)


def ensure_topic(settings: Settings, timeout: float = 30.0, name: str | None = None) -> int:
    """Create KAFKA_TOPIC (or `name`) if missing; returns its partition count. An existing
    topic is kept as it is (a warning if its partition count differs from KAFKA_PARTITIONS)."""
    admin = AdminClient(settings.kafka_client_config())
    name = name or settings.kafka_topic
    existing = admin.list_topics(timeout=timeout).topics
    if name not in existing:
        future = admin.create_topics([NewTopic(name, num_partitions=settings.kafka_partitions,
                                               replication_factor=settings.kafka_replication_factor)],
                                     operation_timeout=timeout)[name]
        try:
            future.result(timeout=timeout)
            log.info("created topic %s with %d partitions", name, settings.kafka_partitions)
        except KafkaException as exc:
            if exc.args[0].code() != exc.args[0].TOPIC_ALREADY_EXISTS:  # a concurrent creator won
                raise
        existing = admin.list_topics(topic=name, timeout=timeout).topics
    partitions = len(existing[name].partitions)
    if partitions != settings.kafka_partitions:
        log.warning("topic %s has %d partitions, KAFKA_PARTITIONS=%d: keeping the topic as it is",
                    name, partitions, settings.kafka_partitions)
    return partitions
