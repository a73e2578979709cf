"""training export: the viewer's labels as a folder in fit's layout, linked to the photos on
disk where they are, downloaded from the bucket where not, a missing one reported; and the
folder is what fit DIR reads."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

from db import labels
from db.connection import in_transaction
from training.export_labels import file_name, local_copy
from upload import ensure_bucket

REPO = Path(__file__).resolve().parents[2]


def test_file_names_are_safe_and_unique():
    names = {file_name(k) for k in ("a/b.jpg", "a__b.jpg", "../../etc/passwd", ".hidden", "x" * 500)}
    assert len(names) == 5
    assert all("/" not in n and not n.startswith(".") and len(n) <= 161 for n in names)


def test_a_key_cannot_climb_out_of_the_images_folder(tmp_path):
    (tmp_path / "inside.jpg").write_bytes(b"x")
    (tmp_path.parent / "outside.jpg").write_bytes(b"x")
    assert local_copy(tmp_path, "inside.jpg") == tmp_path / "inside.jpg"
    assert local_copy(tmp_path, "../outside.jpg") is None and local_copy(tmp_path, "a\x00b") is None


def test_export_links_downloads_and_reports_what_it_could_not(stack_settings, db_conn, dev_images, tmp_path):
    name = f"exp-{uuid.uuid4().hex[:6]}"
    photos = sorted(dev_images.glob("*.JPEG"))[:6]
    local = tmp_path / "uploaded"
    (local / "cats").mkdir(parents=True)
    for p in photos[:3]:
        os.symlink(p, local / "cats" / p.name)  # the folder the user uploaded
    s3 = stack_settings.s3_client()
    ensure_bucket(s3, stack_settings.s3_bucket)
    for p in photos[3:5]:
        s3.put_object(Bucket=stack_settings.s3_bucket, Key=f"remote/{p.name}", Body=p.read_bytes())
    rows = [(f"cats/{p.name}", "feline") for p in photos[:3]] + [(f"remote/{p.name}", "other") for p in photos[3:5]]

    def label(conn):
        labels.create_project(conn, name, ["feline", "other"], "tests")
        for key, category in rows:
            labels.add(conn, name, [key], category, "ann", "key")

    in_transaction(stack_settings, label)
    out = tmp_path / "export"

    def export(*args):
        return subprocess.run(
            [sys.executable, "-m", "training", "export", name, str(out), *args],
            env=os.environ,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = export("--images", str(local))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"5 labels into {out}: 3 linked, 2 downloaded, 0 failed"
    feline = sorted((out / "feline").iterdir())
    assert len(feline) == 3 and all(f.is_symlink() and f.read_bytes() == f.resolve().read_bytes() for f in feline)
    other = sorted((out / "other").iterdir())
    assert sorted(f.read_bytes() for f in other) == sorted(p.read_bytes() for p in photos[3:5])
    again = export()
    assert again.returncode == 1 and "is not empty" in again.stderr and "Traceback" not in again.stderr
    in_transaction(stack_settings, lambda conn: labels.add(conn, name, ["gone/x.jpg"], "other", "ann", "key"))
    out = tmp_path / "second"
    missing = export("--images", str(local))
    assert missing.returncode == 1 and "not exported: 'gone/x.jpg'" in missing.stderr
    assert "3 linked, 2 downloaded, 1 failed" in missing.stdout
