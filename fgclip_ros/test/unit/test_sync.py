# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Stamp pairing of images and detections: exact / tolerant matching, bounded buffers, counters."""

import threading

import pytest

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
