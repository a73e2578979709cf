import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from common.errors import ImageError
from common.imaging import decode
from consumer.images import REFERENCE_TRANSFORM, load_tensor
from tests.consumer import images_zoo as zoo

LIMIT = 60_000_000


@pytest.mark.parametrize(
    "make",
    [
        zoo.grayscale_jpeg,
        zoo.cmyk_jpeg,
        zoo.transparent_png,
        zoo.palette_gif_animated,
        zoo.one_pixel_png,
        lambda: zoo.png_16bit(40000),
    ],
    ids=["grayscale", "cmyk", "alpha", "gif", "1x1", "16bit"],
)
def test_every_colour_mode_becomes_a_normalised_rgb_tensor(make):
    t = load_tensor(make(), LIMIT)
    assert t.shape == (3, 224, 224) and t.dtype == torch.float32
    assert torch.isfinite(t).all()


def test_transparent_pixels_are_composited_on_white():
    img = decode(zoo.transparent_png(color=(255, 0, 0)), LIMIT)
    assert img.mode == "RGB" and img.getpixel((10, 10)) == (255, 255, 255)


def test_16bit_images_are_scaled_not_clipped():
    assert decode(zoo.png_16bit(65535), LIMIT).getpixel((0, 0)) == (255, 255, 255)
    assert decode(zoo.png_16bit(32896), LIMIT).getpixel((0, 0)) == (128, 128, 128)


def test_grayscale_gives_equal_channels():
    img = decode(zoo.grayscale_jpeg(), LIMIT)
    r, g, b = img.split()
    assert r.tobytes() == g.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    "data, error_type",
    [
        (b"", "empty"),
        (b"this is a text file, not a jpeg", "not_an_image"),
        (zoo.truncated_jpeg(), "corrupt"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "not_an_image"),
    ],
    ids=["empty", "text", "truncated", "garbage-jpeg-header"],
)
def test_bad_bytes_give_a_typed_error(data, error_type):
    with pytest.raises(ImageError) as info:
        load_tensor(data, LIMIT)
    assert info.value.error_type == error_type


def test_decompression_bomb_is_refused_from_its_header():
    # 30000 x 30000 = 900 MP claimed, ~100 bytes of data: refused as too large, not
    # attempted (an attempt would fail as corrupt, or allocate 2.7 GB)
    with pytest.raises(ImageError) as info:
        load_tensor(zoo.png_header_claiming(30000, 30000), LIMIT)
    assert info.value.error_type == "too_large"
    assert "30000x30000" in info.value.detail


def test_pixel_limit_comes_from_the_caller():
    data = zoo.encode(zoo.photo_like((200, 100)), "PNG")
    with pytest.raises(ImageError):
        load_tensor(data, 19_999)
    assert load_tensor(data, 20_000).shape == (3, 224, 224)


# one 8-bit level after normalisation: 1 / (255 * std) for the smallest std
ONE_LEVEL = 1 / (255 * 0.224) + 1e-5


def test_preprocessing_matches_torchvision_reference_to_one_level(dev_images):
    """torch's resize rounds a few values one level away from Pillow's, never further."""
    reference = T.Compose(
        [
            T.Resize(256, interpolation=T.InterpolationMode.BILINEAR, antialias=True),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    off = total = 0
    for path in sorted(dev_images.glob("*.JPEG"))[:20]:
        expected = reference(Image.open(path).convert("RGB"))
        got = load_tensor(path.read_bytes(), LIMIT)
        assert got.shape == expected.shape and torch.allclose(got, expected, atol=ONE_LEVEL), path.name
        off += int(((got - expected).abs() > 1e-5).sum())
        total += got.numel()
    assert off / total < 0.005, f"{off / total:.3%} of the values a level off"


@pytest.fixture(scope="module")
def classifier(weights_path):
    from consumer.model import load_classifier
    from settings import Settings

    return load_classifier(Settings(_env_file=None, model_weights=weights_path, torch_threads=2))


def test_preprocessing_gives_the_references_answers_on_every_dev_photo(dev_images, classifier):
    paths = sorted(dev_images.glob("*.JPEG"))
    same_top5 = 0
    for i in range(0, len(paths), 50):
        chunk = paths[i : i + 50]
        ours = classifier.predict(torch.stack([load_tensor(p.read_bytes(), LIMIT) for p in chunk]))
        ref = classifier.predict(torch.stack([REFERENCE_TRANSFORM(Image.open(p).convert("RGB")) for p in chunk]))
        for path, a, b in zip(chunk, ours, ref):
            assert a[0].class_index == b[0].class_index, path.name
            same_top5 += {t.class_index for t in a} == {t.class_index for t in b}
    # measured 498 of 500: two photos whose 5th and 6th classes are within rounding
    assert same_top5 / len(paths) >= 0.99, f"top-5 the same on {same_top5} of {len(paths)}"


@pytest.mark.parametrize("size", [(256, 256), (256, 400), (224, 224), (1, 1), (5000, 250)])
def test_small_square_and_very_wide_images_give_the_reference_crop(size):
    img = Image.fromarray(torch.randint(0, 256, (size[1], size[0], 3), dtype=torch.uint8).numpy())
    expected = REFERENCE_TRANSFORM(img)
    got = load_tensor(zoo.encode(img, "PNG"), LIMIT, max_aspect=25)
    assert got.shape == expected.shape == (3, 224, 224)
    assert torch.allclose(got, expected, atol=ONE_LEVEL)


def test_images_over_the_torch_resize_limit_keep_pillows_exact_resize(monkeypatch):
    import consumer.images

    img = Image.fromarray(torch.randint(0, 256, (300, 400, 3), dtype=torch.uint8).numpy())
    monkeypatch.setattr(consumer.images, "TORCH_RESIZE_MAX_PIXELS", 300 * 400 - 1)
    got = load_tensor(zoo.encode(img, "PNG"), LIMIT)
    assert torch.allclose(got, REFERENCE_TRANSFORM(img), atol=1e-6)


def test_fast_decode_agrees_with_the_reference_on_dev_photos(dev_images, classifier):
    paths = sorted(dev_images.glob("*.JPEG"))
    agree = 0
    for i in range(0, len(paths), 50):
        data = [p.read_bytes() for p in paths[i : i + 50]]
        ref = classifier.predict(torch.stack([load_tensor(d, LIMIT, fast=False) for d in data]))
        fast = classifier.predict(torch.stack([load_tensor(d, LIMIT, fast=True) for d in data]))
        agree += sum(a[0].class_index == b[0].class_index for a, b in zip(ref, fast))
    assert agree / len(paths) >= 0.995, f"fast decode agrees on {agree / len(paths):.3%}"


def test_fast_decode_really_decodes_large_jpegs_smaller():
    big = zoo.encode(zoo.photo_like((2048, 1536)), "JPEG")
    assert decode(big, LIMIT, fast=True).size == (1024, 768)  # 1/2: the largest scale keeping both sides >= 512
    assert decode(big, LIMIT, fast=False).size == (2048, 1536)
