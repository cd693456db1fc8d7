# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Where one frame's wall time goes: host marks and GPU marks on one clock.

A frame's latency on the GPU path is host work (box checks, copies, kernel launches) and GPU work
that only partly overlap; a stage timer that synchronises after each stage changes what it
measures. ``FrameTimeline`` records instead, without any extra synchronisation:

- host marks: ``time.perf_counter()`` when the host passes a point;
- GPU marks: CUDA events queued on the current stream, i.e. when the GPU reaches that point.

The frame starts with a host mark and a GPU event at the same moment (the GPU is idle then: the
previous frame ended with a sync), so after the frame's own sync both kinds read as milliseconds
since the frame began. On the CPU only host marks exist.
"""

import time

import numpy as np
import torch


class FrameTimeline:
    """Marks of one frame at a time; ``frames`` collects every finished frame's marks (ms since start)."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self._cuda = self.device.type == "cuda"
        self._start_s = 0.0
        self._start_event = None
        self._host: dict[str, float] = {}
        self._gpu: dict[str, object] = {}
        self.frames: list[dict[str, float]] = []

    def _event(self):
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def start(self) -> None:
        self._host, self._gpu = {}, {}
        self._start_s = time.perf_counter()
        self._start_event = self._event() if self._cuda else None

    def host(self, name: str) -> None:
        self._host[name] = time.perf_counter()

    def gpu(self, name: str) -> None:
        if self._cuda:
            self._gpu[name] = self._event()

    def finish(self) -> dict[str, float]:
        """Close the frame (after its sync): {"host <mark>" | "gpu <mark>": ms since the start}."""
        marks = {f"host {name}": (t - self._start_s) * 1e3 for name, t in self._host.items()}
        for name, event in self._gpu.items():
            event.synchronize()
            marks[f"gpu {name}"] = self._start_event.elapsed_time(event)
        self.frames.append(marks)
        return marks

    def medians(self) -> dict[str, float]:
        """Median of each mark over the finished frames, in the order the marks happened."""
        names = {name for frame in self.frames for name in frame}
        medians = {name: float(np.median([f[name] for f in self.frames if name in f])) for name in names}
        return dict(sorted(medians.items(), key=lambda item: item[1]))
