"""Freed training memory stays in the process instead of being faulted in again every step."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

STEP_BYTES = 3 * 20_000_000

AFTER_A_STEP = """
import ctypes, ctypes.util, torch
from iclbench.allocator import retain_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
assert retain_freed_memory()
for _ in range(2):  # a training step's pattern: large buffers at once, all freed at its end
    buffers = [torch.ones(5_000_000) for _ in range(3)]  # 3 x 20 MB
    del buffers
print(libc.mallinfo2().fordblks)  # free bytes the heap keeps for the next step
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and mallinfo2 are glibc's")
def test_a_steps_freed_buffers_stay_in_the_heap():
    """glibc's own thresholds hand these buffers back to the system after most runs' steps
    (then every page faults in again next step); with ours the heap keeps all of them."""
    out = subprocess.run([sys.executable, "-c", AFTER_A_STEP], capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) >= STEP_BYTES
