"""What the browser tests share: Debian's Chromium driven by Playwright (`chromium`, a module
fixture), a viewer started on a free port, logging in through the login page, and an image put
into the bucket and registered."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from db.connection import connect
from db.queries import register_images
from infra.fleet import ARTIFACTS, REPO
from infra.services import free_port

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium():
    from playwright.sync_api import sync_playwright

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run `VS_WITH_BROWSER=1 infra/install.sh`", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def start_viewer(env: dict, log_name: str = "viewer.log") -> tuple[subprocess.Popen, str]:
    port = free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(ARTIFACTS / log_name, "w") as log:  # the viewer keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "viewer", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the viewer did not answer /healthz: " + (ARTIFACTS / log_name).read_text()[-2000:])


def log_in(page, name: str, password: str) -> None:
    page.fill("form.login input[name=name]", name)
    page.fill("form.login input[name=password]", password)
    page.click("form.login button[type=submit]")


def put(settings, key: str, data: bytes) -> None:
    settings.s3_client().put_object(Bucket=settings.s3_bucket, Key=key, Body=data)
    conn = connect(settings)
    try:
        register_images(conn, [(key, len(data))])
    finally:
        conn.close()
