"""MKL's strict reproducibility mode: matrix products whose bits do not depend on where in
memory their operands sit.

By default MKL picks a kernel path by operand alignment, so one product computed on a slice of a
larger tensor (a stacked seed's, `iclbench.stacked`) and on a tensor of its own can differ in
the last bit; so can one training run twice if the allocator places a batch elsewhere. Strict
mode (`MKL_CBWR=AUTO,STRICT`: the machine's best instructions, alignment-independent) removes
that at no measured cost. MKL reads the setting at its first call, so `iclbench` sets it as an
environment default when imported (`request`); a process that ran an MKL product before
importing iclbench keeps MKL's default, which `strict` reports.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache

MODE = "AUTO,STRICT"
_STRICT_BIT = 0x10000  # MKL_CBWR_STRICT
_ALL = -1  # MKL_CBWR_ALL: the whole setting, branch and strict bit


def request() -> None:
    """Ask for strict mode for this process and its children, unless the user chose a mode."""
    os.environ.setdefault("MKL_CBWR", MODE)


@cache
def _cbwr_get():
    import torch

    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):  # no MKL in this torch build (another BLAS, another platform)
        return None
    get.argtypes, get.restype = [ctypes.c_int], ctypes.c_int
    return get


def strict() -> bool | None:
    """Whether MKL runs in strict mode in this process; None where torch has no MKL."""
    get = _cbwr_get()
    return None if get is None else bool(get(_ALL) & _STRICT_BIT)
