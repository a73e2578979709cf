"""`python -m benchmarks.near_duplicates` embeds the dev photos and their copies and reports, per
threshold, what it finds (the figures on all 500 photos: benchmarks/results/near_duplicates.json)."""

from benchmarks import near_duplicates
from settings import Settings


def test_copies_are_nearer_their_photo_than_different_photos_are(weights_path, shared_dir, tmp_path):
    settings = Settings(
        _env_file=None, model_weights=weights_path, shared_dir=shared_dir, model_cache_dir=tmp_path, torch_threads=2
    )
    out = near_duplicates.run(settings, [0.85, 0.99], limit=40)
    assert out["photos"] == 40 and out["different_pairs"]["count"] == 40 * 39 // 2
    assert set(out["copy_cosine"]) == set(near_duplicates.COPIES)
    assert out["copy_cosine"]["jpeg_q75"]["min"] > out["different_pairs"]["max"]
    low, high = out["by_threshold"]["0.85"], out["by_threshold"]["0.99"]
    assert low["copies_found"] > high["copies_found"] and low["different_pairs_above"] == 0
