# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node's /diagnostics status (diagnostic_updater is not on PyPI; this builds the same message)."""

from __future__ import annotations

import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

LEVEL_OK, LEVEL_WARN, LEVEL_ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def _text(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def make_status(name: str, hardware_id: str, level: bytes, message: str, values: dict) -> DiagnosticStatus:
    """``level`` is one of LEVEL_* (byte constants of DiagnosticStatus)."""
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=str(key), value=_text(value)) for key, value in values.items()]
    return status


def make_array(stamp, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    array = DiagnosticArray(status=statuses)
    array.header.stamp = stamp
    return array


def status_level(active: bool, frames_in_window: int, problems_in_period: int) -> tuple[bytes, str]:
    """OK while frames flow cleanly; WARN when inactive, idle or while malformed/unmatched inputs occur."""
    if not active:
        return LEVEL_WARN, "not active"
    if problems_in_period:
        return LEVEL_WARN, f"{problems_in_period} dropped/malformed inputs since the last status"
    if frames_in_window == 0:
        return LEVEL_WARN, "no frames processed recently"
    return LEVEL_OK, "ok"
