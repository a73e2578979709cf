"""The web viewer in real headless Chromium (Debian's, driven by Playwright) while two
`faust worker` processes classify the dev photos on the real stack. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse

import pytest
from PIL import Image

from infra.fleet import ARTIFACTS, REPO, fleet_env, run
from tests.e2e.browser import launch_chromium, log_in, put, start_viewer

SCRIPT_KEY = "evil/<script>alert('xss')</script>.jpg"


@pytest.fixture(scope="module")
def chromium():
    yield from launch_chromium()


def test_the_viewer_shows_the_fleet_classifying(e2e, stack_settings, db_conn, dev_images, stack_env, chromium):
    env = fleet_env(stack_settings, stack_env)
    run([sys.executable, "upload.py", str(dev_images)], env)
    photo = sorted(dev_images.glob("*.JPEG"))[0].read_bytes()
    put(stack_settings, SCRIPT_KEY, photo)

    fleet = e2e.fleet(stack_settings, env, "viewer", workers=2)
    run([sys.executable, "-m", "producer"], env)
    fleet.wait_rows(501, 600)
    viewer, url = start_viewer({**env, "VIEWER_REFRESH_S": "1"})
    e2e.adopt(viewer)

    # bypass_csp: Playwright's waits evaluate strings, which the viewer's CSP forbids; it
    # also shows that the escaping alone keeps the <script> key inert.
    page = chromium.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # Accounts: the first admin from the command line; it makes a `viewer` on the Users page,
    # whose one-time password lets the rest of the test in.
    admin_password = "admin password for the browser test"
    made = subprocess.run(
        [sys.executable, "-m", "viewer", "create-user", "boss", "--role", "admin"],
        env={**env, "VIEWER_PASSWORD": admin_password},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert made.stdout.strip() == "created boss (admin)"
    page.goto(url + "/fleet")
    page.wait_for_url("**/login?next=**")
    log_in(page, "boss", admin_password)
    page.wait_for_url("**/fleet")
    page.click("nav a[href='/users']")
    page.fill("#new-user input[name=name]", "reader")
    page.select_option("#new-user select[name=role]", "viewer")
    page.click("#new-user button[type=submit]")
    reader_password = page.locator("#one-time-password").inner_text()
    page.wait_for_selector("#users tr[data-name='reader']")
    assert page.locator("#actions tbody tr").first.inner_text().split("\t")[1:4] == ["boss", "create user", "reader"]
    page.screenshot(path=str(ARTIFACTS / "viewer-users.png"), full_page=True)
    page.click("form.account button[type=submit]")
    page.wait_for_url("**/login")
    page.goto(url + "/users")
    log_in(page, "reader", reader_password)
    page.wait_for_url("**/users")
    assert "needs the admin role" in page.content()  # a viewer may not manage users

    # The grid: 48 thumbnails that really decoded, each with a category and three bars.
    page.goto(url + "/")
    assert (
        page.locator("nav a[href='/users']").count() == 0 and page.locator("#whoami").inner_text() == "reader (viewer)"
    )
    page.wait_for_function("document.querySelectorAll('.card img').length === 48")
    page.wait_for_function(
        "[...document.querySelectorAll('.card img')].slice(0, 12).every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("#total").inner_text().startswith("501 matching")
    cards = page.locator(".card")
    assert all(c.strip() for c in cards.locator(".category").all_inner_texts())
    assert cards.first.locator("meter").count() == 3
    page.screenshot(path=str(ARTIFACTS / "viewer-grid.png"))

    # A filter narrows the grid to one category, as many cards as the API counts.
    category = page.evaluate("fetch('/api/classes?limit=1').then(r => r.json()).then(d => d.items[0])")
    page.fill("input[name=category]", category["category"])
    page.click("#filters button[type=submit]")
    page.wait_for_url("**category=*")
    expected = min(48, category["count"])
    page.wait_for_function(f"document.querySelectorAll('.card').length === {expected}")
    assert set(page.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.category)")) == {category["category"]}
    assert page.locator("#total").inner_text().startswith(f"{category['count']} matching")

    # A <script> key is text: searched for, shown, never run.
    page.goto(url + "/?" + urllib.parse.urlencode({"q": "<script>"}))
    page.wait_for_function("document.querySelectorAll('.card').length === 1")
    assert page.locator(".card .key").inner_text() == SCRIPT_KEY
    assert page.locator("#grid script").count() == 0
    page.click(".card a")
    page.wait_for_url("**/image?**")
    assert page.locator("h1").inner_text() == SCRIPT_KEY
    assert page.locator("ol.topk li").count() == 5
    # Below it, the 12 most similar images; the first is the dev photo it is a copy of.
    page.wait_for_function("document.querySelectorAll('#similar-grid .card').length === 12", timeout=120_000)
    first_photo = sorted(dev_images.glob("*.JPEG"))[0].name
    assert page.locator("#similar-grid .card").first.get_attribute("data-key") == first_photo
    page.wait_for_function("[...document.querySelectorAll('#similar-grid img')].every(i => i.complete)")
    page.screenshot(path=str(ARTIFACTS / "viewer-image.png"), full_page=True)

    # Live: a new image classified while the page is open appears without a reload.
    page.goto(url + "/")
    page.wait_for_function("document.querySelectorAll('.card').length === 48")
    put(stack_settings, "live/arrived-later.jpg", photo)
    subprocess.run(
        [sys.executable, "-m", "producer", "--stdin"],
        input=b"live/arrived-later.jpg\n",
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    page.wait_for_selector(".card[data-key='live/arrived-later.jpg']", timeout=60_000)
    assert page.locator("#total").inner_text().startswith("502 matching")

    # The fleet: a rate line per worker, both hosts, the lag per partition.
    page.goto(url + "/fleet")
    for host in ("worker-1", "worker-2"):
        page.wait_for_selector(f"#chart polyline[data-host='{host}']", state="attached")
    page.wait_for_function("document.querySelectorAll('#lag tbody tr').length === 3")
    hosts = page.locator("#hosts tbody tr").all_inner_texts()
    assert [h.split()[0] for h in hosts] == ["worker-1", "worker-2"]
    page.screenshot(path=str(ARTIFACTS / "viewer-fleet.png"), full_page=True)

    page.goto(url + "/classes")
    page.wait_for_selector("#classes tbody tr")
    assert page.locator("#classes tbody tr").first.inner_text().startswith(category["category"])

    # Search by photo: a smaller, re-encoded copy of a dev photo finds it first.
    target = sorted(dev_images.glob("*.JPEG"))[7]
    copy = ARTIFACTS / "search-by-photo.jpg"
    with Image.open(target) as img:
        img.convert("RGB").resize((img.width * 2 // 3, img.height * 2 // 3)).save(copy, "JPEG", quality=55)
    page.goto(url + "/similar")
    page.set_input_files("input[name=photo]", str(copy))
    page.click("form.upload button[type=submit]")
    page.wait_for_selector("#photo-results .card")
    assert page.locator("#photo-results .card .key").first.inner_text() == target.name
    page.screenshot(path=str(ARTIFACTS / "viewer-search-by-photo.png"), full_page=True)

    # Near-duplicates: the three keys holding the first dev photo's bytes are one group.
    page.goto(url + "/duplicates?prefix=")
    assert page.locator("#duplicate-counts").inner_text().startswith("502 images")
    group = page.locator(".duplicate-group").first.locator(".key").all_inner_texts()
    assert sorted(group) == sorted([first_photo, SCRIPT_KEY, "live/arrived-later.jpg"])
    page.screenshot(path=str(ARTIFACTS / "viewer-duplicates.png"), full_page=True)
    assert dialogs == [], f"a script ran: {dialogs}"
    e2e.stop()
