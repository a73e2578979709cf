"""python -m consumer.classify, run as a user would."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.consumer import images_zoo as zoo

REPO = Path(__file__).resolve().parents[2]


def classify(*args, env_weights: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "consumer.classify", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "MODEL_WEIGHTS": str(env_weights), "TORCH_THREADS": "2"},
    )


@pytest.fixture
def zoo_dir(tmp_path, dev_images):
    d = tmp_path / "zoo"
    (d / "nested").mkdir(parents=True)
    shutil.copy(dev_images / "n01530575_brambling.JPEG", d / "nested")
    for name, data in {
        "gray.jpg": zoo.grayscale_jpeg(),
        "alpha.png": zoo.transparent_png(),
        "cmyk.jpg": zoo.cmyk_jpeg(),
        "anim.gif": zoo.palette_gif_animated(),
        "corrupt.jpg": zoo.truncated_jpeg(),
        "empty.jpg": b"",
    }.items():
        (d / name).write_bytes(data)
    (d / "notes.txt").write_text("ignored: not an image name")
    return d


def test_folder_gives_one_json_line_per_image_and_exit_1_on_errors(zoo_dir, weights_path):
    res = classify("--top-k", "3", zoo_dir, env_weights=weights_path)
    assert res.returncode == 1, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    by_name = {Path(r["path"]).name: r for r in lines}
    assert set(by_name) == {
        "n01530575_brambling.JPEG",
        "gray.jpg",
        "alpha.png",
        "cmyk.jpg",
        "anim.gif",
        "corrupt.jpg",
        "empty.jpg",
    }
    assert "corrupt" in by_name["corrupt.jpg"]["error"] and "empty" in by_name["empty.jpg"]["error"]
    for name in ("gray.jpg", "alpha.png", "cmyk.jpg", "anim.gif"):
        assert len(by_name[name]["topk"]) == 3 and by_name[name]["model"] == "squeezenet1_1"
    bird = by_name["n01530575_brambling.JPEG"]["topk"][0]
    assert bird["category"] == "brambling" and bird["class_index"] == 10 and 0 < bird["confidence"] <= 1


def test_all_good_files_exit_0(dev_images, weights_path):
    files = sorted(dev_images.glob("*.JPEG"))[:3]
    res = classify(*files, env_weights=weights_path)
    assert res.returncode == 0, res.stderr
    assert [json.loads(line)["path"] for line in res.stdout.splitlines()] == [str(f) for f in files]
    assert res.stderr == ""  # no progress bar when stderr is not a terminal


def test_missing_weights_are_refused(tmp_path, dev_images):
    res = classify(
        "--weights", tmp_path / "none.pth", dev_images / "n01530575_brambling.JPEG", env_weights=tmp_path / "x"
    )
    assert res.returncode == 2 and res.stdout == ""
    assert "does not exist" in res.stderr
