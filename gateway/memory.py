"""The gateway process's heap: glibc's allocator tuned for batches, and freed pages handed back.

Two allocators share the process. chDB's engine has its own jemalloc (`Store.release_memory`
purges it). Python and numpy use glibc's malloc, which by default raises its mmap threshold each
time a large block is freed, up to 32 MB: after the first batches, every batch's column arrays
come from the heap arenas instead of fresh mappings, and the arenas keep the freed pages. At 1 M
samples/s that held 140-210 MB of which 50-120 MB were in use (`mallinfo2`, issue 15).

A fixed threshold keeps arrays of 256 KiB and up in mappings of their own, returned to the
kernel when numpy frees them; `malloc_trim` hands back the free pages inside the arenas. A
mapping costs a system call and page faults: code that allocates such a block per message must
reuse it instead (msgpack's `packb` buffer, 256 KiB, took 8 µs per receipt instead of 0.5 µs).
Both functions are glibc's; on another C library they are missing and nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = ["release_heap", "release_library_pages", "tune_heap"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 256 * 1024
_TRIM_THRESHOLD_BYTES = 4 * 1024 * 1024


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


_LIBC = _glibc()


def tune_heap() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; False where glibc is not the allocator."""
    if _LIBC is None:
        return False
    # mallopt returns 1 on success; a fixed threshold also turns off its dynamic adjustment.
    ok = bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1)
    ok = bool(_LIBC.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) == 1) and ok
    if not ok:
        log.warning("glibc refused the heap thresholds; freed batch memory may stay in the heap")
    return ok


def release_heap() -> None:
    """Return glibc's free heap pages to the kernel (a few milliseconds; the arenas stay usable)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


_MADV_DONTNEED = 4
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s+(\S.*)$")


def _clean_library_mappings(smaps: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each read-only shared-library mapping none of whose pages the process wrote.

    Such pages are the file's, byte for byte: dropped, they are mapped again from the page cache on
    the next touch. A mapping with private copies (`Anonymous` > 0: relocations, the loader's
    RELRO) or a writable one is never touched; dropping those would lose what was written.
    """
    current: tuple[int, int] | None = None
    for line in smaps.splitlines():
        mapping = _MAPPING.match(line)
        if mapping:
            start, end, perms, path = mapping.groups()
            is_library = ".so" in path.rsplit("/", 1)[-1]
            current = (int(start, 16), int(end, 16)) if is_library and "w" not in perms else None
        elif current is not None and line.startswith("Anonymous:"):
            if line.split()[1] == "0":
                yield current
            current = None


def release_library_pages() -> int:
    """Unmap the pages of read-only library code and data the process is not using; bytes released.

    chDB's library is 555 MB and its start-up touches half of it (LLVM's, for numba, 180 MB and a
    third): 400 MB of resident pages, shared and clean, of which the gateway then runs ~150 MB.
    """
    if _LIBC is None:
        return 0
    try:
        smaps = Path("/proc/self/smaps").read_text()
    except OSError:
        return 0
    before = _rss_file_bytes()
    for start, end in _clean_library_mappings(smaps):
        _LIBC.madvise(start, end - start, _MADV_DONTNEED)
    return max(0, before - _rss_file_bytes())


def _rss_file_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    return 0
