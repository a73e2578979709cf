"""A replicated Kafka cluster: 3 KRaft nodes, the topic with replication 3 and
min.insync.replicas 2, the producer with acks=all. Under a steady stream the broker that
leads the most partitions is killed with SIGKILL and restarted, then the same for a second
one: every key the producer had acknowledged ends with exactly one row."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient

from infra import kafka
from infra import stack as stack_mod
from infra.fleet import counts
from tests.e2e.streams import check_exactly_once, corpus, producer_succeeded, report, setup


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cfg = stack_mod.load_or_create(
        tmp_path_factory.mktemp("cluster"), stack_mod.default_libs_dir(), free_ports=True, kafka_nodes=3
    )
    try:
        stack_mod.up(cfg, only=("kafka",))
        yield cfg
    finally:
        stack_mod.down(cfg, only=("kafka",))


def leader_counts(cfg, topic: str) -> dict[int, int]:
    md = AdminClient({"bootstrap.servers": cfg.kafka_bootstrap}).list_topics(timeout=10).topics[topic]
    out: dict[int, int] = {}
    for p in md.partitions.values():
        out[p.leader] = out.get(p.leader, 0) + 1
    return out


def test_killing_the_leading_broker_twice_loses_nothing(e2e, stack_settings, db_conn, dev_images, stack_env, cluster):
    keys = corpus(stack_settings, dev_images, copies=3)
    s, env = setup(
        stack_settings.model_copy(
            update={"kafka_bootstrap_servers": cluster.kafka_bootstrap, "kafka_replication_factor": 3}
        ),
        stack_env,
    )
    env = {
        **env,
        "KAFKA_BOOTSTRAP_SERVERS": cluster.kafka_bootstrap,
        "KAFKA_REPLICATION_FACTOR": "3",
        "KAFKA_MIN_INSYNC_REPLICAS": "2",
    }
    fleet, producer = e2e.stream(s, env, "cluster", keys, seconds=75)
    kills = []
    for threshold in (150, 700):
        fleet.wait_for(f"{threshold} rows", lambda t=threshold: sum(counts(s)) >= t, 300)
        leaders = leader_counts(cluster, s.kafka_topic)
        killed = {k["node"] for k in kills}  # the second kill takes another broker
        victim = max((n for n in kafka.nodes(cluster) if n not in killed), key=lambda n: leaders.get(n, 0))
        kafka.stop_node(cluster, victim, hard=True)
        down_at = time.monotonic()
        time.sleep(8)
        kafka.start_node(cluster, victim)
        kills.append(
            {
                "node": victim,
                "led_partitions": leaders.get(victim, 0),
                "rows_before": threshold,
                "down_s": round(time.monotonic() - down_at, 1),
            }
        )
    producer_succeeded(producer)
    fleet.wait_rows(len(keys), 600)
    assert all(fleet.alive().values()), "a worker died"
    e2e.stop()
    figures = check_exactly_once(s, keys)
    assert len({k["node"] for k in kills}) == 2
    report(
        "kafka-cluster", {**figures, "brokers": 3, "replication_factor": 3, "min_insync_replicas": 2, "kills": kills}
    )
