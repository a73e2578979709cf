"""Toxiproxy (Shopify's fault-injection TCP proxy) in front of a service: latency, bandwidth,
resets, timeouts between a worker and S3 (this kernel has no `netem` qdisc). The server binary
is built by infra/install.sh (VS_WITH_TOXIPROXY=1) into .stack/bin; its HTTP API is used as
documented for v2.5.0 (POST /proxies, POST /proxies/NAME/toxics).

    with Toxiproxy.start() as tp:
        listen = tp.proxy("s3", upstream="127.0.0.1:59000")
        tp.latency("s3", ms=50)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

from infra.process import StackError, free_port, port_open, wait

REPO = Path(__file__).resolve().parents[1]
BINARY = Path(os.environ.get("VS_TOXIPROXY", REPO / ".stack" / "bin" / "toxiproxy-server"))


class Toxiproxy:
    def __init__(self, proc: subprocess.Popen, api_port: int):
        self.proc, self.api_port = proc, api_port

    @classmethod
    def start(cls, binary: Path = BINARY) -> Toxiproxy:
        if not binary.is_file():
            raise StackError(f"no toxiproxy server at {binary}: run VS_WITH_TOXIPROXY=1 infra/install.sh")
        port = free_port()
        proc = subprocess.Popen(
            [str(binary), "-host", "127.0.0.1", "-port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait("toxiproxy", lambda: port_open(port), 30)
        return cls(proc, port)

    def _api(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
        return json.loads(text) if text else {}

    def proxy(self, name: str, upstream: str) -> str:
        """A proxy to `upstream` (host:port); returns the host:port it listens on."""
        listen = f"127.0.0.1:{free_port()}"
        self._api("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True})
        return listen

    def latency(self, name: str, ms: int, jitter_ms: int = 0) -> None:
        """Delay every chunk the upstream sends back by `ms` (a request's answer arrives `ms` later)."""
        self._api(
            "POST",
            f"/proxies/{name}/toxics",
            {
                "name": f"latency_{ms}",
                "type": "latency",
                "stream": "downstream",
                "toxicity": 1.0,
                "attributes": {"latency": ms, "jitter": jitter_ms},
            },
        )

    def clear(self, name: str) -> None:
        for toxic in self._api("GET", f"/proxies/{name}/toxics"):
            self._api("DELETE", f"/proxies/{name}/toxics/{toxic['name']}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)

    def __enter__(self) -> Toxiproxy:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
