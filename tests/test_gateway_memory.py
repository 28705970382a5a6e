"""The gateway's heap and library pages: which mappings may be dropped, and that dropping them is safe."""

from __future__ import annotations

import subprocess
import sys

from vehicle_ingest.gateway.memory import _clean_library_mappings

SMAPS = """\
7f0000000000-7f0000100000 r-xp 00000000 08:01 1234    /usr/lib/libfoo.so.1
Size:               1024 kB
Rss:                 512 kB
Anonymous:             0 kB
7f0000100000-7f0000101000 r--p 00100000 08:01 1234    /usr/lib/libfoo.so.1
Size:                  4 kB
Anonymous:             4 kB
7f0000101000-7f0000102000 rw-p 00101000 08:01 1234    /usr/lib/libfoo.so.1
Size:                  4 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 r--p 00000000 08:01 99      /srv/data/table.bin
Size:               1024 kB
Anonymous:             0 kB
7f0000300000-7f0000400000 r--p 00000000 00:00 0
Size:               1024 kB
Anonymous:             0 kB
7f0000400000-7f0000500000 r--p 00000000 08:01 77      /opt/venv/_chdb.abi3.so (deleted)
Size:               1024 kB
Anonymous:             0 kB
"""


def test_only_read_only_library_mappings_nobody_wrote_are_dropped() -> None:
    """Code and read-only data of libraries go; pages with private copies (relocated), writable
    mappings, data files and anonymous memory stay."""
    assert list(_clean_library_mappings(SMAPS)) == [
        (0x7F0000000000, 0x7F0000100000),
        (0x7F0000400000, 0x7F0000500000),
    ]


PROBE = """
import numpy as np
import chdb
from vehicle_ingest.gateway.memory import release_heap, release_library_pages, tune_heap
from numba import njit

@njit(cache=False)
def total(x):
    s = 0.0
    for v in x:
        s += v
    return s

assert tune_heap()
before = chdb.query("SELECT sum(number) FROM numbers(1000000)", "CSV").bytes()
assert total(np.arange(1000.0)) == 499500.0
released = release_library_pages()
release_heap()
after = chdb.query("SELECT sum(number) FROM numbers(1000000)", "CSV").bytes()
assert before == after == b"499999500000\\n", (before, after)
assert total(np.arange(1000.0)) == 499500.0
print(released)
"""


def test_library_pages_dropped_from_a_live_process_come_back_on_use() -> None:
    """In a process whose heap glibc accepted the thresholds for, and that ran chDB and a numba
    kernel: the pages go (RssFile falls) and both engines answer the same afterwards, their code
    mapped again from the page cache. (A subprocess: the thresholds and the unmapping last for
    the process, and pytest's should not change.)"""
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 50 * 1024 * 1024
