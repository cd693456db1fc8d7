# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Counted, rate-limited warnings: every occurrence is counted, at most one log line per reason per period.

A camera with a wrong encoding would otherwise log 30 lines a second; the node instead logs the
first occurrence and then one line per period saying how many more were suppressed, while the
counts go to /diagnostics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CountedWarnings:
    """Counts problems by reason; forwards a message to ``log`` at most once per ``period_s`` per reason."""

    def __init__(
        self,
        log: Callable[[str], None],
        period_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._log = log
        self._period_s = float(period_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, reason: str, message: str) -> bool:
        """Count one occurrence of ``reason``; return True when ``message`` was logged."""
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + 1
            now = self._clock()
            last = self._last_logged.get(reason)
            if last is not None and now - last < self._period_s:
                self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
                return False
            suppressed = self._suppressed.pop(reason, 0)
            self._last_logged[reason] = now
        suffix = f" ({suppressed} similar suppressed in the last {self._period_s:g} s)" if suppressed else ""
        self._log(f"{message}{suffix}")
        return True

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
