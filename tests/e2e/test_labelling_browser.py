"""The labelling loop in real Chromium on the real stack, through the pages only: an admin
makes a labeller and a project; the labeller labels the least sure images by keyboard and ten
more in one bulk action; the admin trains, shadows, reads the agreement, promotes, and the
running workers' new rows name the new version; the admin rolls back. The dev photos' truth
comes from ../shared/images/coarse.csv. The key-press-to-next-image times go to
test-artifacts/labelling-timings.json (a record, not a pass mark)."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest

from db.connection import connect
from infra.fleet import ARTIFACTS, REPO, fleet_env, run
from tests.e2e.browser import launch_chromium, log_in, put, start_viewer

LABELS_BY_KEY = 40
ADMIN_PASSWORD = "the admin's password for this test"


@pytest.fixture(scope="module")
def chromium():
    yield from launch_chromium()


def truth_of(shared_dir) -> dict[str, str]:
    """dev photo file name -> its coarse category, for the photos coarse.csv covers."""
    coarse = {r["class_index"]: r["coarse"] for r in csv.DictReader((shared_dir / "images" / "coarse.csv").open())}
    dev = csv.DictReader((shared_dir / "images" / "dev" / "labels.csv").open())
    return {r["filename"]: coarse[r["class_index"]] for r in dev if r["class_index"] in coarse}


def versions_of(settings, name: str, keys: list[str]) -> dict[str, int]:
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT image_key, model_version FROM prediction_results WHERE model = %s AND image_key = ANY(%s)",
                (name, keys),
            )
            return dict(cur.fetchall())
    finally:
        conn.close()


def test_label_train_shadow_promote_and_roll_back_in_the_browser(
    e2e, stack_settings, db_conn, dev_images, shared_dir, stack_env, chromium, weights_path, tmp_path
):
    name = f"coarse-{uuid.uuid4().hex[:6]}"
    env = {
        **fleet_env(stack_settings, stack_env),
        "MODEL_NAMES": f"{name},squeezenet1_1",
        "MODEL_POLL_S": "1",
        "MODEL_WEIGHTS": str(weights_path),
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "TORCH_THREADS": "1",
    }
    # what a team starts from: its categories as a map of ImageNet's classes, in production
    run([sys.executable, "-m", "training", "map", name, "--classes", str(shared_dir / "images" / "coarse.csv")], env)
    run([sys.executable, "-m", "training", "promote", f"{name}@1"], env)
    run([sys.executable, "upload.py", str(dev_images)], env)
    fleet = e2e.fleet(stack_settings, env, "labelling", workers=2)
    run([sys.executable, "-m", "producer"], env)
    fleet.wait_rows(500, 600)
    viewer, url = start_viewer({**env, "VIEWER_REFRESH_S": "1"}, "viewer-labelling.log")
    e2e.adopt(viewer)
    subprocess.run(
        [sys.executable, "-m", "viewer", "create-user", "lead", "--role", "admin"],
        env={**env, "VIEWER_PASSWORD": ADMIN_PASSWORD},
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    truth = truth_of(shared_dir)
    page = chromium.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)

    # The admin makes the project from the production version's categories, and a labeller.
    page.goto(url + "/label")
    log_in(page, "lead", ADMIN_PASSWORD)
    page.wait_for_url("**/label")
    page.fill("#new-project input[name=model]", name)
    page.check("#new-project input[name=from_model]")
    page.click("#new-project button[type=submit]")
    page.wait_for_selector(f"#projects tr[data-model='{name}']")
    page.goto(url + "/users")
    page.fill("#new-user input[name=name]", "lena")
    page.select_option("#new-user select[name=role]", "labeller")
    page.click("#new-user button[type=submit]")
    password = page.locator("#one-time-password").inner_text()
    page.click("form.account button[type=submit]")

    # The labeller: the least sure images first, one key each (x skips a photo coarse.csv
    # does not cover), until 40 are labelled.
    page.goto(url + f"/label/{name}")
    log_in(page, "lena", password)
    page.wait_for_url(f"**/label/{name}")
    page.wait_for_selector("#categories button")
    categories = page.locator("#categories button").evaluate_all("bs => bs.map(b => b.dataset.category)")
    labelled: dict[str, str] = {}
    presses = 0
    # (training needs two labels of each category it sees: go on until every one labelled has two)
    while len(labelled) < LABELS_BY_KEY or min(Counter(labelled.values()).values()) < 2:
        page.wait_for_function("document.getElementById('current-key').textContent !== ''")
        key = page.locator("#current-key").inner_text()
        category = truth.get(key)
        if category in categories[:9]:
            page.keyboard.press(str(categories.index(category) + 1))
            labelled[key] = category
        else:
            page.keyboard.press("x")
        presses += 1
        assert presses < 400, "the queue ran dry"
        page.wait_for_function(f"document.getElementById('current-key').textContent !== {json.dumps(key)}")
    assert len(set(labelled.values())) >= 3
    page.wait_for_function("window.labelTimings.length >= 40")
    timings = page.evaluate("window.labelTimings")
    page.screenshot(path=str(ARTIFACTS / "labelling-keyboard.png"), full_page=True)

    # Ten more in one bulk action: the grid, "similar" to a dog, the others unselected, one key.
    page.check("#grid-mode")
    page.wait_for_selector("#label-grid .card")
    dog = next(
        k
        for k in page.locator("#label-grid .card").evaluate_all("cs => cs.map(c => c.dataset.key)")
        if truth.get(k) == "dog"
    )
    page.locator(f"#label-grid .card[data-key='{dog}'] button.similar").click()
    page.wait_for_function("Number(document.getElementById('selected-count').textContent) > 10")
    chosen = page.locator("#label-grid .card.selected").evaluate_all("cs => cs.map(c => c.dataset.key)")
    for key in chosen:
        if truth.get(key) != "dog":  # not a dog: out of the selection
            page.locator(f"#label-grid .card[data-key={json.dumps(key)}] img").click()
    bulk = page.locator("#label-grid .card.selected").evaluate_all("cs => cs.map(c => c.dataset.key)")
    assert len(bulk) >= 10
    page.screenshot(path=str(ARTIFACTS / "labelling-grid.png"), full_page=True)
    page.keyboard.press(str(categories.index("dog") + 1))
    page.wait_for_function("document.querySelectorAll('#label-grid .card.selected').length === 0")
    page.wait_for_function(
        f"document.getElementById('progress').textContent.startsWith('{len(set(labelled) | set(bulk))} labelled')"
    )
    page.click("form.account button[type=submit]")

    # The admin trains from the labels, in the background, and sees the candidate registered.
    page.goto(url + f"/label/{name}")
    log_in(page, "lead", ADMIN_PASSWORD)
    page.wait_for_url(f"**/label/{name}")
    clicked = time.monotonic()
    page.click("#train")
    page.wait_for_selector("#jobs tbody tr:not([data-state='running'])", timeout=600_000)
    train_s = time.monotonic() - clicked
    job = page.locator("#jobs tbody tr").first
    assert job.get_attribute("data-state") == "succeeded", job.inner_text()
    assert job.locator("a").inner_text() == f"{name}@2"

    # Shadow it, and watch its agreement with production on new images.
    page.goto(url + "/models")
    candidate = page.locator(f"section[data-ref='{name}@2']")
    candidate.locator("button[data-action=shadow]").click()
    candidate.locator("button[data-action=shadow]").click()  # confirm
    page.wait_for_selector(f"section.shadow[data-ref='{name}@2']")
    time.sleep(3)  # > MODEL_POLL_S: the workers load the shadow
    photos = sorted(dev_images.glob("*.JPEG"))

    def stream(tag: str, n: int) -> list[str]:
        keys = [f"{tag}/{p.name}" for p in photos[:n]]
        for key, photo in zip(keys, photos):
            put(stack_settings, key, photo.read_bytes())
        subprocess.run(
            [sys.executable, "-m", "producer", "--stdin"],
            input="\n".join(keys).encode(),
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        fleet.wait_for(f"{tag}'s rows", lambda: len(versions_of(stack_settings, name, keys)) == n, 300)
        return keys

    stream("shadowed", 60)
    page.wait_for_function(
        f"document.querySelector(\"section[data-ref='{name}@2']\").textContent.includes('shadow agreement with')"
    )
    page.wait_for_selector(f"section[data-ref='{name}@2'] .labelled-accuracy")
    page.screenshot(path=str(ARTIFACTS / "labelling-shadow.png"), full_page=True)

    # Promote: the running workers switch, and new rows name version 2; then roll back to 1.
    shadow = page.locator(f"section[data-ref='{name}@2']")
    shadow.locator("button[data-action=promote]").click()
    shadow.locator("button[data-action=promote]").click()
    page.wait_for_selector(f"section.production[data-ref='{name}@2']")
    time.sleep(3)
    assert set(versions_of(stack_settings, name, stream("promoted", 30)).values()) == {2}
    page.locator(f"section[data-ref='{name}@2'] button[data-action=rollback]").click()
    page.locator(f"section[data-ref='{name}@2'] button[data-action=rollback]").click()
    page.wait_for_selector(f"section.production[data-ref='{name}@1']")
    time.sleep(3)
    assert set(versions_of(stack_settings, name, stream("rolled-back", 30)).values()) == {1}
    page.screenshot(path=str(ARTIFACTS / "labelling-models.png"), full_page=True)

    # Who did what: the admin's actions, as the Users page shows them.
    page.goto(url + "/users")
    page.wait_for_selector("#actions tbody tr")
    done = page.locator("#actions tbody tr").all_inner_texts()
    for action in ("create labelling project", "create user", "train", "shadow", "promote"):
        assert any(f"lead\t{action}\t" in row for row in done), action

    figures = {
        "labels_by_key": len(labelled),
        "key_presses": presses,
        "key_to_next_image_ms": {
            "n": len(timings),
            "p50": round(statistics.median(timings), 1),
            "p95": round(sorted(timings)[int(0.95 * (len(timings) - 1))], 1),
            "max": round(max(timings), 1),
        },
        "bulk_labels": len(bulk),
        "train_click_to_registered_s": round(train_s, 1),
    }
    (ARTIFACTS / "labelling-timings.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
    e2e.stop()
