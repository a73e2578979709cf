"""infra/netns.py: hosts in network namespaces that reach a server on the bridge's gateway,
have their own hostname, can be cut off and restored, and leave nothing behind (root)."""

import socket
import subprocess
import sys

from infra.netns import HostNetwork


def connect_from(net, host, port) -> subprocess.CompletedProcess:
    code = f"import socket; socket.create_connection(('{net.gateway}', {port}), timeout=2); print('connected')"
    return subprocess.run([*net.run_in(host), sys.executable, "-c", code], capture_output=True, text=True)


def test_a_host_reaches_the_gateway_until_it_is_cut_off(root):
    net = HostNetwork.create("vsnt", "10.213.43")
    server = None
    try:
        a, b = net.add_host("host-a"), net.add_host("host-b")
        server = socket.create_server((net.gateway, 0))
        port = server.getsockname()[1]
        assert connect_from(net, a, port).stdout.strip() == "connected"
        assert [
            subprocess.run([*net.run_in(h), "hostname"], capture_output=True, text=True).stdout.strip() for h in (a, b)
        ] == ["host-a", "host-b"]
        assert subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip() not in ("host-a", "host-b")
        # loopback inside a host is its own: our server on 127.0.0.1 is not there
        local = socket.create_server(("127.0.0.1", 0))
        inside = subprocess.run(
            [
                *net.run_in(a),
                sys.executable,
                "-c",
                f"import socket; socket.create_connection(('127.0.0.1', {local.getsockname()[1]}), timeout=2)",
            ],
            capture_output=True,
            text=True,
        )
        local.close()
        assert inside.returncode != 0 and "ConnectionRefused" in inside.stderr
        net.cut(a)
        cut = connect_from(net, a, port)
        assert cut.returncode != 0 and "timed out" in cut.stderr  # dropped, as a pulled cable
        assert connect_from(net, b, port).stdout.strip() == "connected"  # the other host is unaffected
        net.restore(a)
        assert connect_from(net, a, port).stdout.strip() == "connected"
    finally:
        if server is not None:
            server.close()
        net.destroy()
    assert not [
        ns
        for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        if ns.startswith("vsnt-")
    ]
    assert "vsntbr" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
