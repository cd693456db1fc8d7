# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The last line at every callback boundary of the node: no exception reaches ``executor.spin()``.

Each input's known problems are handled where they occur (a decode error, a bad query set); this
catches what nobody foresaw. The exception is counted under ``callback_<where>_<ExceptionType>``
(so /diagnostics shows it as ``dropped.callback_...``), logged rate-limited with its traceback the
first time that kind occurs, and the callback's input is dropped: the node goes on.
"""

from __future__ import annotations

import functools
import threading
import traceback
from collections.abc import Callable

CALLBACK_ERROR_PREFIX = "callback_"


class CallbackGuard:
    """Wraps callbacks; ``warn(kind, message)`` counts and rate-limits (the node's CountedWarnings)."""

    def __init__(self, warn: Callable[[str, str], object]):
        self._warn = warn
        self._traced: set[str] = set()
        self._lock = threading.Lock()

    def report(self, where: str, exc: Exception) -> str:
        """Count and log ``exc`` raised in ``where``; returns the one-line description."""
        kind = f"{CALLBACK_ERROR_PREFIX}{where}_{type(exc).__name__}"
        line = f"{where}: unexpected {type(exc).__name__}: {exc}"
        with self._lock:
            first = kind not in self._traced
            self._traced.add(kind)
        detail = "".join(traceback.format_exception(exc)) if first else ""
        self._warn(kind, f"{line}; input dropped" + (f"\n{detail}" if detail else ""))
        return line

    def wrap(self, where: str, callback: Callable, fallback: Callable[[str], object] | None = None):
        """``callback`` that never raises: on an exception, report it and return ``fallback(description)``."""

        @functools.wraps(callback)
        def guarded(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the point of the guard
                description = self.report(where, exc)
                return fallback(description) if fallback is not None else None

        return guarded
