"""Is this picture usable? Quickly (for indexing) or thoroughly (before training on it).

Indexing FoodieQA must take well under a second, so the quick check never decodes: it looks at the
file's type and size and at its first bytes (every format Pillow reads starts with a signature).
That catches missing, empty, non-regular and non-picture files. A truncated or corrupt JPEG passes
the quick check; the full check decodes (at a reduced scale, so a phone photo costs milliseconds)
and catches it. Own data is checked fully by default: a broken picture there would stop a training
run halfway.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Literal

from backend.data.safe_paths import read_head
from backend.images import ImageError, open_image
from backend.problems import Problem

ImageCheck = Literal["quick", "full", "auto"]
# "auto" decodes the first this many pictures of a read and checks the rest quickly, so that opening
# a data set of 20,000 photos takes seconds; saving a training set decodes the rest
# (split.broken_pictures).
AUTO_FULL_PICTURES = 1_000

# File signatures of the formats the app accepts (backend.images opens them through Pillow).
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, b"\xff\xd8\xff"),          # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),     # PNG
    (0, b"GIF87a"), (0, b"GIF89a"),
    (8, b"WEBP"),                   # RIFF....WEBP
    (0, b"BM"),                     # BMP
    (0, b"II*\x00"), (0, b"MM\x00*"),  # TIFF
)
# A full check decodes to at most this many pixels: enough to prove the data decodes. Small on
# purpose: open_image asks JPEG for a draft of 4x this, which for photos means decoding straight at
# 1/8 scale, the cheapest full pass over the data there is.
_FULL_CHECK_PIXELS = 48 * 48


class ImageChecker:
    """Checks pictures once each and remembers the verdict (1,400 questions share 400 pictures)."""

    def __init__(self, level: ImageCheck = "quick") -> None:
        if level not in ("quick", "full", "auto"):
            raise ValueError(f"unknown image check {level!r}; use 'quick', 'full' or 'auto'")
        self.level = level
        self._verdicts: dict[Path, Problem | None] = {}
        self.decoded = 0  # pictures fully checked
        self.only_quick = 0  # pictures "auto" checked quickly only (past its budget)

    def problem(self, path: Path) -> Problem | None:
        """None if the picture at `path` (already confined to the data folder) is usable, else why
        not, as a predicate (a Problem): "is missing", "is an empty (0-byte) file"..."""
        if path not in self._verdicts:
            self._verdicts[path] = self._check(path)
        return self._verdicts[path]

    def _check(self, path: Path) -> Problem | None:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return Problem("row_picture_missing", "is missing")
        except OSError as err:
            if err.errno == errno.ENOTDIR:
                return Problem("row_picture_missing", "is missing")
            return Problem("row_picture_unreadable", "cannot be read ({detail})", detail=err.strerror or str(err))
        if not stat.S_ISREG(info.st_mode):
            return Problem("row_picture_not_file", "is not a regular file")
        if info.st_size == 0:
            return Problem("row_picture_empty", "is an empty (0-byte) file")
        try:
            head = read_head(path, 16)
        except OSError as err:
            return Problem("row_picture_unreadable", "cannot be read ({detail})", detail=err.strerror or str(err))
        if not any(head[offset:offset + len(sig)] == sig for offset, sig in _SIGNATURES):
            return Problem("row_picture_not_picture", "is not a picture (not JPEG, PNG, GIF, WebP, BMP or TIFF)")
        if self.level == "full" or (self.level == "auto" and self.decoded < AUTO_FULL_PICTURES):
            self.decoded += 1
            return decoded_problem(path, info)
        if self.level == "auto":
            self.only_quick += 1
        return None


# Verdicts of full checks, by file and version, for the whole process: a picture decoded when its data
# set was read is not decoded again when a training set is saved from it.
_DECODED: dict[tuple[Path, int, int], Problem | None] = {}


def decoded_problem(path: Path, info: os.stat_result | None = None) -> Problem | None:
    """None if the picture decodes (at a small scale), else why not; remembered per file version."""
    try:
        info = info or os.stat(path)
    except OSError:
        return Problem("row_picture_missing", "is missing")
    key = (path, info.st_size, info.st_mtime_ns)
    if key not in _DECODED:
        try:
            open_image(path, _FULL_CHECK_PIXELS)
            _DECODED[key] = None
        except ImageError as err:
            _DECODED[key] = Problem("row_picture_broken", "is unreadable: {reason}", reason=err.problem)
    return _DECODED[key]
