"""lmroute._malloc: freed heap memory goes back to the OS (glibc on Linux)."""

import subprocess
import sys
import textwrap

import pytest

from lmroute import _malloc

glibc = pytest.mark.skipif(_malloc._glibc() is None, reason="needs glibc")

# A thread allocates 64 MB in 64 KB blocks (below glibc's mmap threshold: heap memory) and frees all
# but the last, which pins the heap's top so that glibc's own trimming cannot hand anything back.
_SCRIPT = """
import ctypes, json, threading
from lmroute import _malloc

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if ONE_ARENA:
    _malloc.use_one_arena()

def churn():
    blocks = [libc.malloc(65536) for _ in range(1024)]
    for block in blocks:
        ctypes.memset(block, 1, 65536)
    for block in blocks[:-1]:
        libc.free(block)

thread = threading.Thread(target=churn)
thread.start()
thread.join()
before = rss_mb()
_malloc.release_freed_memory()
print(json.dumps([before, rss_mb()]))
"""


def _freed_mb(one_arena: bool) -> float:
    script = f"ONE_ARENA = {one_arena}\n" + textwrap.dedent(_SCRIPT)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after = (float(x) for x in out.stdout.strip("[]\n").split(","))
    return before - after


@glibc
@pytest.mark.parametrize("one_arena", [True, False])
def test_released_memory_of_a_thread_goes_back_to_the_os(one_arena):
    assert _freed_mb(one_arena) > 48


def test_without_glibc_nothing_happens(monkeypatch):
    monkeypatch.setattr(_malloc, "_glibc", lambda: None)
    _malloc.release_freed_memory()
    _malloc.use_one_arena()
