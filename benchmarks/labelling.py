"""How fast labelling is in the browser: the time from a key press to the next image painted on
the labelling page (window.labelTimings, viewer/static/labelling.js: the key's event time to
the frame after the next image decoded; the next key is pressed once it is on screen), over
--labels labels on each of --repeats fresh pages,
in Debian's Chromium driven by Playwright; and the time from the admin's "Train" click to a
registered candidate (`training fit --from-labels` in the background, from stored embeddings).

On the local stack (DATABASE_URL, S3_ENDPOINT_URL: `python -m infra.stack up`): the dev photos
coarse.csv labels go into a bucket of their own, classified and embedded as a worker stores
them (benchmarks/train_from_embeddings.store); a viewer serves them; a labeller presses the key
of each photo's true coarse category. Prints JSON (--out writes it) and a histogram (--png).

    python -m benchmarks.labelling --labels 80 --repeats 2 \
        --out benchmarks/results/labelling.json --png benchmarks/results/labelling.png
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.cpu import model_name as cpu_model
from benchmarks.report import emit
from benchmarks.train_from_embeddings import coarse_photos, store
from settings import Settings

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "a benchmark's password"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 1),
        "p95": round(percentile(values, 0.95), 1),
        "max": round(max(values), 1),
    }


def start_viewer(env: dict) -> tuple[subprocess.Popen, str]:
    from infra.services import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "viewer", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    for _ in range(150):
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the viewer did not start")


def log_in(page, url: str, target: str, name: str) -> None:
    page.goto(url + target)
    page.fill("form.login input[name=name]", name)
    page.fill("form.login input[name=password]", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_url("**" + target)


def label_page(page, url: str, project: str, truth: dict[str, str], labels: int) -> list[float]:
    log_in(page, url, f"/label/{project}", "bench-labeller")
    page.wait_for_selector("#categories button")
    categories = page.locator("#categories button").evaluate_all("bs => bs.map(b => b.dataset.category)")
    page.wait_for_function("document.getElementById('current-key').textContent !== ''")
    for done in range(labels):
        key = page.locator("#current-key").inner_text()
        page.keyboard.press(str(categories.index(truth[key]) + 1))
        # as a person would: the next image on screen before the next key
        page.wait_for_function("n => window.labelTimings.length > n", arg=done)
        page.wait_for_function("document.getElementById('current-key').textContent !== ''")
    return page.evaluate("window.labelTimings")


def train(page, url: str, project: str) -> float:
    log_in(page, url, f"/label/{project}", "bench-admin")
    started = time.perf_counter()
    page.click("#train")
    page.wait_for_selector("#jobs tbody tr:not([data-state='running'])", timeout=900_000)
    seconds = time.perf_counter() - started
    state = page.locator("#jobs tbody tr").first.get_attribute("data-state")
    if state != "succeeded":
        raise SystemExit("the training failed: " + page.locator("#jobs tbody tr").first.inner_text())
    return seconds


def run(settings: Settings, labels: int, repeats: int) -> dict:
    from playwright.sync_api import sync_playwright

    from db import labels as label_store
    from db.connection import connect
    from viewer.accounts import create_user

    photos = coarse_photos(settings.shared_dir)
    bucket, project = f"bench-label-{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"
    truth = dict(store(settings, photos, len(photos), bucket))
    categories = sorted(set(truth.values()))
    keys_of: dict[str, list[str]] = {}
    for key, category in truth.items():
        keys_of.setdefault(category, []).append(key)
    seeds = [key for category in categories for key in keys_of[category][:2]]  # two of each
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            # the project's model answered them: its queue reads these rows only, not other runs'
            cur.execute(
                """INSERT INTO prediction_results (image_key, model, category, confidence, class_index, top_k, hostname)
                   SELECT image_key, %s, category, confidence, class_index, top_k, hostname FROM prediction_results
                   WHERE model = 'squeezenet1_1' AND image_key = ANY(%s)""",
                (project, list(truth)),
            )
            label_store.create_project(conn, project, categories, "benchmark")
            for key in seeds:  # so that any page's labels train: fit needs two of each category
                label_store.add(conn, project, [key], truth[key], "benchmark", "key")
            for name, role in (("bench-labeller", "labeller"), ("bench-admin", "admin")):
                cur.execute("DELETE FROM viewer_users WHERE name = %s", (name,))  # from an earlier run
                create_user(conn, "benchmark", name, role, PASSWORD)
    finally:
        conn.close()
    viewer, url = start_viewer({**os.environ, "S3_BUCKET": bucket})
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Debian's chromium is not installed: VS_WITH_BROWSER=1 infra/install.sh")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            per_page = []
            for _ in range(repeats):
                # bypass_csp: Playwright's waits evaluate strings, which the viewer's CSP forbids
                page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
                per_page.append(label_page(page, url, project, truth, labels))
                page.close()
            train_s = train(browser.new_page(bypass_csp=True), url, project)
            version = browser.version
            browser.close()
    finally:
        viewer.terminate()
        viewer.wait(timeout=30)
    every = [t for timings in per_page for t in timings]
    return {
        "benchmark": "labelling",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "chromium": version,
        "photos": len(photos),
        "labels_per_page": labels,
        "repeats": repeats,
        "key_to_next_image_ms": summary(every),
        "per_page": [summary(t) for t in per_page],
        "spread_p95_ms": round(max(summary(t)["p95"] for t in per_page) - min(summary(t)["p95"] for t in per_page), 1),
        "train_click_to_candidate_s": round(train_s, 1),
        "labels_trained": labels * repeats + len(seeds),
        "timings_ms": [round(t, 2) for t in every],
    }


def draw(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist(result["timings_ms"], bins=40, color="#1f77b4")
    s = result["key_to_next_image_ms"]
    ax.axvline(s["p95"], color="#d62728", linestyle="--", label=f"p95 {s['p95']} ms")
    ax.axvline(100, color="#777", linestyle=":", label="goal 100 ms")
    ax.set_xlabel("key press to next image painted (ms)")
    ax.set_ylabel("labels")
    ax.set_title(f"labelling in Chromium: {s['n']} labels, {result['repeats']} pages ({result['machine']['cpu']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=int, default=80, help="labels per page (default 80)")
    ap.add_argument("--repeats", type=int, default=2, help="fresh pages (default 2)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--png", type=Path)
    args = ap.parse_args(argv)
    if not 1 <= args.labels <= 200 or not 1 <= args.repeats <= 20:
        ap.error("--labels 1-200, --repeats 1-20 (the coarse dev photos are 240)")
    if (args.labels + 24) * args.repeats > 220:  # a page leases up to 24 images ahead
        ap.error("(--labels + 24) x --repeats must stay under 220 (of the 240 photos, each labelled once)")
    result = run(Settings(), args.labels, args.repeats)
    if args.png:
        draw(args.png, result)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
