"""The app's allocator settings (backend/allocators.py): threads that allocate at the same time share
two glibc heaps with the cap and get heaps of their own without it, as glibc's malloc_info reports;
pyarrow allocates with malloc; and what the environment already says wins."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc arenas: Linux only")

# Eight threads each hold a malloc'd block at the same moment, then glibc lists its heaps.
PROBE = textwrap.dedent("""
    import ctypes, sys, threading
    from backend.allocators import limit_malloc_arenas

    capped = limit_malloc_arenas() if sys.argv[1] == "cap" else False
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.fopen.restype = ctypes.c_void_p
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    holding, done = threading.Barrier(9), threading.Barrier(9)  # eight threads and this one

    def hold():
        block = libc.malloc(64 * 1024)
        holding.wait()
        done.wait()
        libc.free(block)

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for thread in threads:
        thread.start()
    holding.wait()
    report = libc.fopen(sys.argv[2].encode(), b"w")
    libc.malloc_info(0, report)
    libc.fclose(report)
    done.wait()
    for thread in threads:
        thread.join()
    print(capped, open(sys.argv[2]).read().count("<heap nr="))
""")


def heaps(tmp_path: Path, mode: str, env: dict | None = None) -> tuple[bool, int]:
    """(whether the cap was set, how many heaps glibc had) in a fresh process."""
    env = {**{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}, **(env or {})}
    result = subprocess.run([sys.executable, "-c", PROBE, mode, str(tmp_path / f"{mode}.xml")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    capped, count = result.stdout.split()
    return capped == "True", int(count)


def test_threads_share_two_heaps_with_the_cap(tmp_path):
    capped, count = heaps(tmp_path, "cap")
    assert capped
    assert count <= 2


def test_without_the_cap_threads_get_heaps_of_their_own(tmp_path):
    # The other half of the comparison: without it the test above could pass on a glibc that never
    # made arenas at all.
    capped, count = heaps(tmp_path, "plain")
    assert not capped
    assert count > 2


def test_malloc_arena_max_in_the_environment_wins(tmp_path):
    capped, count = heaps(tmp_path, "cap", env={"MALLOC_ARENA_MAX": "4"})
    assert not capped
    assert 2 < count <= 4


def arrow_pool(env: dict | None = None) -> str:
    """The pool pyarrow allocates from after the app's setting, in a fresh process."""
    env = {**{k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}, **(env or {})}
    probe = ("from backend.allocators import arrow_on_system_malloc; arrow_on_system_malloc(); "
             "import pandas, pyarrow; print(pyarrow.default_memory_pool().backend_name)")
    return subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=True).stdout.strip()


def test_pyarrow_allocates_with_malloc():
    assert arrow_pool() == "system"


def test_a_pool_named_in_the_environment_wins():
    assert arrow_pool({"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == "mimalloc"
