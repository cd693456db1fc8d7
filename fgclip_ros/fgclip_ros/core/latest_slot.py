# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""A one-item hand-off from receiving threads to one worker that always takes the newest item.

Reception stays cheap and never waits for processing: ``put`` replaces an item the worker has not
taken yet and returns it, so the caller counts it (the node: ``dropped.stale``). Under overload the
worker therefore always works on the newest frame, and latency stays near one processing time
instead of growing with a queue.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def put(self, item: T) -> T | None:
        """Store ``item``; returns the unprocessed item it replaced (None if the slot was empty)."""
        with self._cond:
            replaced, self._item = self._item, item
            self._cond.notify()
            return replaced

    def take(self, timeout_s: float) -> T | None:
        """The newest item, waiting up to ``timeout_s``; None on timeout or once closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout_s)
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> T | None:
        """Wake the worker for good; returns the item left unprocessed."""
        with self._cond:
            self._closed = True
            item, self._item = self._item, None
            self._cond.notify_all()
            return item
