# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Frame rate and latency percentiles over a sliding window, for /diagnostics."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StatsSnapshot:
    frames_total: int
    rate_hz: float  # processed frames per second over the window (0 with < 2 frames)
    latency_p50_ms: float  # NaN with no frames in the window
    latency_p99_ms: float
    window_frames: int


class RateLatencyStats:
    """One record per processed frame with its latency; rate and p50/p99 over the last ``window_s``."""

    def __init__(
        self, window_s: float = 10.0, max_samples: int = 10_000, clock: Callable[[], float] = time.monotonic
    ):
        self._window_s = float(window_s)
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=int(max_samples))
        self._frames_total = 0
        self._lock = threading.Lock()

    def record(self, latency_s: float, now: float | None = None) -> None:
        with self._lock:
            self._samples.append((self._clock() if now is None else now, float(latency_s)))
            self._frames_total += 1

    def snapshot(self, now: float | None = None) -> StatsSnapshot:
        now = self._clock() if now is None else now
        with self._lock:
            while self._samples and self._samples[0][0] < now - self._window_s:
                self._samples.popleft()
            samples = list(self._samples)
            total = self._frames_total
        if not samples:
            return StatsSnapshot(total, 0.0, float("nan"), float("nan"), 0)
        latencies_ms = np.asarray([latency for _, latency in samples]) * 1000.0
        p50, p99 = np.percentile(latencies_ms, [50, 99])
        rate = 0.0
        if len(samples) >= 2:
            span = samples[-1][0] - samples[0][0]
            rate = (len(samples) - 1) / span if span > 0 else 0.0
        return StatsSnapshot(total, float(rate), float(p50), float(p99), len(samples))
