"""Pictures people upload: each bad one is a sentence, each good one fits the model's budget."""

from __future__ import annotations

import struct
import zlib

import pytest
from PIL import Image

from backend.images import MAX_SOURCE_PIXELS, ImageError, open_image

BUDGET = 112 * 112


def write_png_header_claiming(path, width: int, height: int) -> None:
    """A valid PNG signature and IHDR that claim width x height, with almost no data: the shape of
    a decompression bomb, without the bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_a_normal_photo_is_downscaled_to_the_budget(tmp_path):
    path = tmp_path / "dish.jpg"
    Image.new("RGB", (640, 480), "orange").save(path)
    image = open_image(path, BUDGET)
    assert image.mode == "RGB"
    assert image.width * image.height <= BUDGET
    assert abs(image.width / image.height - 640 / 480) < 0.05


def test_a_small_photo_is_left_alone(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGBA", (50, 40), (10, 20, 30, 128)).save(path)
    image = open_image(path, BUDGET)
    assert image.size == (50, 40) and image.mode == "RGB"


def test_a_text_file_is_not_a_picture(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image")
    with pytest.raises(ImageError, match="not a picture"):
        open_image(path, BUDGET)


def test_a_truncated_jpeg_is_reported_as_damaged(tmp_path):
    path = tmp_path / "half.jpg"
    Image.new("RGB", (400, 300), "green").save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="damaged or truncated"):
        open_image(path, BUDGET)


def test_an_empty_file_is_not_a_picture(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError):
        open_image(path, BUDGET)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    write_png_header_claiming(path, 40_000, 40_000)
    assert path.stat().st_size < 200
    with pytest.raises(ImageError, match="decompression bomb"):
        open_image(path, BUDGET)


def test_a_100_megapixel_photo_opens_and_is_downscaled(tmp_path):
    path = tmp_path / "panorama.jpg"
    Image.new("L", (12_500, 8_000), 200).save(path, quality=70)  # 100 MP
    assert MAX_SOURCE_PIXELS > 12_500 * 8_000
    image = open_image(path, BUDGET)
    assert image.width * image.height <= BUDGET
    assert image.mode == "RGB"


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.new("RGB", (80, 40), "red").save(path, exif=exif)
    assert open_image(path, BUDGET).size == (40, 80)


def test_a_missing_file_is_a_sentence(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        open_image(tmp_path / "gone.jpg", BUDGET)


def test_a_picture_that_fails_to_decode_leaves_no_file_open(tmp_path):
    import gc
    import warnings

    Image.new("RGB", (400, 300), "green").save(tmp_path / "whole.jpg", quality=95)
    (tmp_path / "half.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:2000])
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(ImageError, match="damaged or truncated"):
            open_image(tmp_path / "half.jpg", 10_000)
        gc.collect()  # an open file left behind says so here, as a ResourceWarning
    assert not [w for w in shown if w.category is ResourceWarning]
