"""python -m training fit refuses arguments it cannot use at once, as a usage error (exit 2),
before it reads a file or loads a model. No services: the database URL leads nowhere and the
base weights do not exist, so anything that went past the arguments would show."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data(tmp_path) -> Path:
    """A folder fit would happily decode: two categories of two small JPEGs."""
    for category in ("a", "b"):
        (tmp_path / "data" / category).mkdir(parents=True)
        for i in range(2):
            out = io.BytesIO()
            Image.new("RGB", (40, 30), (i * 90, 40, 90)).save(out, "JPEG")
            (tmp_path / "data" / category / f"{i}.jpg").write_bytes(out.getvalue())
    return tmp_path / "data"


def fit(data: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "MODEL_WEIGHTS": str(tmp_path / "no-such-weights.pth"),
    }
    return subprocess.run(
        [sys.executable, "-m", "training", "fit", str(data), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_refused_at_once(res: subprocess.CompletedProcess, what: str) -> None:
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "decoding" not in res.stderr, res.stderr[-2000:]
    assert "no-such-weights" not in res.stderr  # the base model was never loaded
    (error,) = [line for line in res.stderr.splitlines() if "error:" in line]
    assert what in error, error


@pytest.mark.parametrize("name", ["abc\n", "café", "a b", "x" * 65, "squeezenet1_1"])
def test_a_name_no_worker_can_serve_is_refused_before_any_work(data, tmp_path, name):
    assert_refused_at_once(fit(data, tmp_path, "--name", name), "--name")


@pytest.mark.parametrize(
    "option, value",
    [
        ("--unfreeze", "99"),  # squeezenet1_1 has 8 fire modules
        ("--unfreeze", "9"),
        ("--unfreeze", "-1"),
        ("--unfreeze", "two"),
        ("--val-fraction", "0"),
        ("--val-fraction", "1"),
        ("--val-fraction", "-0.2"),
        ("--val-fraction", "nan"),
        ("--patience", "0"),
        ("--max-epochs", "0"),
        ("--max-epochs", "-5"),
        ("--seed", "-1"),  # numpy refuses it (after decoding, today)
        ("--seed", str(2**32)),
    ],
)
def test_an_option_out_of_its_range_is_refused_before_any_work(data, tmp_path, option, value):
    assert_refused_at_once(fit(data, tmp_path, "--name", "fine", option, value), option)


def test_a_report_dir_that_is_a_file_is_refused_before_any_work(data, tmp_path):
    (tmp_path / "report").write_text("a file")
    assert_refused_at_once(fit(data, tmp_path, "--name", "fine", "--report-dir", str(tmp_path / "report")), "report")


def test_the_edges_of_each_range_are_accepted_and_a_missing_base_model_is_one_line(data, tmp_path):
    res = fit(data, tmp_path, "--name", "fine", "--unfreeze", "8", "--val-fraction", "0.5", "--patience", "1")
    assert "decoding 4 files" in res.stderr, res.stderr[-2000:]  # past the arguments
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == f"error: MODEL_WEIGHTS={tmp_path / 'no-such-weights.pth'} " + (
        "does not exist or is not a file"
    )


def test_fire_modules_is_what_the_base_model_has():
    import torchvision

    from training.arguments import BASE_MODEL, FIRE_MODULES

    model = getattr(torchvision.models, BASE_MODEL)(weights=None)
    assert sum(isinstance(m, torchvision.models.squeezenet.Fire) for m in model.features) == FIRE_MODULES
