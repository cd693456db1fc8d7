# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Frame hand-off of the node: keep-latest slot, bounded waiters for the next frame, the callback guard."""

import threading
import time

from fgclip_ros.core.frame_waiters import BUSY, CLOSED, FRAME, TIMEOUT, FrameWaiters
from fgclip_ros.core.latest_slot import LatestSlot
from fgclip_ros.ros.callback_guard import CallbackGuard


def test_the_slot_hands_over_the_newest_item_and_returns_the_replaced_one():
    slot = LatestSlot()
    assert slot.put(1) is None
    assert slot.put(2) == 1  # 1 was never taken: the caller counts it stale
    assert slot.take(0.0) == 2
    assert slot.take(0.01) is None
    slot.put(3)
    assert slot.close() == 3 and slot.closed and slot.take(1.0) is None


def test_a_waiting_worker_wakes_on_put_and_on_close():
    slot = LatestSlot()
    taken = []
    worker = threading.Thread(target=lambda: taken.append(slot.take(30.0)))
    worker.start()
    slot.put("frame")
    worker.join(timeout=10)
    assert taken == ["frame"]
    worker = threading.Thread(target=lambda: taken.append(slot.take(30.0)))
    worker.start()
    slot.close()
    worker.join(timeout=10)
    assert not worker.is_alive() and taken == ["frame", None]


def test_waiters_beyond_capacity_are_busy_at_once_and_close_answers_all():
    waiters = FrameWaiters(capacity=2)
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(waiters.wait_next(60.0))) for _ in range(2)]
    for thread in threads:
        thread.start()
    while waiters.waiting < 2:
        time.sleep(0.01)
    assert waiters.wait_next(60.0) == BUSY
    waiters.frame_done()
    for thread in threads:
        thread.join(timeout=10)
    assert outcomes == [FRAME, FRAME]
    assert waiters.wait_next(0.01) == TIMEOUT
    thread = threading.Thread(target=lambda: outcomes.append(waiters.wait_next(60.0)))
    thread.start()
    while waiters.waiting < 1:
        time.sleep(0.01)
    waiters.close()
    thread.join(timeout=10)
    assert outcomes[-1] == CLOSED and waiters.wait_next(60.0) == CLOSED


def test_the_guard_counts_by_kind_and_logs_the_traceback_once():
    logged = []
    guard = CallbackGuard(lambda kind, message: logged.append((kind, message)))

    def broken(value):
        raise KeyError(value)

    wrapped = guard.wrap("image", broken, fallback=lambda problem: f"fallback: {problem}")
    assert wrapped("a") == "fallback: image: unexpected KeyError: 'a'"
    assert wrapped("b").startswith("fallback")
    assert [kind for kind, _ in logged] == ["callback_image_KeyError"] * 2
    assert "Traceback" in logged[0][1] and "Traceback" not in logged[1][1]
    assert guard.wrap("queries", lambda: 7)() == 7
