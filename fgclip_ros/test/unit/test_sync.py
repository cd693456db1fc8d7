# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Stamp pairing of images and detections: exact / tolerant matching, bounded buffers, counters."""

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fgclip_ros.core.sync import StampSync

MS = 1_000_000


def test_exact_pairing_in_either_arrival_order():
    sync = StampSync()
    assert sync.add_image(100, "img100") is None
    pair = sync.add_detections(100, "det100")
    assert (pair.image, pair.detections) == ("img100", "det100")
    assert sync.add_detections(200, "det200") is None
    pair = sync.add_image(200, "img200")
    assert (pair.image_stamp_ns, pair.detections_stamp_ns) == (200, 200)
    assert sync.pending() == {"image": 0, "detections": 0}
    assert sync.counters.paired == 2


def test_exact_mode_does_not_pair_different_stamps():
    sync = StampSync(tolerance_ns=0)
    sync.add_image(100, "a")
    assert sync.add_detections(101, "d") is None
    assert sync.pending() == {"image": 1, "detections": 1}


def test_tolerance_picks_the_closest_image():
    sync = StampSync(tolerance_ns=10 * MS)
    for stamp in (0, 33 * MS, 66 * MS):
        sync.add_image(stamp, stamp)
    pair = sync.add_detections(36 * MS, "det")
    assert pair.image == 33 * MS
    assert sync.add_detections(90 * MS, "too far") is None


def test_skipped_camera_frames_count_as_unmatched_images():
    # A detector that runs at a third of the camera rate: two of three images never pair.
    sync = StampSync(image_buffer=20)
    pairs = []
    for frame in range(9):
        sync.add_image(frame, f"img{frame}")
        if frame % 3 == 2:
            pairs.append(sync.add_detections(frame, f"det{frame}"))
    assert [p.image for p in pairs] == ["img2", "img5", "img8"]
    assert sync.counters.unmatched["image"] == 6
    assert sync.pending()["image"] == 0


def test_detections_without_image_are_counted_when_a_later_pair_forms():
    sync = StampSync()
    sync.add_detections(10, "orphan")
    sync.add_image(20, "img")
    assert sync.add_detections(20, "det").image == "img"
    assert sync.counters.unmatched["detections"] == 1
    assert sync.pending()["detections"] == 0


def test_full_buffers_drop_the_oldest():
    sync = StampSync(image_buffer=3, detections_buffer=2)
    for stamp in range(5):
        sync.add_image(stamp, stamp)
    for stamp in range(100, 104):
        sync.add_detections(stamp, stamp)
    assert sync.counters.overflow == {"image": 2, "detections": 2}
    assert sync.pending() == {"image": 3, "detections": 2}
    # the newest images survived
    assert sync.add_detections(4, "d").image == 4
    assert sync.add_detections(1, "d") is None


def test_backwards_time_jump_clears_buffers():
    sync = StampSync(jump_reset_ns=1000)
    sync.add_image(50_000, "old")
    sync.add_detections(60_000, "old det")
    sync.add_image(10, "after reset")
    assert sync.counters.time_jumps == 1
    assert sync.add_detections(10, "det").image == "after reset"


def test_counters_snapshot_is_flat():
    sync = StampSync()
    sync.add_image(1, "a")
    snap = sync.counters.snapshot()
    assert snap["image_received"] == 1 and snap["detections_received"] == 0 and snap["paired"] == 0


def test_invalid_arguments():
    with pytest.raises(ValueError):
        StampSync(tolerance_ns=-1)
    with pytest.raises(ValueError):
        StampSync(image_buffer=0)


def test_concurrent_producers_pair_every_frame():
    sync = StampSync(image_buffer=1000, detections_buffer=1000)
    results = []
    lock = threading.Lock()

    def produce(add):
        for stamp in range(500):
            pair = add(stamp, stamp)
            if pair is not None:
                with lock:
                    results.append(pair)

    threads = [threading.Thread(target=produce, args=(f,)) for f in (sync.add_image, sync.add_detections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(p.image == p.detections for p in results)
    assert sync.counters.paired == len(results)
    assert sync.counters.paired + sync.counters.unmatched["image"] + sync.pending()["image"] == 500


# ----------------------------------------------------------------------------- time jumps
S = 1_000_000_000


def camera_stamps(frames: int, period_ms: int = 33) -> list[int]:
    return [100 * S + k * period_ms * MS for k in range(frames)]


def replay_twice(stamps: list[int], lag: int, detections_first: bool = False):
    """A bag played twice: per frame an image and its detections, one side `lag` frames behind."""
    stamps = list(stamps) * 2
    leader = [("detections" if detections_first else "image", s) for s in stamps]
    follower = [("image" if detections_first else "detections", s) for s in stamps]
    order = []
    for index, message in enumerate(leader):
        order.append(message)
        if index >= lag:
            order.append(follower[index - lag])
    order += follower[len(follower) - lag :]
    return order


def play(sync: StampSync, order):
    pairs = []
    for side, stamp in order:
        add = sync.add_image if side == "image" else sync.add_detections
        pair = add(stamp, (side, stamp))
        if pair is not None:
            assert pair.image_stamp_ns == pair.detections_stamp_ns
            pairs.append(pair.image_stamp_ns)
    return pairs


@pytest.mark.parametrize("detections_first", [False, True])
@pytest.mark.parametrize("lag", [0, 1, 3])
def test_a_bag_replayed_twice_is_one_jump_and_the_replay_pairs(lag, detections_first):
    sync = StampSync(image_buffer=10, detections_buffer=10)
    stamps = camera_stamps(24, period_ms=100)  # 2.4 s: the restart jumps back past the 1 s threshold
    pairs = play(sync, replay_twice(stamps, lag, detections_first))
    assert sync.counters.time_jumps == 1
    # Every frame of the second play pairs (the first play may lose the `lag` frames cut by the restart).
    assert pairs[-24:] == stamps
    assert len(pairs) >= 48 - lag


@pytest.mark.parametrize("detections_first", [False, True])
def test_one_far_future_stamp_does_not_stall_pairing(detections_first):
    sync = StampSync()
    first_side = "detections" if detections_first else "image"
    play(sync, [("image", (2**31 - 1) * S)])  # a hostile sender's image
    order = []
    for stamp in camera_stamps(20):
        second_side = "image" if first_side == "detections" else "detections"
        order += [(first_side, stamp), (second_side, stamp)]
    assert len(play(sync, order)) == 20
    assert sync.counters.time_jumps == 1


def test_one_stamp_far_in_the_past_costs_one_jump():
    sync = StampSync()
    order = []
    for k, stamp in enumerate(camera_stamps(20)):
        order += [("detections", stamp), ("image", stamp)]
        if k == 5:
            order.append(("detections", 0))
    assert len(play(sync, order)) == 20
    assert sync.counters.time_jumps == 1


def accounted(sync: StampSync) -> bool:
    counters, pending = sync.counters, sync.pending()
    return all(
        counters.received[side]
        == counters.paired + counters.unmatched[side] + counters.overflow[side] + pending[side]
        for side in ("image", "detections")
    )


hostile_stamps = st.one_of(
    st.integers(0, 2**63 - 1), st.integers(99 * S, 101 * S), st.sampled_from([0, (2**31 - 1) * S])
)


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.lists(st.tuples(st.sampled_from(["image", "detections"]), hostile_stamps), max_size=40),
    base=st.integers(1, 2**40).map(lambda k: k * 2 * MS),
    order=st.lists(st.booleans(), min_size=10, max_size=30),
    buffers=st.integers(1, 10),
)
def test_any_prefix_then_a_clean_stream_pairs_every_clean_frame(prefix, base, order, buffers):
    sync = StampSync(image_buffer=buffers, detections_buffer=buffers)
    # Hostile stamps are odd (never equal to a clean one), clean frames 33 ms apart, arriving in lockstep.
    play_prefix = [(side, stamp | 1) for side, stamp in prefix]
    for side, stamp in play_prefix:
        (sync.add_image if side == "image" else sync.add_detections)(stamp, (side, stamp))
        assert accounted(sync)
    jumps_before = sync.counters.time_jumps
    clean = []
    for k, image_first in enumerate(order):
        stamp = base + k * 33 * MS
        sides = ("image", "detections") if image_first else ("detections", "image")
        clean += [(sides[0], stamp), (sides[1], stamp)]
    assert len(play(sync, clean)) == len(order)
    assert sync.counters.time_jumps - jumps_before <= 1
    assert accounted(sync)


@settings(max_examples=200, deadline=None)
@given(
    frames=st.integers(8, 40),
    lag=st.integers(0, 3),
    detections_first=st.booleans(),
    period_ms=st.integers(20, 200),
)
def test_any_replay_counts_one_jump(frames, lag, detections_first, period_ms):
    # The replay must jump back by more than the 1 s reset threshold and be longer than twice the lag.
    frames = max(frames, 1000 // period_ms + 3)
    stamps = camera_stamps(frames, period_ms)
    sync = StampSync(image_buffer=8, detections_buffer=8)
    pairs = play(sync, replay_twice(stamps, lag, detections_first))
    assert sync.counters.time_jumps == 1
    assert pairs[-frames:] == stamps
    assert len(pairs) >= 2 * frames - lag
    assert accounted(sync)
