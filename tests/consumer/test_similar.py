"""Similar images with the real trunk and the real PostgreSQL: a photo's mirrored, re-encoded
and resized copies find it first; `python -m consumer.similar` by key and by file, and its
one-line refusals."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from consumer.embedding import Embedder
from db.embeddings import Embedding
from db.queries import write_batch
from tests.consumer import images_zoo as zoo
from tests.db.test_queries import pred

REPO = Path(__file__).resolve().parents[2]
PHOTOS = 60


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def copies(data: bytes) -> dict[str, bytes]:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    return {
        "mirrored": jpeg(ImageOps.mirror(img)),
        "re-encoded": jpeg(img, 40),
        "resized": jpeg(img.resize((img.width // 3, img.height // 3))),
    }


@pytest.fixture
def stored(stack_settings, db_conn, dev_images):
    """PHOTOS dev photos classified and embedded, as a worker writes them."""
    embedder = Embedder(stack_settings)
    paths = sorted(dev_images.glob("*.JPEG"))[::8][:PHOTOS]
    photos = {f"dev/{p.name}": p.read_bytes() for p in paths}
    vectors = embedder.embed(list(photos.values()))
    write_batch(
        db_conn,
        [pred(k, category=k.split("_", 1)[1].lower()) for k in photos],
        vectors=[Embedding(k, embedder.key, v) for k, v in zip(photos, vectors)],
    )
    return embedder, photos


def test_a_photos_mirrored_reencoded_and_resized_copies_find_it_first(stored, stack_settings, tmp_path):
    from consumer.similar import similar

    embedder, photos = stored
    missed = []
    for key, data in list(photos.items())[:20]:
        for kind, copy in copies(data).items():
            path = tmp_path / f"{kind}.jpg"
            path.write_bytes(copy)
            first = similar(stack_settings, str(path), 3)[0]
            if first["image_key"] != key:
                missed.append((key, kind, first))
    assert missed == []


def run(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "consumer.similar", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "TORCH_THREADS": "2"},
    )


def test_the_command_by_key_and_by_file(stored, stack_env, stack_settings, tmp_path):
    _, photos = stored
    env = {**stack_env, **{k: str(v) for k, v in _settings_env(stack_settings, tmp_path).items()}}
    key = next(iter(photos))
    by_key = run(env, key, "--k", 5)
    assert by_key.returncode == 0, by_key.stderr
    rows = [json.loads(line) for line in by_key.stdout.splitlines()]
    assert len(rows) == 5 and key not in [r["image_key"] for r in rows]
    assert all(r["image_key"] in photos and 0 < r["score"] < 1 and r["category"] for r in rows)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photos[key])
    by_file = run(env, photo, "--k", 1)
    assert by_file.returncode == 0, by_file.stderr
    assert json.loads(by_file.stdout)["image_key"] == key


def test_the_commands_refusals_are_one_line(stored, stack_env, stack_settings, tmp_path):
    env = {**stack_env, **{k: str(v) for k, v in _settings_env(stack_settings, tmp_path).items()}}
    (tmp_path / "notes.jpg").write_text("not a photo")
    (tmp_path / "bomb.png").write_bytes(zoo.png_header_claiming(100_000, 100_000))
    for target, says in [
        ("dev/never-classified.jpg", "has no embedding"),
        ("é/" * 3000 + "x.jpg", "has no embedding"),  # too long to be a path: a key, bounded as stored
        (tmp_path / "notes.jpg", "notes.jpg"),
        (tmp_path / "bomb.png", "bomb.png"),
    ]:
        done = run(env, target)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith("error: ") and says in done.stderr and len(done.stderr.splitlines()) == 1
    down = run({**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, "dev/x.jpg")
    assert down.returncode == 2 and down.stderr.startswith("error: PostgreSQL") and "Traceback" not in down.stderr


def _settings_env(settings, tmp_path) -> dict:
    return {
        "MODEL_WEIGHTS": settings.model_weights,
        "SIMILAR_INDEX_DIR": tmp_path / "index",
        "MODEL_CACHE_DIR": settings.model_cache_dir,
    }


def test_near_duplicates_of_the_dev_photos_are_grouped_and_different_photos_are_not(stored, stack_settings, db_conn):
    from db.duplicates import near_duplicates
    from db.similar import open_index

    embedder, photos = stored
    keys = list(photos)
    copied = {}
    for n, key in enumerate(keys[:12]):
        img = Image.open(io.BytesIO(photos[key])).convert("RGB")
        made = {f"{key}.q50.jpg": jpeg(img, 50)}
        if n % 3 == 0:
            made[f"{key}.half.jpg"] = jpeg(img.resize((img.width // 2, img.height // 2)), 85)
        copied[key] = made
    elsewhere = {f"other/{k}": v for k, v in copied[keys[0]].items()}  # outside the prefix
    extra = {name: data for made in copied.values() for name, data in made.items()} | elsewhere
    vectors = embedder.embed(list(extra.values()))
    write_batch(
        db_conn, [pred(k) for k in extra], vectors=[Embedding(k, embedder.key, v) for k, v in zip(extra, vectors)]
    )
    index = open_index(stack_settings.similar_index_path, embedder.key)
    index.refresh(db_conn, 0)
    found = near_duplicates(index, "dev/")
    expected = sorted((sorted([key, *made]) for key, made in copied.items()), key=lambda g: (-len(g), g[0]))
    assert found.groups == expected
    assert found.images == PHOTOS + sum(len(m) for m in copied.values())
    assert found.duplicates == sum(len(m) for m in copied.values()) and not found.truncated


def test_a_photo_with_nothing_embedded_to_compare_with_is_one_line(
    stack_env, stack_settings, db_conn, dev_images, tmp_path
):
    env = {**stack_env, **{k: str(v) for k, v in _settings_env(stack_settings, tmp_path).items()}}
    done = run(env, sorted(dev_images.glob("*.JPEG"))[0])
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ") and "nothing to compare with" in done.stderr
