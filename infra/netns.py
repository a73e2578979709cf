"""Worker "hosts" on one machine: each a network namespace with its own address (and, for the
processes started in it, its own hostname), joined to a bridge whose gateway address is where
the stack's services listen (`load_or_create(..., host=net.gateway)`). Traffic between a host
and the services crosses a veth pair, so a host can be cut off (link down) and restored as a
machine losing its network would be.

Needs root (`ip netns`, veth, bridge). Everything is created on addresses and names this
object chooses and removed by `destroy()`:

    net = HostNetwork.create("vst", "10.213.7")
    h = net.add_host("worker-1")
    subprocess.Popen([*net.run_in(h), "faust", ...])
    net.cut(h); net.restore(h)
    net.destroy()
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.process import StackError


@dataclass(frozen=True)
class Host:
    name: str  # the hostname processes in it see (unshare --uts)
    netns: str
    address: str
    link: str  # the host-side end of its veth pair: down = cut off
    peer: str  # the end inside the namespace


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise StackError(f"ip {' '.join(args)}: {res.stderr.strip()}")


def require_root() -> None:
    missing = [tool for tool in ("ip", "unshare") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        raise StackError(
            "worker hosts in network namespaces need root and iproute2/util-linux "
            f"(euid {os.geteuid()}, missing: {', '.join(missing) or 'nothing'}); CI runs as root"
        )


@dataclass
class HostNetwork:
    prefix: str  # names: <prefix>br (bridge), <prefix>-<host> (namespaces), <prefix>v<N> (veths)
    subnet: str  # the first three octets of a /24 nobody else uses, e.g. "10.213.7"
    hosts: list[Host] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.1"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @classmethod
    def create(cls, prefix: str, subnet: str) -> HostNetwork:
        require_root()
        net = cls(prefix, subnet)
        net._cleanup_leftovers()
        _ip("link", "add", "name", net.bridge, "type", "bridge")
        _ip("addr", "add", f"{net.gateway}/24", "dev", net.bridge)
        _ip("link", "set", net.bridge, "up")
        return net

    def add_host(self, name: str) -> Host:
        n = len(self.hosts) + 1
        peer = f"{self.prefix}p{n}"
        host = Host(name, f"{self.prefix}-{name}", f"{self.subnet}.{10 + n}", f"{self.prefix}v{n}", peer)
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.link, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", host.netns)
        _ip("link", "set", host.link, "master", self.bridge)
        _ip("link", "set", host.link, "up")
        for args in (
            ("addr", "add", f"{host.address}/24", "dev", peer),
            ("link", "set", peer, "up"),
            ("link", "set", "lo", "up"),
            ("route", "add", "default", "via", self.gateway),
        ):
            _ip("-n", host.netns, *args)
        self.hosts.append(host)
        return host

    def run_in(self, host: Host) -> list[str]:
        """A command prefix that runs the rest in `host`: its network, its own UTS namespace
        with `host.name` as hostname; exec all the way, so the PID is the program's."""
        return [
            "ip",
            "netns",
            "exec",
            host.netns,
            "unshare",
            "--uts",
            "--",
            "sh",
            "-c",
            'hostname "$0" && exec "$@"',
            host.name,
        ]

    def cut(self, host: Host) -> None:
        """The host loses its network: packets to and from it are dropped (connections hang
        rather than being refused, as with a pulled cable)."""
        _ip("link", "set", host.link, "down")

    def restore(self, host: Host, timeout: float = 10) -> None:
        """Bring the host's link back and wait until the bridge forwards its packets again."""
        _ip("link", "set", host.link, "up")
        sysfs = Path("/sys/class/net") / host.link
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = (sysfs / "operstate").read_text().strip(), (sysfs / "brport" / "state").read_text().strip()
            inside = subprocess.run(["ip", "-n", host.netns, "-o", "link", "show", host.peer], capture_output=True)
            if state == ("up", "3") and b"state UP" in inside.stdout:  # 3: BR_STATE_FORWARDING
                # ARP gave up on the gateway while the link was down (FAILED: "no route to
                # host" until it retries): start afresh, as a host whose cable is plugged back
                _ip("-n", host.netns, "neigh", "flush", "dev", host.peer)
                _ip("neigh", "flush", "dev", self.bridge)
                return
            time.sleep(0.05)
        raise StackError(f"{host.link} did not come back up within {timeout:.0f}s (operstate, port state: {state})")

    def destroy(self) -> None:
        """Remove the namespaces (their veth pairs go with them) and the bridge."""
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        self.hosts.clear()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def _cleanup_leftovers(self) -> None:
        """A run killed before destroy() leaves its namespaces and bridge: remove ours only."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        for ns in listed:
            if ns.startswith(f"{self.prefix}-"):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
