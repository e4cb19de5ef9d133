"""Whether bf16 is native on a device: the one check every part that picks a precision asks.

Where bf16 is native (CUDA with bf16; a CPU with AVX512-BF16 or AMX) its matmuls and convs are
fast and its weights half of fp32's bytes; elsewhere torch emulates it and it is slower than fp32.
"""
from __future__ import annotations

import torch


def bf16_fast_on_cpu() -> bool:
    """True when the CPU runs bf16 convs and matmuls natively (AVX512-BF16 / AMX); else bf16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def bf16_native(device: str | torch.device) -> bool:
    """True on CUDA with bf16 and on a CPU with native bf16; False on any other device."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    return kind == "cpu" and bf16_fast_on_cpu()


def device_problem(device: str | None) -> str | None:
    """What is wrong with a --device (None: nothing, or none given): a name torch parses, and for
    CUDA a GPU this torch can use (a CPU-only build has none)."""
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        return f"--device {device!r} is not a device torch knows (cpu, cuda, cuda:1, ...)"
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            return f"--device {device!r}: no CUDA GPU is available to this torch; use --device cpu"
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            return (f"--device {device!r}: no such GPU; torch sees {torch.cuda.device_count()} "
                    "(numbered from 0)")
    return None
