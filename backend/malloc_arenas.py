"""A cap on glibc's malloc arenas for the app process.

glibc gives threads their own heaps ("arenas"), up to 8 per core by default. The app starts a new
thread for each streamed answer (transformers' generate runs beside the stream), and Gradio's worker
threads come and go; each new thread settles on one of those arenas, and each arena keeps a
fragmented high-water mark of freed tensors and picture bytes that it never returns. Under
bench_soak.py's 20 visitors the app grew 5-6 MiB a minute in such free memory while its live objects
and glibc's in-use total stayed level. With two arenas it levels off within two minutes, answering
as fast (bench/README.md, Soak).

Only the app process: the training worker and the training programs are not capped (an environment
variable would be inherited by them, so this is set with mallopt instead).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap this process's malloc arenas, unless MALLOC_ARENA_MAX already says how many. Call it
    before threads start: arenas that exist stay. Returns whether the cap was set (glibc only)."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.mallopt(M_ARENA_MAX, arenas) == 1
    except (OSError, AttributeError):  # musl has no mallopt; no libc found
        return False
