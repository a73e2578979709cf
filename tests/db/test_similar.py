"""The similar-image index on the real PostgreSQL: built from the table, caught up with new,
replaced and removed images, saved and loaded, and rebuilt from the table when its files are
lost or broken, answering as the live one does."""

from pathlib import Path

import numpy as np

from db.embeddings import Embedding
from db.events import KeyEvent
from db.queries import write_batch
from db.similar import SimilarIndex, folder_for, open_index
from tests.db.test_queries import pred

TRUNK = "squeezenet1_1:test"


def vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.abs(np.random.default_rng(seed).standard_normal((n, 512))).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def store(conn, keys, vecs):
    write_batch(conn, [pred(k) for k in keys], vectors=[Embedding(k, TRUNK, v) for k, v in zip(keys, vecs)])


def near(v: np.ndarray, seed: int, noise: float = 0.02) -> np.ndarray:
    w = v + np.random.default_rng(seed).standard_normal(v.shape).astype(np.float32) * noise
    return w / np.linalg.norm(w)


def test_built_from_the_table_it_finds_a_near_copy_first(db_conn, tmp_path):
    vecs = vectors(300)
    keys = [f"img/{i:03d}.jpg" for i in range(300)]
    store(db_conn, keys, vecs)
    index = SimilarIndex(tmp_path, TRUNK)
    seen = []
    assert index.catch_up(db_conn, lambda done, total: seen.append((done, total))) == 300
    assert seen[-1] == (300, 300)
    for i in (0, 17, 299):
        q = near(vecs[i], i)
        found = index.search(q, 5)
        assert found[0].image_key == keys[i]
        assert abs(found[0].score - float(q @ vecs[i])) < 2e-3  # the cosine, to float16's precision
        assert [n.score for n in found] == sorted((n.score for n in found), reverse=True)
    assert keys[5] not in [n.image_key for n in index.search(vecs[5], 5, exclude=keys[5])]


def test_catching_up_adds_new_images_replaces_overwritten_and_drops_removed(db_conn, tmp_path):
    vecs = vectors(20, seed=1)
    store(db_conn, [f"a/{i}.jpg" for i in range(10)], vecs[:10])
    index = SimilarIndex(tmp_path, TRUNK)
    index.catch_up(db_conn)
    store(db_conn, ["a/new.jpg"], vecs[10:11])
    store(db_conn, ["a/3.jpg"], vecs[11:12])  # the object was overwritten: a new photo
    write_batch(db_conn, [], events=[KeyEvent("a/4.jpg", "", None, removed=True)])
    assert index.catch_up(db_conn) == 3  # only what changed is read
    assert index.search(vecs[10], 1)[0].image_key == "a/new.jpg"
    assert index.search(vecs[11], 1)[0].image_key == "a/3.jpg"
    assert index.search(vecs[3], 1)[0].image_key != "a/3.jpg"
    assert "a/4.jpg" not in [n.image_key for n in index.search(vecs[4], 20)]
    assert len(index) == 10


def test_saved_and_loaded_or_lost_and_rebuilt_it_answers_like_the_live_one(db_conn, tmp_path):
    vecs = vectors(200, seed=2)
    keys = [f"b/{i}.jpg" for i in range(200)]
    store(db_conn, keys, vecs)
    live = open_index(tmp_path, TRUNK)
    assert live.refresh(db_conn, 0) == 200
    queries = [near(vecs[i], i) for i in range(0, 200, 10)]
    truth = [[keys[j] for j in np.argsort(-(vecs @ q))[:10]] for q in queries]  # exact search
    expected = [[n.image_key for n in live.search(q, 10)] for q in queries]
    assert recall(expected, truth) >= 0.95

    loaded = open_index(tmp_path, TRUNK)  # from the files the refresh saved: the same graph
    assert len(loaded) == 200 and loaded.refresh(db_conn, 0) == 0
    assert [[n.image_key for n in loaded.search(q, 10)] for q in queries] == expected

    folder = folder_for(tmp_path, TRUNK)
    (folder / "current" / "index.faiss").write_bytes(b"not an index")
    broken = open_index(tmp_path, TRUNK)
    assert len(broken) == 0 and broken.refresh(db_conn, 0) == 200  # rebuilt from the table
    rebuilt = [[n.image_key for n in broken.search(q, 10)] for q in queries]
    # another graph (rows come in another order), the same answers: each copy's photo first,
    # and the top 10 as near the exact search's as the live index's are
    assert [r[0] for r in rebuilt] == [t[0] for t in truth] == [keys[i] for i in range(0, 200, 10)]
    assert recall(rebuilt, truth) >= 0.95
    assert len([p for p in folder.iterdir() if p.name.startswith("snap-")]) == 1  # old snapshots go


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def test_an_index_of_another_trunk_is_not_loaded(db_conn, tmp_path):
    store(db_conn, ["c/1.jpg"], vectors(1))
    first = open_index(tmp_path, TRUNK)
    first.refresh(db_conn, 0)
    other = SimilarIndex(folder_for(tmp_path, TRUNK), "squeezenet1_0:other")
    assert other.load() is False and len(other) == 0


def test_past_exact_search_it_trains_clusters_and_still_finds_copies_adds_and_removals(db_conn, tmp_path, monkeypatch):
    import db.similar as similar

    monkeypatch.setattr(similar, "EXACT_UP_TO", 500)
    monkeypatch.setattr(similar, "SAVE_EVERY_S", 0.0)  # every change saved: the load below sees it
    vecs = vectors(3000, seed=3)
    keys = [f"d/{i}.jpg" for i in range(3000)]
    store(db_conn, keys[:400], vecs[:400])
    index = open_index(tmp_path, TRUNK)
    index.refresh(db_conn, 0)
    assert index.trained_on == 0  # exact while small
    store(db_conn, keys[400:2000], vecs[400:2000])
    index.refresh(db_conn, 0)
    assert index.trained_on == 2000  # outgrew exact search: clusters trained on the table
    store(db_conn, keys[2000:2500], vecs[2000:2500])  # incremental adds into the clusters
    write_batch(db_conn, [], events=[KeyEvent("d/7.jpg", "", None, removed=True)])
    index.refresh(db_conn, 0)
    assert index.trained_on == 2000 and len(index) == 2499
    queries = list(range(0, 2500, 97))
    found = [index.search(near(vecs[i], i), 1) for i in queries]
    assert [f[0].image_key for f in found] == [keys[i] for i in queries]
    assert "d/7.jpg" not in [n.image_key for n in index.search(vecs[7], 10)]
    np.testing.assert_allclose(index.vector("d/8.jpg"), vecs[8], atol=1e-3)
    loaded = open_index(tmp_path, TRUNK)  # the trained index saved and loaded
    assert loaded.trained_on == 2000 and [loaded.search(near(vecs[i], i), 1)[0].image_key for i in queries] == [
        keys[i] for i in queries
    ]
    store(db_conn, keys[2500:], vecs[2500:])
    monkeypatch.setattr(similar, "REGROW", 1.2)  # grown past 1.2x: retrained on the whole table
    loaded.refresh(db_conn, 0)
    assert loaded.trained_on == 2999 and len(loaded) == 2999


def test_an_index_saved_against_another_database_is_rebuilt(db_conn, tmp_path):
    import json

    store(db_conn, ["e/1.jpg", "e/2.jpg"], vectors(2, seed=5))
    first = open_index(tmp_path, TRUNK)
    first.refresh(db_conn, 0)
    state = folder_for(tmp_path, TRUNK) / "current" / "state.json"
    saved = json.loads(state.read_text())
    state.write_text(json.dumps({**saved, "database": "1234/restored", "since": 10**12}))
    moved = open_index(tmp_path, TRUNK)
    assert moved.refresh(db_conn, 0) == 2 and len(moved) == 2  # read again, not trusted


def test_images_embedded_again_by_another_trunk_leave_its_index_and_say_so(db_conn, tmp_path):
    vecs = vectors(3, seed=6)
    store(db_conn, ["f/1.jpg", "f/2.jpg", "f/3.jpg"], vecs)
    index = open_index(tmp_path, TRUNK)
    index.refresh(db_conn, 0)
    write_batch(db_conn, [pred("f/2.jpg")], vectors=[Embedding("f/2.jpg", "squeezenet1_1:newer", vecs[1])])
    index.refresh(db_conn, 0)
    assert "f/2.jpg" not in [n.image_key for n in index.search(vecs[1], 3)] and len(index) == 2
    assert index.newer_trunk == "squeezenet1_1:newer"


def test_a_relative_index_folder_keeps_one_snapshot(db_conn, tmp_path, monkeypatch):
    import db.similar as similar

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(similar, "SAVE_EVERY_S", 0.0)
    index = open_index(Path("relative-index"), TRUNK)
    for i in range(3):
        store(db_conn, [f"g/{i}.jpg"], vectors(1, seed=10 + i))
        index.refresh(db_conn, 0)
    (folder_for(Path("relative-index"), TRUNK) / "snap-crashed").mkdir()  # a save that died half way
    store(db_conn, ["g/last.jpg"], vectors(1, seed=20))
    index.refresh(db_conn, 0)
    snaps = [p.name for p in folder_for(tmp_path / "relative-index", TRUNK).iterdir() if p.name.startswith("snap-")]
    assert len(snaps) == 1 and snaps[0] != "snap-crashed"
