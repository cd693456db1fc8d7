# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Bounded waiting for the next processed frame (the Query service's ``wait_for_next_frame``).

A waiting call holds the thread it runs on. At most ``capacity`` calls wait at a time; one more is
answered ``busy`` at once, so waiting calls can never take every executor thread away from frames,
lifecycle and parameter services. ``close`` (deactivate, shutdown) wakes every waiter at once.
"""

from __future__ import annotations

import threading
import time

FRAME, TIMEOUT, BUSY, CLOSED = "frame", "timeout", "busy", "closed"


class FrameWaiters:
    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._cond = threading.Condition()
        self._frames = 0
        self._waiting = 0
        self._closed = False

    @property
    def waiting(self) -> int:
        with self._cond:
            return self._waiting

    def frame_done(self) -> None:
        with self._cond:
            self._frames += 1
            self._cond.notify_all()

    def wait_next(self, timeout_s: float) -> str:
        """FRAME once a frame after this call was processed; else TIMEOUT, BUSY or CLOSED."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            if self._closed:
                return CLOSED
            if self._waiting >= self.capacity:
                return BUSY
            self._waiting += 1
            start = self._frames
            try:
                while self._frames == start and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return TIMEOUT
                    self._cond.wait(remaining)
                return CLOSED if self._closed else FRAME
            finally:
                self._waiting -= 1

    def open(self) -> None:
        with self._cond:
            self._closed = False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
