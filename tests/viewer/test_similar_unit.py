"""The search-by-photo guard rails that need no service: what is refused before a child
process is started, and a third search waiting for one of the two embedding slots."""

import pytest

from settings import Settings
from viewer import similar
from viewer.similar import PhotoRefused, embed_photo


@pytest.fixture
def settings():
    return Settings(_env_file=None, max_image_bytes=1000)


def test_an_empty_upload_and_one_over_max_image_bytes_are_refused_unread(settings):
    with pytest.raises(PhotoRefused) as empty:
        embed_photo(b"", settings)
    assert empty.value.status == 400
    with pytest.raises(PhotoRefused) as big:
        embed_photo(b"x" * 1001, settings)
    assert big.value.status == 413 and "MAX_IMAGE_BYTES" in str(big.value)


def test_a_third_search_at_once_waits_then_is_told_to_come_back(settings, monkeypatch):
    monkeypatch.setattr(similar, "EMBED_QUEUE_S", 0.05)
    taken = [similar._EMBEDDERS.acquire(timeout=1) for _ in range(2)]
    try:
        with pytest.raises(PhotoRefused) as busy:
            embed_photo(b"\xff\xd8 a photo", settings)
        assert busy.value.status == 503 and "try again" in str(busy.value)
    finally:
        for ok in taken:
            if ok:
                similar._EMBEDDERS.release()
