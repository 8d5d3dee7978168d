"""Opening pictures that people upload, safely.

Whatever arrives (a PDF renamed .jpg, half a JPEG, a 100-megapixel phone panorama, a crafted
decompression bomb) either becomes an RGB picture no larger than the model can use, or raises
ImageError with a sentence a person can act on.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from backend.problems import ProblemError

# Phones and scanners make genuine pictures of up to about 100 megapixels; past this we refuse
# before decoding, since a tiny file that claims more is almost always a decompression bomb.
MAX_SOURCE_PIXELS = 120_000_000


class ImageError(ProblemError, ValueError):
    """A picture that cannot be used, with the reason in plain words (a Problem: ui/problems.py
    says it in Chinese)."""


def open_image(path: str | Path, max_pixels: int) -> Image.Image:
    """Open `path` as an RGB picture of at most `max_pixels`, upright per its EXIF orientation."""
    path = Path(path)
    name = path.name
    try:
        with warnings.catch_warnings():
            # Our own limit below replaces Pillow's warning, which fires at 89 MP.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _decode(path, name, max_pixels)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError("picture_not_found", "{name} was not found (it may have been removed); please "
                         "upload it again.", name=name) from None
    except UnidentifiedImageError:
        raise ImageError("picture_unreadable", "{name} is not a picture Foodie Studio can read (JPEG, PNG, "
                         "WebP, GIF, BMP…).", name=name) from None
    except Image.DecompressionBombError:
        raise ImageError("picture_bomb", "{name} is too large to open safely; it may be a decompression "
                         "bomb.", name=name) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError("picture_damaged", "{name} is damaged or truncated and cannot be read ({detail}).",
                         name=name, detail=str(err)) from None
    image = ImageOps.exif_transpose(image, in_place=False) if has_orientation(image) else image
    image = image.convert("RGB")
    if image.width * image.height > max_pixels:
        image = image.resize(_fit(image.width, image.height, max_pixels), Image.BICUBIC)
    return image


def _decode(path: Path, name: str, max_pixels: int) -> Image.Image:
    """Decode the picture; on any failure its file is closed before the error goes on (a picture
    that fails is not left open until the garbage collector finds it)."""
    image = Image.open(path)
    try:
        width, height = image.size
        if width * height > MAX_SOURCE_PIXELS:
            raise ImageError(
                "picture_too_large", "{name} is {width}×{height} ({megapixels:.0f} megapixels), more "
                "than the {limit}-megapixel limit; it may be a decompression bomb. Please resize it "
                "and try again.", name=name, width=width, height=height,
                megapixels=width * height / 1e6, limit=MAX_SOURCE_PIXELS // 1_000_000)
        # For JPEG, decode at a reduced scale straight away: a 100 MP photo then costs
        # a fraction of the memory and time of a full decode.
        image.draft("RGB", _fit(width, height, max_pixels * 4))
        image.load()
    except BaseException:
        image.close()
        raise
    return image


def _fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio and at most max_pixels."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def has_orientation(image: Image.Image) -> bool:
    """Whether the picture's EXIF says it must be turned to show upright."""
    try:
        return image.getexif().get(0x0112, 1) != 1
    except Exception:  # a bogus EXIF block must not cost the picture
        return False
