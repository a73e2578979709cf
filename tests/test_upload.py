import shutil
from pathlib import Path

import pytest

import upload
from db.queries import iter_image_keys


def make_tree(root: Path) -> None:
    for rel in [
        "a.jpg",
        "B.JPEG",
        "sub/c.png",
        "sub/deeper/d.WebP",
        "e.gif",
        "f.bmp",
        "notes.txt",
        "sub/g.jpg.bak",
        "h.tiff",
    ]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode())


def test_find_images_is_recursive_and_case_insensitive(tmp_path):
    make_tree(tmp_path)
    found = [p.relative_to(tmp_path).as_posix() for p in upload.find_images(tmp_path)]
    assert found == ["B.JPEG", "a.jpg", "e.gif", "f.bmp", "sub/c.png", "sub/deeper/d.WebP"]


@pytest.mark.parametrize(
    "prefix, expected", [("", "sub/c.png"), ("batch1", "batch1/sub/c.png"), ("/x/y/", "x/y/sub/c.png")]
)
def test_object_key_joins_prefix_and_relative_path(tmp_path, prefix, expected):
    assert upload.object_key(tmp_path, tmp_path / "sub" / "c.png", prefix) == expected


def test_upload_then_rerun_changes_nothing(stack_settings, db_conn, dev_images, tmp_path, capsys):
    src = tmp_path / "imgs"
    (src / "nested").mkdir(parents=True)
    files = sorted(dev_images.glob("*.JPEG"))[:6]
    for f in files[:3]:
        shutil.copy(f, src)
    for f in files[3:]:
        shutil.copy(f, src / "nested")
    (src / "readme.txt").write_text("not an image")

    assert upload.main([str(src), "--prefix", "run1"]) == 0
    assert "uploaded 6, skipped 0, failed 0; 6 new keys registered" in capsys.readouterr().out
    s3 = stack_settings.s3_client()
    # (s3proxy's filesystem backend also lists "folder/" markers)
    listed = {
        o["Key"] for o in s3.list_objects_v2(Bucket=stack_settings.s3_bucket)["Contents"] if not o["Key"].endswith("/")
    }
    assert listed == {f"run1/{f.name}" for f in files[:3]} | {f"run1/nested/{f.name}" for f in files[3:]}
    body = s3.get_object(Bucket=stack_settings.s3_bucket, Key=f"run1/{files[0].name}")["Body"].read()
    assert body == files[0].read_bytes()
    assert sorted(iter_image_keys(db_conn)) == sorted(listed)

    assert upload.main([str(src), "--prefix", "run1"]) == 0
    assert "uploaded 0, skipped 6, failed 0; 0 new keys registered" in capsys.readouterr().out


def test_register_only_registers_what_the_bucket_holds(stack_settings, db_conn, dev_images, tmp_path, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    for f in sorted(dev_images.glob("*.JPEG"))[:4]:
        shutil.copy(f, src)
    assert upload.main([str(src)]) == 0
    with db_conn, db_conn.cursor() as cur:
        cur.execute("TRUNCATE image_info")
    stack_settings.s3_client().put_object(Bucket=stack_settings.s3_bucket, Key="notes.txt", Body=b"x")
    capsys.readouterr()
    assert upload.main(["--register-only"]) == 0
    assert "4 new keys registered" in capsys.readouterr().out
    assert len(list(iter_image_keys(db_conn))) == 4


def test_a_bucket_the_workers_do_not_read_is_refused(tmp_path):
    """Workers read every key from S3_BUCKET: uploading elsewhere made every key `missing`."""
    with pytest.raises(SystemExit):
        upload.main([str(tmp_path), "--bucket", "somewhere-else"])
