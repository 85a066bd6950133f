"""Named random streams: every (seed, purpose) pair gets its own generator.

Training/tuning tasks and each evaluation task draw from separate streams, so evaluation
never overlaps training and adding a learner or an eval task does not shift other numbers.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from `seed` and the names of its purpose, stable across runs and machines."""
    text = "/".join(map(str, (seed, *parts)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generator(device: torch.device | str, seed: int, *parts: object) -> torch.Generator:
    """A generator on `device` seeded for `(seed, *parts)`."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *parts))


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when available (never MPS, which lacks float64); `cuda` without a GPU,
    or `mps` off Apple's Metal, is an error naming the option."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (use auto or cpu)")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("--device mps: Apple's Metal (MPS) backend is not available on this machine (use auto or cpu)")
        return torch.device("mps")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"--device must be auto, cpu, cuda[:N] or mps, got {name!r}")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """`cpu`, or `cuda:0 (NVIDIA H100 ...)`: what the numbers were measured on."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
