"""Workers on separate hosts: each worker in its own network namespace with its own hostname
(infra/netns.py), reaching Kafka, PostgreSQL and S3 across a veth link at the services'
bridge address, as a remote machine would. One host is cut off mid-stream long enough for
the group to move its partitions, then comes back (a "zombie" with a batch in flight): every
key must still end in exactly one row."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from db.connection import connect
from db.migrate import migrate
from infra import stack as stack_mod
from infra.fleet import counts
from infra.netns import HostNetwork
from settings import Settings, get_settings
from tests.e2e.streams import check_exactly_once, corpus, producer_succeeded, report, setup

SUBNET = "10.213.42"  # the test's own /24, created and removed here


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, root, stack_libs):
    """Two worker hosts and a stack of their own listening on the bridge's gateway address."""
    net = HostNetwork.create("vse2e", SUBNET)
    state = tmp_path_factory.mktemp("hosts-stack")
    cfg = stack_mod.load_or_create(state, stack_libs, free_ports=True, host=net.gateway)
    try:
        stack_mod.up(cfg)
        conn = connect(Settings(_env_file=None, database_url=cfg.database_url))
        migrate(conn)
        conn.close()
        for name in ("worker-1", "worker-2"):
            net.add_host(name)
        yield net, cfg
    finally:
        stack_mod.discard(cfg)
        net.destroy()


@pytest.fixture
def remote_settings(hosts, stack_settings, monkeypatch) -> Settings:
    """The test's settings (own topic, group), pointed at the hosts' stack."""
    _, cfg = hosts
    for k, v in cfg.env().items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    return Settings()


def placement(net: HostNetwork) -> dict:
    # no HOSTNAME in the environment: the worker must find its name the way it would on a real
    # machine (socket.gethostname() in its own UTS namespace)
    return {h.name: ([*net.run_in(h), "env", "-u", "HOSTNAME"], h.address) for h in net.hosts}


def test_the_hosts_are_separate(hosts):
    net, cfg = hosts
    names = [
        subprocess.run([*net.run_in(h), "hostname"], capture_output=True, text=True).stdout.strip() for h in net.hosts
    ]
    assert names == ["worker-1", "worker-2"]
    routes = subprocess.run(["ip", "-n", net.hosts[0].netns, "-4", "addr"], capture_output=True, text=True).stdout
    assert net.hosts[0].address in routes and "127.0.0.1" in routes  # its own loopback, not ours


def test_a_host_cut_off_mid_stream_comes_back_without_losing_or_duplicating(
    e2e, hosts, remote_settings, dev_images, stack_env
):
    net, cfg = hosts
    keys = corpus(remote_settings, dev_images, copies=2)
    s, env = setup(remote_settings, {**stack_env, **cfg.env()})
    fleet, producer = e2e.stream(s, env, "hosts", keys, seconds=50, placement=placement(net))
    fleet.wait_for("the first 150 rows", lambda: sum(counts(s)) >= 150, 300)
    zombie = net.hosts[0]
    rows_at_cut = sum(counts(s))
    net.cut(zombie)
    cut_at = time.monotonic()
    fleet.wait_for("the group to go on without the cut-off host", lambda: fleet.members() == 1, 120)
    rebalanced_s = time.monotonic() - cut_at
    time.sleep(max(0.0, 20 - rebalanced_s))  # the other host works on alone for a while
    rows_at_restore = sum(counts(s))
    net.restore(zombie)
    cut_s = time.monotonic() - cut_at
    fleet.wait_for("the host back in the group", lambda: fleet.members() == 2, 180)
    producer_succeeded(producer)
    fleet.wait_rows(len(keys), 600)
    time.sleep(3)
    assert all(fleet.alive().values()), f"a worker died\n{fleet.log_tails()}"
    e2e.stop()
    figures = check_exactly_once(s, keys)
    conn = connect(s)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT hostname, count(*) FROM prediction_results GROUP BY 1 ORDER BY 1")
        per_host = dict(cur.fetchall())
    conn.close()
    assert set(per_host) == {"worker-1", "worker-2"}, per_host  # names from each host's own UTS namespace
    assert rows_at_restore < len(keys), "the stream ended before the host came back"
    report(
        "host-cut-off",
        {
            **figures,
            "rows_at_cut": rows_at_cut,
            "rows_at_restore": rows_at_restore,
            "rebalanced_after_s": round(rebalanced_s, 1),
            "cut_s": round(cut_s, 1),
            "rows_per_host": per_host,
            "run": uuid.uuid4().hex[:6],
        },
    )
