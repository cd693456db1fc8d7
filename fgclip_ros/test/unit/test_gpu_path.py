# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The GPU fast path (gpu.GpuFrameEncoder): same answers as the CPU pipeline; CUDA graphs, buckets, padding.

The first tests run the same code eagerly on the CPU (the logic: crops, row-band upload, matching);
the CUDA ones (CUDA graphs, pinned uploads, fp16 towers) are skipped without a GPU and run by
scripts/device/gpu_checks.sh on the lent GPU.
"""

import logging

import numpy as np
import pytest
import torch
from conftest import make_tiny_encoder

from fgclip_ros.core.crops import crop_batch_torch
from fgclip_ros.core.gpu.cuda_graphs import BucketGraphs
from fgclip_ros.core.gpu.frame_encoder import DEFAULT_BUCKETS, GpuFrameEncoder
from fgclip_ros.core.gpu.timeline import FrameTimeline
from fgclip_ros.core.pipeline import Pipeline
from fgclip_ros.core.reprojection import Head, ReprojectionHeads
from fgclip_ros.synth.render import render_scene

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# Scores of the GPU path may differ from the CPU pipeline's by at most this much. Two sources:
# roi_align's bilinear box-filtered resampling vs Pillow's antialiased bicubic (measured <= 5.3e-3 on
# the tiny model over 61 boxes of 6 scenes) and the fp16 tower (<= 2e-3 there). 0.02 leaves ~4x.
SCORE_TOLERANCE = 0.02


def linear_heads(seed: int = 3) -> ReprojectionHeads:
    torch.manual_seed(seed)
    return ReprojectionHeads(Head("linear", 32), Head("linear", 32)).eval()


def scene_with_boxes(seed: int):
    """A rendered scene: its objects' boxes plus random boxes (small to large, some partly outside)."""
    scene = render_scene(seed, 320, 240, n_objects=(4, 5))
    rng = np.random.default_rng(seed)
    corner = rng.uniform(-20, 280, (7, 2))
    size = rng.uniform(6, 160, (7, 2))
    boxes = np.concatenate(
        [np.array([o.box for o in scene.objects]), np.concatenate([corner, corner + size], 1)]
    )
    queries = [o.spec.caption() for o in scene.objects] + [
        "a red ball",
        "a green glass bottle",
        "a striped box",
    ]
    return scene.image, boxes, queries


def assert_same_answers(cpu, scores: np.ndarray, best_index: np.ndarray) -> None:
    """Scores within SCORE_TOLERANCE; the best query the same, or a CPU near-tie of the CPU's best."""
    np.testing.assert_allclose(scores, cpu.scores, rtol=0, atol=SCORE_TOLERANCE)
    rows = np.arange(len(best_index))
    same = best_index == cpu.best_index
    near_tie = cpu.scores[rows, best_index] >= cpu.best_score - 2 * SCORE_TOLERANCE
    assert np.all(same | near_tie), f"best queries differ: gpu {best_index}, cpu {cpu.best_index}"


# ------------------------------------------------------------------ CPU (eager) runs of the same code
def test_eager_path_gives_the_cpu_pipelines_answers():
    heads = linear_heads()
    pipeline = Pipeline(make_tiny_encoder(seed=0), heads)
    fast = GpuFrameEncoder(make_tiny_encoder(seed=0), heads)
    for seed in (0, 1):
        image, boxes, queries = scene_with_boxes(seed)
        pipeline.set_queries(queries)
        expected = pipeline.process(image, boxes)
        result, check, _ = fast.process(image, boxes, pipeline.query_bank.embeddings)
        np.testing.assert_array_equal(check.valid, expected.check.valid)
        assert_same_answers(expected.match, result.scores, result.best_index)


def test_only_the_rows_the_boxes_touch_are_uploaded_and_crops_are_unchanged():
    encoder = make_tiny_encoder(seed=0)
    fast = GpuFrameEncoder(encoder)
    rng = np.random.default_rng(4)
    first, image = (rng.integers(0, 256, size=(200, 300, 3), dtype=np.uint8) for _ in range(2))
    fast.crop(first, np.array([[0.0, 0.0, 300.0, 200.0]]))  # the device frame now holds `first`
    assert fast.last_upload_rows == (0, 200)
    boxes = np.array([[10.3, 60.7, 90.2, 100.1], [150.0, 70.5, 299.5, 131.9], [40.0, 80.0, 48.0, 83.0]])
    crops, check = fast.crop(image, boxes)
    # Only rows 59..132 are uploaded (boxes 60.7..131.9 plus one row of margin), the rest keeps
    # `first`, and the crops are still exactly those of the whole new image.
    assert fast.last_upload_rows == (59, 133)
    expected, _ = crop_batch_torch(torch.from_numpy(image), boxes, encoder.preprocess)
    # crop() gives raw 0..255 crops: normalise them as Preprocess does.
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (encoder.preprocess.mean, encoder.preprocess.std))
    torch.testing.assert_close((crops / 255.0 - mean) / std, expected, rtol=0, atol=1e-4)
    assert check.valid.all()


def test_rejected_boxes_get_no_row_and_empty_frames_work():
    fast = GpuFrameEncoder(make_tiny_encoder(seed=0))
    image = np.zeros((50, 60, 3), np.uint8)
    embeddings, check = fast.embed(image, np.array([[5, 5, 30, 30], [10, 10, 10, 20], [100, 100, 120, 130]]))
    assert embeddings.shape == (1, 32) and check.valid.tolist() == [True, False, False]
    assert set(check.reasons) == {1, 2}
    embeddings, check = fast.embed(image, np.zeros((0, 4)))
    assert embeddings.shape == (0, 32) and len(check.valid) == 0
    scores, _ = fast.score(image, np.array([[5, 5, 30, 30]]), torch.zeros((0, 32)))
    assert scores.shape == (1, 0)


def test_timeline_records_where_each_frame_goes():
    # The benchmark's timeline: host marks in the order the frame passes them, one dict per frame.
    fast = GpuFrameEncoder(make_tiny_encoder(seed=0), linear_heads())
    image, boxes, queries = scene_with_boxes(0)
    text = Pipeline(make_tiny_encoder(seed=0), linear_heads()).encode_queries(queries)
    untimed, _, _ = fast.process(image, boxes, text)
    fast.timeline = FrameTimeline("cpu")
    for _ in range(3):
        timed, _, _ = fast.process(image, boxes, text)
    np.testing.assert_array_equal(timed.scores, untimed.scores)
    assert len(fast.timeline.frames) == 3
    order = ["frame copy queued", "boxes checked", "tower queued", "matching queued", "result ready"]
    medians = fast.timeline.medians()
    assert [name.removeprefix("host ") for name in medians] == order
    assert all(value >= 0 for value in medians.values())


def test_frames_may_be_views_such_as_a_bgr_to_rgb_flip():
    fast = GpuFrameEncoder(make_tiny_encoder(seed=0), linear_heads())
    bgr = np.random.default_rng(6).integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    boxes = np.array([[5.0, 5.0, 50.0, 40.0], [20.0, 10.0, 79.0, 59.0]])
    flipped, _ = fast.embed(bgr[..., ::-1], boxes)  # negative strides, as a channel swap makes
    copied, _ = fast.embed(np.ascontiguousarray(bgr[..., ::-1]), boxes)
    torch.testing.assert_close(flipped, copied, rtol=0, atol=0)


def test_batches_run_in_the_smallest_bucket_that_holds_them():
    graphs = BucketGraphs(lambda x: x, lambda bucket: (torch.zeros(bucket),), [8, 1, 2, 4, 4], "cpu")
    assert graphs.buckets == (1, 2, 4, 8)
    assert [graphs.bucket_for(n) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, None]
    with pytest.raises(ValueError, match="positive"):
        BucketGraphs(lambda x: x, lambda bucket: (torch.zeros(bucket),), [0, 2], "cpu")


# ------------------------------------------------------------------ CUDA
@cuda
def test_bucket_graphs_replay_what_the_static_inputs_hold():
    buffer = torch.zeros(8, device="cuda")
    graphs = BucketGraphs(lambda x: x * 2 + 1, lambda bucket: (buffer[:bucket],), (2, 8), "cuda")
    graphs.capture()
    assert graphs.captured == 2
    values = torch.randn(8, device="cuda")
    buffer.copy_(values)
    torch.testing.assert_close(graphs.replay(8), values * 2 + 1)
    torch.testing.assert_close(graphs.replay(2), values[:2] * 2 + 1)
    with pytest.raises(RuntimeError, match="captured already"):
        graphs.capture()


@pytest.fixture(scope="module")
def cuda_fast():
    """fp16 tiny model on the GPU with CUDA graphs captured for every bucket, for 320x240 frames."""
    encoder = make_tiny_encoder(seed=0, device="cuda", dtype="fp16")
    return GpuFrameEncoder(encoder, linear_heads().to("cuda"), frame_size=(320, 240))


@cuda
def test_cuda_path_gives_the_cpu_pipelines_answers(cuda_fast):
    heads = linear_heads()
    cpu = Pipeline(make_tiny_encoder(seed=0), heads)
    for seed in (0, 1, 2):
        image, boxes, queries = scene_with_boxes(seed)
        cpu.set_queries(queries)
        expected = cpu.process(image, boxes)
        result, check, _ = cuda_fast.process(image, boxes, cpu.query_bank.embeddings.to("cuda"))
        np.testing.assert_array_equal(check.valid, expected.check.valid)
        assert_same_answers(expected.match, result.scores, result.best_index)


@cuda
@pytest.mark.parametrize("count", [1, 3, 8, 13, 16, 33, 64])
def test_cuda_graph_replay_equals_eager(cuda_fast, count):
    rng = np.random.default_rng(count)
    image = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    corner = rng.uniform(0, 200, (count, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(8, 110, (count, 2))], 1)
    graph, _ = cuda_fast.embed(image, boxes)  # crops, tower, heads: one replay
    assert cuda_fast.last_bucket == min(b for b in DEFAULT_BUCKETS if b >= count)
    crops, _ = cuda_fast.crop(image, boxes)
    with torch.no_grad():
        eager = cuda_fast.run_tower(crops)
    # Padding changes the batch shape the kernels see, so fp16 rounding may differ in the last bit.
    torch.testing.assert_close(graph, eager, rtol=0, atol=2e-3)
    assert (graph * eager).sum(1).min() >= 1 - 1e-5


@cuda
def test_padding_rows_do_not_leak_into_results(cuda_fast):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 100, 100], [50, 60, 200, 220], [120, 10, 310, 90], [5, 150, 90, 239]], float)
    alone, _ = cuda_fast.embed(image, boxes[:3])  # bucket 4, one padding row
    assert cuda_fast.last_bucket == 4
    cuda_fast.embed(255 - image, boxes)  # fills all 4 rows with other crops
    again, _ = cuda_fast.embed(image, boxes[:3])  # padding row now holds stale data
    torch.testing.assert_close(again, alone, rtol=0, atol=0)


@cuda
def test_graphs_are_captured_once_and_large_batches_run_eagerly(cuda_fast):
    captured = cuda_fast.captures
    assert captured == len(DEFAULT_BUCKETS)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    for count in (1, 2, 5, 64, 65, 100):
        corner = rng.uniform(0, 200, (count, 2))
        embeddings, _ = cuda_fast.embed(image, np.concatenate([corner, corner + 30.0], 1))
        assert embeddings.shape == (count, 32)
        assert torch.isfinite(embeddings).all()
        assert cuda_fast.last_bucket == (
            None if count > max(DEFAULT_BUCKETS) else cuda_fast.bucket_for(count)
        )
    assert cuda_fast.captures == captured  # nothing recaptured at run time


@cuda
def test_back_to_back_frames_reuse_the_pinned_buffers_safely(cuda_fast):
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8) for _ in range(3)]
    boxes = np.array([[0, 0, 160, 120], [100, 80, 320, 240]], float)
    separate = []
    for frame in frames:
        embeddings, _ = cuda_fast.embed(frame, boxes)
        torch.cuda.synchronize()
        separate.append(embeddings)
    queued = [cuda_fast.embed(frame, boxes)[0] for frame in frames]  # no sync between frames
    for one, other in zip(separate, queued, strict=True):
        torch.testing.assert_close(other, one, rtol=0, atol=0)


@cuda
def test_timeline_puts_host_and_gpu_marks_on_one_clock(cuda_fast):
    image, boxes, queries = scene_with_boxes(1)
    text = torch.nn.functional.normalize(torch.randn(len(queries), 32, device="cuda"), dim=-1)
    cuda_fast.timeline = FrameTimeline("cuda")
    try:
        for _ in range(5):
            cuda_fast.process(image, boxes, text)
        marks = cuda_fast.timeline.frames[-1]
    finally:
        cuda_fast.timeline = None
    gpu = ["gpu frame copy queued", "gpu tower queued", "gpu matching queued"]
    assert [marks[name] for name in gpu] == sorted(marks[name] for name in gpu)
    # The GPU finishes the frame before the host's sync returns, and the host queues before the GPU runs.
    assert marks["gpu matching queued"] <= marks["host synced"] + 0.05
    assert marks["host boxes checked"] <= marks["host tower queued"] <= marks["host synced"]


@cuda
def test_a_new_image_size_is_prepared_once_with_a_warning(caplog):
    fast = GpuFrameEncoder(make_tiny_encoder(seed=0, device="cuda", dtype="fp16"), linear_heads().to("cuda"))
    assert fast.captures == 0  # nothing captured before the first frame
    rng = np.random.default_rng(5)
    boxes = np.array([[4.0, 6.0, 90.0, 70.0], [30.0, 20.0, 150.0, 110.0]])
    small = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    large = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    fast.embed(small, boxes)
    fast.embed(small, boxes[:1])
    assert fast.captures == len(DEFAULT_BUCKETS) and fast.frame_hw == (120, 160)
    with caplog.at_level(logging.WARNING, logger="fgclip_ros.gpu"):
        embeddings, _ = fast.embed(large, boxes)
    assert fast.captures == 2 * len(DEFAULT_BUCKETS) and "image size changed" in caplog.text
    crops, _ = fast.crop(large, boxes)
    with torch.no_grad():
        torch.testing.assert_close(embeddings, fast.run_tower(crops), rtol=0, atol=2e-3)
