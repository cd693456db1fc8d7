# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Why a box was not scored: the reason texts people read and the codes machines read.

The codes are the values of fgclip_msgs/FineGrainedDetection's REJECTED_* constants
(test_workspace checks that they agree). Plain Python: the bag tools use it without torch.
"""

from __future__ import annotations

from enum import IntEnum

REASON_NON_FINITE = "non-finite coordinates"
REASON_NON_POSITIVE = "zero or negative size"
REASON_OUTSIDE = "fully outside the image"
REASON_TOO_SMALL = "smaller than min_size after clamping to the image"
REASON_OVER_LIMIT = "over max_detections"


class Rejection(IntEnum):
    NONE = 0
    NON_FINITE = 1
    NON_POSITIVE_SIZE = 2
    OUTSIDE_IMAGE = 3
    TOO_SMALL = 4
    OVER_MAX_DETECTIONS = 5
    OTHER = 255


# A reason starts with one of these texts; details (the limit, the minimum size) follow.
_CODE_BY_REASON = (
    (REASON_NON_FINITE, Rejection.NON_FINITE),
    (REASON_NON_POSITIVE, Rejection.NON_POSITIVE_SIZE),
    (REASON_OUTSIDE, Rejection.OUTSIDE_IMAGE),
    (REASON_TOO_SMALL, Rejection.TOO_SMALL),
    (REASON_OVER_LIMIT, Rejection.OVER_MAX_DETECTIONS),
)


def rejection_code(valid: bool, reason: str) -> Rejection:
    """The code of a box's ``rejected_reason`` (NONE for a valid box)."""
    if valid:
        return Rejection.NONE
    return next((code for text, code in _CODE_BY_REASON if reason.startswith(text)), Rejection.OTHER)
