"""Where the app process's freed memory goes: to few glibc malloc arenas, so that it is reused, and
pyarrow's (pandas 3's strings, behind the tables the page shows) to that same malloc.

glibc gives threads their own heaps ("arenas"), up to 8 per core by default. The app starts a new
thread for each streamed answer (transformers' generate runs beside the stream), and Gradio's worker
threads come and go; each new thread settles on one of those arenas, and each arena keeps a
fragmented high-water mark of freed tensors and picture bytes that it never returns. Under
bench_soak.py's 20 visitors the app grew 5-6 MiB a minute in such free memory while its live objects
and glibc's in-use total stayed level. With two arenas that part stopped.

Only the app process: the training worker and the training programs are not capped (an environment
variable would be inherited by them, so this is set with mallopt instead).

pyarrow keeps its own allocator (mimalloc, in a 1 GiB reservation), which holds on to pages it has
freed: with the arenas capped, the same soak's app still grew in that reservation after 7 minutes.
ARROW_DEFAULT_MEMORY_POOL=system (Arrow's own setting, read when pyarrow first allocates) sends it
to malloc instead. The child processes inherit it, which costs them nothing: they make few tables.

With both, the soak's app is level after five minutes (+8.5 MiB in ten, against +54), and
bench_load.py answers no slower than with the defaults (bench/README.md, Soak).
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


def arrow_on_system_malloc() -> bool:
    """Have pyarrow allocate with malloc, unless ARROW_DEFAULT_MEMORY_POOL already names a pool. Call
    it before pyarrow is imported. Returns whether it was set."""
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return False
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    return True
