"""Which photos are the same photo: a perceptual hash (dHash and aHash, 64 bits each, with Pillow), so
that a held-out split by picture keeps identical and near-identical copies (re-saved, resized,
slightly recoloured) on one side.

dHash compares each pixel of a 9x8 grey thumbnail with its right neighbour; aHash each pixel of an
8x8 one with their mean. Two photos are near-identical when both hashes differ in at most
NEAR_BITS bits. Candidates are found through the dHash's eight bytes: two hashes at most 7 bits apart
share at least one byte exactly (pigeonhole), so only photos sharing a byte are compared.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageOps

log = logging.getLogger(__name__)

NEAR_BITS = 7
# A photo is compared with at most this many earlier ones sharing a byte of its hash: identical copies
# share every byte and are always found; a bucket this full is a folder of near-blank pictures.
_BUCKET_LOOK = 256
_CACHE: dict[tuple[Path, int, int], tuple[int, int] | None] = {}


def picture_hashes(path: Path) -> tuple[int, int] | None:
    """(dHash, aHash) of the picture at `path`, or None when it cannot be read; remembered per file
    version for the process."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    key = (Path(path), info.st_size, info.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = _hashes(Path(path))
    return _CACHE[key]


def _hashes(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as picture:
            picture.draft("L", (64, 64))  # JPEG decodes straight at 1/8 scale: cheap
            grey = ImageOps.exif_transpose(picture).convert("L")
            wide = list(grey.resize((9, 8), Image.Resampling.LANCZOS).getdata())
            small = list(grey.resize((8, 8), Image.Resampling.LANCZOS).getdata())
    except Exception as err:  # Pillow raises many types for a broken file; the split then keys by path
        log.info("no perceptual hash for %s: %s", path, err)
        return None
    dhash = 0
    for row in range(8):
        for column in range(8):
            dhash = dhash << 1 | (wide[row * 9 + column] > wide[row * 9 + column + 1])
    mean = sum(small) / 64
    ahash = 0
    for value in small:
        ahash = ahash << 1 | (value > mean)
    return dhash, ahash


def near(one: tuple[int, int], other: tuple[int, int]) -> bool:
    return bin(one[0] ^ other[0]).count("1") <= NEAR_BITS and bin(one[1] ^ other[1]).count("1") <= NEAR_BITS


def photo_groups(paths: Iterable[Path]) -> dict[Path, Path]:
    """Each picture -> the first picture of its group of identical and near-identical photos."""
    paths = list(dict.fromkeys(paths))
    parent = {p: p for p in paths}

    def find(p: Path) -> Path:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    hashes = {p: picture_hashes(p) for p in paths}
    bands: dict[tuple[int, int], list[Path]] = defaultdict(list)
    for path in paths:
        hashed = hashes[path]
        if hashed is None:
            continue
        for band in range(8):
            bucket = bands[(band, hashed[0] >> (8 * band) & 0xFF)]
            for other in bucket[-_BUCKET_LOOK:]:
                if find(other) != find(path) and near(hashed, hashes[other]):
                    parent[find(path)] = find(other)
            bucket.append(path)
    return {p: find(p) for p in paths}
