# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Pairing of images and detections by header stamp (message_filters is not on PyPI).

Each side has a bounded buffer. A new message is paired with the buffered message of the other
side whose stamp is closest, if within ``tolerance_ns`` (0 = exact). Streams are assumed to be
monotonic per side, so after a pair at stamps (t_image, t_detections):

- buffered images older than ``t_detections - tolerance`` can never pair any more and are
  dropped as *unmatched* (typical: the detector skipped those camera frames);
- buffered detections older than ``t_image - tolerance`` are dropped as *unmatched*
  (detections whose image never arrived).

A full buffer drops its oldest message (counted as *overflow*).

Time jumps: a side whose stamp goes back by more than ``max(tolerance, jump_reset_ns)`` below its
own newest stamp (a bag restarting, simulated time reset, or a recovery from one far-future stamp)
starts a new timeline: its newest stamp becomes the new one, and every buffered message of either
side closer to the old newest stamp than to the new one (the old timeline) is dropped as unmatched.
The other side follows when its own stamps go back; if that lands on the new timeline it is the
same jump (counted once), so a bag restart counts one jump whatever the arrival order, and pairing
resumes with the first frame after it. A forward jump needs no reset: the old messages can never
pair again and leave through the unmatched rule above.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

ImageT = TypeVar("ImageT")
DetectionsT = TypeVar("DetectionsT")

IMAGE = "image"
DETECTIONS = "detections"


@dataclass
class SyncCounters:
    """Monotonic counters, per side, of messages that never formed a pair."""

    received: dict[str, int] = field(default_factory=lambda: {IMAGE: 0, DETECTIONS: 0})
    unmatched: dict[str, int] = field(default_factory=lambda: {IMAGE: 0, DETECTIONS: 0})
    overflow: dict[str, int] = field(default_factory=lambda: {IMAGE: 0, DETECTIONS: 0})
    paired: int = 0
    time_jumps: int = 0

    def snapshot(self) -> dict[str, int]:
        flat = {"paired": self.paired, "time_jumps": self.time_jumps}
        for side in (IMAGE, DETECTIONS):
            flat[f"{side}_received"] = self.received[side]
            flat[f"{side}_unmatched"] = self.unmatched[side]
            flat[f"{side}_overflow"] = self.overflow[side]
        return flat


@dataclass(frozen=True)
class Pair(Generic[ImageT, DetectionsT]):
    image_stamp_ns: int
    image: ImageT
    detections_stamp_ns: int
    detections: DetectionsT


class StampSync(Generic[ImageT, DetectionsT]):
    """Thread-safe stamp pairing; ``add_*`` return the pair formed by the new message, or None."""

    def __init__(
        self,
        tolerance_ns: int = 0,
        image_buffer: int = 10,
        detections_buffer: int = 10,
        jump_reset_ns: int = 1_000_000_000,
    ):
        if tolerance_ns < 0:
            raise ValueError(f"tolerance_ns must be >= 0, got {tolerance_ns}")
        if image_buffer < 1 or detections_buffer < 1:
            raise ValueError(f"buffer sizes must be >= 1, got {image_buffer} and {detections_buffer}")
        self.tolerance_ns = int(tolerance_ns)
        self.jump_reset_ns = max(int(jump_reset_ns), self.tolerance_ns)
        self._capacity = {IMAGE: int(image_buffer), DETECTIONS: int(detections_buffer)}
        self._buffers: dict[str, deque[tuple[int, object]]] = {IMAGE: deque(), DETECTIONS: deque()}
        self._newest: dict[str, int | None] = {IMAGE: None, DETECTIONS: None}
        # (side, stamp) of the latest jump that the other side has not followed yet.
        self._unfollowed_jump: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self.counters = SyncCounters()

    def add_image(self, stamp_ns: int, image: ImageT) -> Pair[ImageT, DetectionsT] | None:
        return self._add(IMAGE, int(stamp_ns), image)

    def add_detections(self, stamp_ns: int, detections: DetectionsT) -> Pair[ImageT, DetectionsT] | None:
        return self._add(DETECTIONS, int(stamp_ns), detections)

    def pending(self) -> dict[str, int]:
        with self._lock:
            return {side: len(buf) for side, buf in self._buffers.items()}

    def clear(self) -> None:
        """Forget buffered messages (e.g. on deactivate) without counting them."""
        with self._lock:
            for side in self._buffers:
                self._buffers[side].clear()
                self._newest[side] = None
            self._unfollowed_jump = None

    def _add(self, side: str, stamp_ns: int, item) -> Pair | None:
        other = DETECTIONS if side == IMAGE else IMAGE
        with self._lock:
            self.counters.received[side] += 1
            newest = self._newest[side]
            if newest is not None and stamp_ns < newest - self.jump_reset_ns:
                self._jump(side, other, stamp_ns, newest)
            else:
                self._newest[side] = stamp_ns if newest is None else max(newest, stamp_ns)

            partner = self._closest(self._buffers[other], stamp_ns)
            if partner is None:
                self._insert(side, stamp_ns, item)
                return None
            other_stamp, other_item = partner
            self._buffers[other].remove(partner)
            self.counters.paired += 1
            # Messages that can no longer pair with anything (see module docstring).
            self._drop_older(other, stamp_ns - self.tolerance_ns)
            self._drop_older(side, other_stamp - self.tolerance_ns)
            if side == IMAGE:
                return Pair(stamp_ns, item, other_stamp, other_item)
            return Pair(other_stamp, other_item, stamp_ns, item)

    def _jump(self, side: str, other: str, stamp_ns: int, old_newest_ns: int) -> None:
        """``side`` went back in time to ``stamp_ns``: start its new timeline (see module docstring)."""
        followed = self._unfollowed_jump
        other_newest = self._newest[other]
        same_jump = (
            followed is not None
            and followed[0] == other
            and other_newest is not None
            and followed[1] - self.jump_reset_ns <= stamp_ns <= other_newest + self.jump_reset_ns
        )
        if same_jump:
            self._unfollowed_jump = None
        else:
            self.counters.time_jumps += 1
            self._unfollowed_jump = (side, stamp_ns)
        self._newest[side] = stamp_ns
        midpoint = (stamp_ns + old_newest_ns) // 2
        for buffered_side, buffer in self._buffers.items():
            kept = [entry for entry in buffer if entry[0] <= midpoint]
            self.counters.unmatched[buffered_side] += len(buffer) - len(kept)
            buffer.clear()
            buffer.extend(kept)

    def _closest(self, buffer: deque, stamp_ns: int) -> tuple[int, object] | None:
        best = None
        best_gap = self.tolerance_ns + 1
        for entry in buffer:
            gap = abs(entry[0] - stamp_ns)
            if gap < best_gap:
                best, best_gap = entry, gap
        return best

    def _insert(self, side: str, stamp_ns: int, item) -> None:
        buffer = self._buffers[side]
        if len(buffer) >= self._capacity[side]:
            buffer.popleft()
            self.counters.overflow[side] += 1
        # Keep the buffer sorted by stamp so that popleft drops the oldest even for out-of-order input.
        index = len(buffer)
        while index > 0 and buffer[index - 1][0] > stamp_ns:
            index -= 1
        buffer.insert(index, (stamp_ns, item))

    def _drop_older(self, side: str, limit_ns: int) -> None:
        buffer = self._buffers[side]
        while buffer and buffer[0][0] < limit_ns:
            buffer.popleft()
            self.counters.unmatched[side] += 1
