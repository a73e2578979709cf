"""Labelling through the viewer's routes on the real PostgreSQL: projects, the queues and their
leases, labels with their history, races between labellers, undo, bulk, progress, the
accuracy estimate and the export. The model's answers are rows written as the workers write
them (db.queries.write_batch), with margins chosen so the order is known."""

from __future__ import annotations

import csv
import io
import threading
import uuid

import pytest

from db.queries import Prediction, register_images, write_batch
from tests.viewer.logins import logged_in, register_versions

CATEGORIES = ["cat", "dog", "<i>bird"]


def answers(conn, model: str, margins: dict[str, float], vectors=None) -> None:
    """One result row per key for `model`: top-1 'cat' or 'dog', the top two `margin` apart
    (and its embedding, when `vectors` are given)."""
    register_images(conn, [(k, 1000) for k in margins])
    rows = []
    for i, (key, margin) in enumerate(margins.items()):
        first, second = ("cat", "dog") if i % 2 == 0 else ("dog", "cat")
        p1 = (1 + margin) / 2
        top_k = [
            {"class_index": 0, "category": first, "confidence": p1},
            {"class_index": 1, "category": second, "confidence": p1 - margin},
        ]
        rows.append(Prediction(key, model, first, p1, 0, top_k, "test-host", 1.0))
    write_batch(conn, rows, [], vectors=vectors or ())


@pytest.fixture
def project(site):
    """A project whose model has 12 answered images, margins 0.00, 0.05, ... 0.55 (shuffled)."""
    _, conn, app = site
    name = f"proj-{uuid.uuid4().hex[:6]}"
    admin = logged_in(app, conn, "admin")
    made = admin.post("/api/label/projects", json={"model": name, "categories": CATEGORIES})
    assert made.status_code == 201, made.get_json()
    margins = {f"{name}/img-{i:02d}.jpg": round(((i * 5) % 12) * 0.05, 2) for i in range(12)}
    answers(conn, name, margins)
    return name, margins, admin


def queue(client, name, kind="margin", n=10):
    resp = client.post(f"/api/label/{name}/queue", query_string={"kind": kind, "n": n})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["items"]


def test_the_margin_queue_gives_the_least_sure_images_first_with_the_suggestion(site, project):
    _, conn, app = site
    name, margins, _ = project
    labeller = logged_in(app, conn, "labeller")
    items = queue(labeller, name, n=4)
    assert [i["image_key"] for i in items] == sorted(margins, key=margins.get)[:4]
    assert [i["margin"] for i in items] == pytest.approx([0.0, 0.05, 0.10, 0.15], abs=1e-4)
    assert all(i["suggestion"] == i["category"] and i["category"] in ("cat", "dog") for i in items)


def test_two_labellers_never_get_the_same_image_and_a_lapsed_lease_frees_it(site, project):
    _, conn, app = site
    name, margins, _ = project
    ann, bob = logged_in(app, conn, "labeller"), logged_in(app, conn, "labeller")
    got: dict[str, list[str]] = {}

    def ask(who, client):
        got[who] = [i["image_key"] for i in queue(client, name, n=8)]

    threads = [threading.Thread(target=ask, args=(w, c)) for w, c in (("ann", ann), ("bob", bob))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(got["ann"]) & set(got["bob"])
    assert sorted(got["ann"] + got["bob"]) == sorted(margins)  # 12 images, none twice, none lost
    assert queue(ann, name) == []  # her own leased images are not handed out again
    with conn, conn.cursor() as cur:  # bob walks away: his leases lapse
        cur.execute(
            "UPDATE label_leases SET until = now() - interval '1 second' WHERE image_key = ANY(%s)", (got["bob"],)
        )
    assert sorted(i["image_key"] for i in queue(ann, name, n=12)) == sorted(got["bob"])


def test_a_relabel_and_a_race_keep_every_label_in_the_history_and_the_later_is_current(site, project):
    _, conn, app = site
    name, margins, admin = project
    ann, bob = logged_in(app, conn, "labeller"), logged_in(app, conn, "labeller")
    key = next(iter(margins))
    first = ann.post(f"/api/label/{name}", json={"keys": [key], "category": "cat"})
    assert first.status_code == 200 and first.get_json()["previous"] == {key: None}
    assert ann.post(f"/api/label/{name}", json={"keys": [key], "category": "dog"}).get_json()["previous"] == {
        key: "cat"
    }
    barrier = threading.Barrier(2)

    def race(client, category):
        barrier.wait()
        assert client.post(f"/api/label/{name}", json={"keys": [key], "category": category}).status_code == 200

    threads = [threading.Thread(target=race, args=a) for a in ((ann, "cat"), (bob, "<i>bird"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = admin.get(f"/api/label/{name}/history", query_string={"key": key}).get_json()["items"]
    assert len(history) == 4 and [h["category"] for h in history[2:]] == ["dog", "cat"]
    assert {h["by"] for h in history[:2]} == {ann.user_name, bob.user_name}
    export = admin.get(f"/api/label/{name}/labels.csv").get_data(as_text=True)
    assert list(csv.reader(io.StringIO(export))) == [["image_key", "category"], [key, history[0]["category"]]]


def test_undo_takes_a_label_back_and_the_image_returns_to_the_queue(site, project):
    _, conn, app = site
    name, margins, _ = project
    labeller = logged_in(app, conn, "labeller")
    (item,) = queue(labeller, name, n=1)
    key = item["image_key"]
    labeller.post(f"/api/label/{name}", json={"keys": [key], "category": "dog", "how": "key", "queue": "margin"})
    undone = labeller.post(f"/api/label/{name}", json={"keys": [key], "category": None, "how": "undo"})
    assert undone.get_json()["previous"] == {key: "dog"}
    other = logged_in(app, conn, "labeller")
    assert key in [i["image_key"] for i in queue(other, name, n=12)]
    export = other.get(f"/api/label/{name}/labels.csv").get_data(as_text=True)
    assert export == "image_key,category\n"


def test_bulk_labels_and_progress_per_category_and_person(site, project):
    _, conn, app = site
    name, margins, admin = project
    labeller = logged_in(app, conn, "labeller")
    keys = list(margins)
    assert (
        labeller.post(f"/api/label/{name}", json={"keys": keys[:10], "category": "cat", "how": "bulk"}).status_code
        == 200
    )
    assert labeller.post(f"/api/label/{name}", json={"keys": keys[10:], "category": "<i>bird"}).status_code == 200
    progress = admin.get(f"/api/label/{name}").get_json()["progress"]
    assert progress == {
        "labelled": 12,
        "today": 12,
        "per_category": {"cat": 10, "<i>bird": 2},
        "per_person": {labeller.user_name: 12},
    }
    assert queue(labeller, name) == []  # all labelled


def test_the_random_queue_estimates_the_models_accuracy_with_an_interval(site, project):
    _, conn, app = site
    name, margins, admin = project
    labeller = logged_in(app, conn, "labeller")
    items = queue(labeller, name, "random", n=12)
    assert sorted(i["image_key"] for i in items) == sorted(margins)
    for n, item in enumerate(items):  # the model is right on 9 of 12
        truth = item["category"] if n < 9 else "<i>bird"
        labeller.post(f"/api/label/{name}", json={"keys": [item["image_key"]], "category": truth, "queue": "random"})
    estimate = admin.get(f"/api/label/{name}").get_json()["estimate"]
    assert estimate["images"] == 12 and estimate["agree"] == 9 and estimate["accuracy"] == 0.75
    low, high = estimate["interval95"]
    assert low == pytest.approx(0.4677, abs=1e-3) and high == pytest.approx(0.9111, abs=1e-3)  # Wilson, z=1.96


@pytest.mark.parametrize(
    "body, says",
    [
        ({"keys": ["a"], "category": "fish"}, "is not a category of this project"),
        ({"keys": [], "category": "cat"}, "non-empty list"),
        ({"keys": ["a"]}, "category is missing"),
        ({"keys": ["a"], "category": "cat", "how": "magic"}, "how must be one of"),
        ({"keys": ["a\x00"], "category": "cat"}, "NUL"),
        ({"keys": ["k"] * 501, "category": "cat"}, "at most 500"),
        ("not an object", "JSON object"),
    ],
)
def test_a_bad_label_is_a_400_with_the_reason(site, project, body, says):
    _, conn, app = site
    labeller = logged_in(app, conn, "labeller")
    resp = labeller.post(f"/api/label/{project[0]}", json=body)
    assert resp.status_code == 400 and says in resp.get_json()["error"]


def test_projects_are_made_by_admins_with_valid_categories_and_recorded(site, project):
    _, conn, app = site
    name, _, admin = project
    for body, says in (
        ({"model": name, "categories": ["a", "b"]}, "exists already"),
        ({"model": "x", "categories": ["only-one"]}, "2 to 200 categories"),
        ({"model": "x", "categories": ["a", "a"]}, "repeat"),
        ({"model": "bad name!", "categories": ["a", "b"]}, "is not a model name"),
        ({"model": f"none-{uuid.uuid4().hex[:6]}", "from_model": True}, "no production version"),
    ):
        resp = admin.post("/api/label/projects", json=body)
        assert resp.status_code == 400 and says in resp.get_json()["error"], body
    viewer = logged_in(app, conn, "viewer")
    assert (
        viewer.get(f"/label/{name}").status_code == 403 and viewer.post(f"/api/label/{name}/queue").status_code == 403
    )
    labeller = logged_in(app, conn, "labeller")
    page = labeller.get(f"/label/{name}")
    assert page.status_code == 200 and b"<i>bird" not in page.data  # categories arrive as JSON, shown as text
    assert labeller.get("/label/no-such-project").status_code == 404
    assert labeller.post("/api/label/bad%00name/queue").status_code == 400
    assert labeller.get(f"/api/label/{name}/queue").status_code == 405  # leasing is never a GET
    actions = admin.get("/api/users").get_json()["actions"]
    assert any(a["action"] == "create labelling project" and a["target"] == name for a in actions)


def test_likely_mislabels_are_labels_the_model_confidently_contradicts(site):
    _, conn, app = site
    name = f"mis-{uuid.uuid4().hex[:6]}"
    admin = logged_in(app, conn, "admin")
    admin.post("/api/label/projects", json={"model": name, "categories": CATEGORIES})
    # top-1 cat/dog alternating; margins 0.9 and 0.7 are confident (p 0.95, 0.85), 0.1 is not
    margins = {f"{name}/sure.jpg": 0.9, f"{name}/fairly.jpg": 0.7, f"{name}/unsure.jpg": 0.1, f"{name}/right.jpg": 0.9}
    answers(conn, name, margins)
    keys = list(margins)
    admin.post(f"/api/label/{name}", json={"keys": [keys[0]], "category": "dog"})  # the model said cat
    admin.post(f"/api/label/{name}", json={"keys": [keys[1]], "category": "cat"})  # the model said dog
    admin.post(f"/api/label/{name}", json={"keys": [keys[2]], "category": "dog"})  # cat, but unsure
    admin.post(f"/api/label/{name}", json={"keys": [keys[3]], "category": "dog"})  # agrees
    items = queue(logged_in(app, conn, "labeller"), name, "mislabel")
    assert [i["image_key"] for i in items] == keys[:2]  # the most confident contradiction first


def test_the_disagreement_queue_shows_where_the_shadow_differs_from_production(site):
    from db import registry
    from db.queries import ShadowPrediction

    _, conn, app = site
    name = f"dis-{uuid.uuid4().hex[:6]}"
    admin = logged_in(app, conn, "admin")
    admin.post("/api/label/projects", json={"model": name, "categories": CATEGORIES})
    margins = {f"{name}/{i}.jpg": 0.3 for i in range(4)}
    answers(conn, name, margins)  # production: cat, dog, cat, dog
    register_versions(conn, name, CATEGORIES)
    registry.set_stage(conn, name, 1, "production")
    registry.set_stage(conn, name, 2, "shadow")
    said = ["cat", "cat", "dog", "dog"]  # the shadow differs on the 2nd and 3rd
    shadows = [ShadowPrediction(k, name, 2, c, 0.6, 0, [], "test-host") for k, c in zip(margins, said)]
    write_batch(conn, [], [], shadows)
    items = queue(logged_in(app, conn, "labeller"), name, "disagreement")
    assert sorted(i["image_key"] for i in items) == sorted(list(margins)[1:3])


def test_a_queue_page_holds_no_two_near_duplicates(site):
    import numpy as np

    from db.embeddings import Embedding

    _, conn, app = site
    name = f"dup-{uuid.uuid4().hex[:6]}"
    admin = logged_in(app, conn, "admin")
    admin.post("/api/label/projects", json={"model": name, "categories": CATEGORIES})
    margins = {f"{name}/photo.jpg": 0.0, f"{name}/photo-copy.jpg": 0.01, f"{name}/other.jpg": 0.02}
    rng = np.random.default_rng(0)
    a, b = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 512)).astype(np.float32))
    near = a + 0.05 * b
    vectors = [a, near / np.linalg.norm(near), b]
    answers(conn, name, margins, [Embedding(k, "squeezenet1_1", v) for k, v in zip(margins, vectors)])
    labeller = logged_in(app, conn, "labeller")
    assert [i["image_key"] for i in queue(labeller, name)] == [f"{name}/photo.jpg", f"{name}/other.jpg"]
    assert [i["image_key"] for i in queue(labeller, name)] == [f"{name}/photo-copy.jpg"]  # on a later page


def test_undo_replaces_only_ones_own_label(site, project):
    _, conn, app = site
    name, margins, admin = project
    ann, bob = logged_in(app, conn, "labeller"), logged_in(app, conn, "labeller")
    key = next(iter(margins))
    ann.post(f"/api/label/{name}", json={"keys": [key], "category": "cat"})
    bob.post(f"/api/label/{name}", json={"keys": [key], "category": "dog"})  # bob labels it since
    undone = ann.post(f"/api/label/{name}", json={"keys": [key], "category": None, "how": "undo"})
    assert undone.status_code == 200 and undone.get_json() == {"labelled": 1, "previous": {}}
    history = admin.get(f"/api/label/{name}/history", query_string={"key": key}).get_json()["items"]
    assert [h["category"] for h in history] == ["dog", "cat"]  # bob's label stays current


@pytest.mark.parametrize(
    "body, says",
    [
        ('{"keys": ["\\ud800"], "category": "cat"}', "not valid text"),
        ('{"keys": ["' + "k" * 1100 + '"], "category": "cat"}', "longer than 1024 bytes"),
        ('{"keys": ["a"], "category": ["cat"]}', "is not a category"),
    ],
)
def test_keys_that_postgresql_could_not_index_or_store_are_a_400(site, project, body, says):
    _, conn, app = site
    labeller = logged_in(app, conn, "labeller")
    resp = labeller.post(f"/api/label/{project[0]}", data=body, content_type="application/json")
    assert resp.status_code == 400 and says in resp.get_json()["error"]


def test_a_project_cannot_be_named_like_a_route_or_hold_a_category_that_is_no_folder_name(site, project):
    admin = project[2]
    assert (
        "reserved"
        in admin.post("/api/label/projects", json={"model": "projects", "categories": ["a", "b"]}).get_json()["error"]
    )
    for bad in ("a/b", "..", "x\\y"):
        resp = admin.post("/api/label/projects", json={"model": "folders-x", "categories": [bad, "ok"]})
        assert resp.status_code == 400 and "folder names" in resp.get_json()["error"], bad
    resp = admin.post(
        "/api/label/projects", data='{"model": "s1", "categories": ["\\udc80", "b"]}', content_type="application/json"
    )
    assert resp.status_code == 400 and "not valid text" in resp.get_json()["error"]


def test_admins_see_who_labelled_what(site, project):
    _, conn, app = site
    name, margins, admin = project
    ann = logged_in(app, conn, "labeller")
    keys = list(margins)[:2]
    ann.post(f"/api/label/{name}", json={"keys": keys, "category": "dog", "how": "bulk"})
    recent = admin.get(f"/api/label/{name}/recent").get_json()["items"]
    assert [(r["image_key"], r["category"], r["by"], r["how"]) for r in recent[:2]] == [
        (k, "dog", ann.user_name, "bulk") for k in reversed(keys)
    ]
    assert ann.get(f"/api/label/{name}/recent").status_code == 403  # labellers see their counts, not others' rows


def test_only_registered_images_can_be_labelled(site, project):
    _, conn, app = site
    labeller = logged_in(app, conn, "labeller")
    resp = labeller.post(
        f"/api/label/{project[0]}", json={"keys": ['=HYPERLINK("x")', "never/seen.jpg"], "category": "cat"}
    )
    assert resp.status_code == 400 and "2 key(s) are no registered image" in resp.get_json()["error"]
    assert labeller.get(f"/api/label/{project[0]}/labels.csv").get_data(as_text=True) == "image_key,category\n"
