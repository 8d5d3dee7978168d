"""Which photos are the same photo: a perceptual hash (dHash and aHash, 64 bits each, with Pillow), so
that a held-out split by picture keeps identical and near-identical copies (re-saved, resized,
slightly recoloured) on one side.

dHash compares each pixel of a 17x16 grey thumbnail with its right neighbour; aHash each pixel of a
16x16 one with their mean (256 bits each: at 8x8, the bundled dish pictures, plates on one table,
were 3 bits apart while a re-saved copy was 1 bit off; at 16x16 they are 30 or more apart, a copy
re-saved, resized or brightened 0 to 13). Two photos are near-identical when their dHashes differ in
at most NEAR_BITS bits and their aHashes in at most AVERAGE_BITS. Candidates are found through the
dHash's 32 bytes: hashes at most 31 bits apart share a byte exactly (pigeonhole), so only photos
sharing one are compared.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageOps

log = logging.getLogger(__name__)

SIDE = 16
NEAR_BITS = 20
AVERAGE_BITS = 40
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
            picture.draft("L", (128, 128))  # JPEG decodes straight at a fraction of its size: cheap
            grey = ImageOps.exif_transpose(picture).convert("L")
            wide = grey.resize((SIDE + 1, SIDE), Image.Resampling.LANCZOS).tobytes()
            small = grey.resize((SIDE, SIDE), Image.Resampling.LANCZOS).tobytes()
    except Exception as err:  # Pillow raises many types for a broken file; the split then keys by path
        log.info("no perceptual hash for %s: %s", path, err)
        return None
    dhash = 0
    for row in range(SIDE):
        for column in range(SIDE):
            dhash = dhash << 1 | (wide[row * (SIDE + 1) + column] > wide[row * (SIDE + 1) + column + 1])
    mean = sum(small) / len(small)
    ahash = 0
    for value in small:
        ahash = ahash << 1 | (value > mean)
    return dhash, ahash


def near(one: tuple[int, int], other: tuple[int, int]) -> bool:
    return (bin(one[0] ^ other[0]).count("1") <= NEAR_BITS
            and bin(one[1] ^ other[1]).count("1") <= AVERAGE_BITS)


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
        for band in range(SIDE * SIDE // 8):
            bucket = bands[(band, hashed[0] >> (8 * band) & 0xFF)]
            for other in bucket[-_BUCKET_LOOK:]:
                if find(other) != find(path) and near(hashed, hashes[other]):
                    parent[find(path)] = find(other)
            bucket.append(path)
    return {p: find(p) for p in paths}
