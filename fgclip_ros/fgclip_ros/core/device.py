# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The one `device` rule of the node and every tool: ``auto`` is CUDA when usable, else the CPU."""

from fgclip_ros.core.errors import FgclipError

DEVICE_HELP = "auto (cuda when available, else cpu), cpu, cuda or cuda:N"


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is usable, else ``cpu``; FgclipError for CUDA without CUDA."""
    import torch  # here, not at import: CLIs build their --help without it

    name = str(device).strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FgclipError(
            f"device {device!r}: CUDA is not available here (torch sees no CUDA device); use auto or cpu"
        )
    return name
