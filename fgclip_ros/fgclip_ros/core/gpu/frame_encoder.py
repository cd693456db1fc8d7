# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The CUDA fast path: frame + boxes -> projected crop embeddings and query matches, few launches, one sync.

Per frame, ``GpuFrameEncoder``:

1. uploads only the frame rows the boxes can reach into a static device copy of the frame,
   through a reused pinned (page-locked) buffer, in >= 1 MB chunks with non-blocking copies, so
   the transfer runs while the host copies the next chunk and then checks the boxes (rows it
   does not upload keep older pixels that no crop reads);
2. checks the boxes (``crops.validate_boxes``), computes the regions open_clip's resize + centre
   crop would keep (``crops.sample_regions``) and uploads them into a static, bucket-padded ROI
   buffer (pinned, non-blocking);
3. replays ONE CUDA graph that holds everything else: uint8 -> float, all crops cut and resampled
   by one ``torchvision.ops.roi_align`` (the same operation as ``crops.crop_batch_torch``),
   normalisation, the image tower in the encoder's dtype (fp16 for speed), the visual head and the
   L2 norm. Graphs exist per bucketed batch size (1, 2, 4, ..., 64) and are captured for a frame
   size on the first frame of that size (or ahead, with ``prepare``); larger batches run the same
   function eagerly; nothing is captured again while the frame size stays;
4. queues the matrix product against the cached query matrix and the matcher's reductions
   (softmax, best query, margin) behind the graph, so the host issues them while the GPU works,
   then makes ONE device-to-host copy of all of it and the frame's only synchronisation.

On a CPU device the same code runs eagerly (no pinned memory, no graphs), which is what the tests
here use; the numbers only matter on CUDA.
"""

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fgclip_ros.core.crops import BoxCheck, sample_regions, validate_boxes
from fgclip_ros.core.gpu.cuda_graphs import BucketGraphs, checked_buckets
from fgclip_ros.core.gpu.timeline import FrameTimeline
from fgclip_ros.core.matcher import MatchResult, match_on_device, unpack_match
from fgclip_ros.core.reprojection import ReprojectionHeads

LOG = logging.getLogger("fgclip_ros.gpu")

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def _input_dtype(model: nn.Module) -> torch.dtype:
    # The patch embedding (first layer) decides what the image tower consumes.
    conv = getattr(model.visual, "conv1", None)
    if conv is not None and hasattr(conv, "weight"):
        return conv.weight.dtype
    return next(model.visual.parameters()).dtype


class GpuFrameEncoder:
    """Frame + boxes -> (K, D) projected, L2-normalised embeddings of the valid boxes, on the GPU.

    `encoder` is a ``TorchEncoder`` (its open_clip ``model`` and ``preprocess`` are used; give it
    dtype fp16 for speed); `heads` the manifest's re-projection heads (None: identity). The encoder
    must not be projected (exported graphs run in ONNX Runtime, not here). `frame_size` (width,
    height) captures the graphs now instead of on the first frame.
    """

    def __init__(
        self,
        encoder,
        heads: ReprojectionHeads | None = None,
        *,
        context_scale: float = 1.0,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        cuda_graphs: bool = True,
        frame_size: tuple[int, int] | None = None,
    ):
        if getattr(encoder, "projected", False):
            raise ValueError(
                "GpuFrameEncoder runs PyTorch towers; a projected (exported) encoder has no model"
            )
        self.model = encoder.model.eval()
        self.preprocess = encoder.preprocess
        self.device = torch.device(encoder.device)
        self.embed_dim = int(encoder.embed_dim)
        self.logit_scale = float(encoder.logit_scale)
        self.context_scale = float(context_scale)
        heads = heads if heads is not None else ReprojectionHeads.identity(self.embed_dim)
        self.heads = heads.to(self.device).float().eval()
        self.input_dtype = _input_dtype(self.model)
        self.buckets = checked_buckets(buckets)
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        self._size = self.preprocess.size
        std = torch.tensor(self.preprocess.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        mean = torch.tensor(self.preprocess.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        # (x / 255 - mean) / std == x * scale - shift, one fused multiply-add on the raw roi_align output.
        self._scale = 1.0 / (255.0 * std)
        self._neg_shift = -mean / std
        self._pin = self.device.type == "cuda"
        # Static buffers for one frame size (set by prepare): the frame on the device and its pinned
        # host twin, the bucket-padded ROIs on both sides, and the graphs that read them.
        self.frame_hw: tuple[int, int] | None = None
        self._frame: torch.Tensor | None = None
        self._host_frame: torch.Tensor | None = None
        self._rois = torch.zeros((self.buckets[-1], 5), dtype=torch.float32, device=self.device)
        self._host_rois = torch.zeros((self.buckets[-1], 5), dtype=torch.float32, pin_memory=self._pin)
        # Views made once: a torch slice or .numpy() per frame costs microseconds of host time.
        self._host_rois_np = self._host_rois.numpy()
        self._roi_views = {
            rows: (self._rois[:rows], self._host_rois[:rows]) for rows in range(1, self.buckets[-1] + 1)
        }
        self._host_out: torch.Tensor | None = None
        self._graphs: BucketGraphs | None = None
        # Set when the last frame's host->device copies are done: the pinned buffers are reused.
        self._uploaded = torch.cuda.Event() if self._pin else None
        self.captures = 0  # graphs captured so far: once per frame size, never per frame
        self.last_bucket: int | None = None  # batch size the last frame ran at (None: eager)
        self.last_upload_rows = (0, 0)  # frame rows [top, bottom) the last frame copied to the device
        # Set to a FrameTimeline to record where each process() call's time goes (the benchmark does).
        self.timeline: FrameTimeline | None = None
        if frame_size is not None:
            self.prepare(int(frame_size[1]), int(frame_size[0]))

    def _mark(self, name: str, gpu: bool = False) -> None:
        if self.timeline is not None:
            self.timeline.host(name)
            if gpu:
                self.timeline.gpu(name)

    # ------------------------------------------------------------------ what the graphs hold
    def run_tower(self, raw_crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float32 roi_align output in 0..255 -> (B, D) float32 projected, normalised."""
        pixels = torch.addcmul(self._neg_shift, raw_crops, self._scale).to(self.input_dtype)
        return self.heads.project_images(self.model.encode_image(pixels))

    def cut(self, frame: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 frame + (B, 5) ROIs -> (B, 3, S, S) float32 raw crops (0..255)."""
        from torchvision.ops import roi_align

        # uint8 HWC -> contiguous float32 CHW in one kernel (a plain .float() would keep the HWC
        # strides, and roi_align would then make its own contiguous copy).
        planar = frame.permute(2, 0, 1).unsqueeze(0).to(torch.float32, memory_format=torch.contiguous_format)
        # sampling_ratio=0 / aligned=True: exactly crops.crop_batch_torch's resampling.
        size = (self._size, self._size)
        return roi_align(planar, rois, output_size=size, spatial_scale=1.0, sampling_ratio=0, aligned=True)

    def _frame_to_embeddings(self, frame: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return self.run_tower(self.cut(frame, rois))

    # ------------------------------------------------------------------ per frame size
    def prepare(self, height: int, width: int) -> None:
        """Static buffers (and on CUDA the graphs) for frames of this size; a no-op when they exist.

        Runs on the first frame of a new size; a later size change captures again (logged), since a
        graph's roi_align is fixed to one frame shape.
        """
        if self.frame_hw == (height, width):
            return
        if self.frame_hw is not None:
            LOG.warning(
                "image size changed from %dx%d to %dx%d: preparing the GPU path again",
                self.frame_hw[1], self.frame_hw[0], width, height,
            )  # fmt: skip
        # Marked prepared only at the end: a failed capture is tried again (and fails loudly) on the
        # next frame instead of leaving that frame size on the slow eager path.
        self.frame_hw, self._graphs = None, None
        self._frame = torch.zeros((height, width, 3), dtype=torch.uint8, device=self.device)
        self._host_frame = (
            torch.empty((height, width, 3), dtype=torch.uint8, pin_memory=True) if self._pin else None
        )
        self._host_frame_np = self._host_frame.numpy() if self._pin else None
        if not self.cuda_graphs:
            self.frame_hw = (height, width)
            return
        # Capture computes on the static buffers: give every ROI a valid region (the whole frame).
        self._rois.copy_(torch.tensor([0.0, 0.0, 0.0, float(width), float(height)], device=self.device))
        graphs = BucketGraphs(
            self._frame_to_embeddings,
            lambda bucket: (self._frame, self._rois[:bucket]),
            self.buckets,
            self.device,
            what=f"{width}x{height} frames",
        )
        graphs.capture()
        self._graphs = graphs
        self.captures += graphs.captured
        self.frame_hw = (height, width)

    def bucket_for(self, count: int) -> int | None:
        """The captured batch size `count` crops run at; None: eager (no graphs, or more than the largest)."""
        return self._graphs.bucket_for(count) if self._graphs is not None else None

    # ------------------------------------------------------------------ uploads
    def _rows_needed(self, boxes: np.ndarray, height: int) -> tuple[int, int]:
        """Frame rows [top, bottom) any crop of `boxes` can read (before the boxes are checked).

        Each sampling region lies inside its context-scaled box clamped to the image, and bilinear
        sampling (aligned: pixel centres at +0.5) reads at most one row beyond a region, so a 1-row
        margin gives the very same crops as the whole frame.
        """
        ys = boxes[:, [1, 3]]
        ys = ys[np.isfinite(ys).all(axis=1)]
        if not len(ys):
            return 0, 0
        centre = ys.mean(axis=1)
        half = np.abs(ys[:, 1] - ys[:, 0]) * (self.context_scale / 2)
        top = float(np.clip((centre - half).min(), 0, height))
        bottom = float(np.clip((centre + half).max(), 0, height))
        return max(0, math.floor(top) - 1), min(height, math.ceil(bottom) + 1)

    def _upload_rows(self, image_rgb: np.ndarray, top: int, bottom: int) -> None:
        """Frame rows [top, bottom) -> the same rows of the static device frame.

        On CUDA through the pinned twin in up to 4 chunks of >= 1 MB: each chunk's non-blocking
        copy to the device runs while the host fills the next one.
        """
        if not self._pin:
            # ascontiguousarray: torch.from_numpy refuses views with negative strides (BGR -> RGB flips).
            self._frame[top:bottom].copy_(torch.from_numpy(np.ascontiguousarray(image_rgb[top:bottom])))
            return
        host_numpy = self._host_frame_np
        rows = bottom - top
        chunks = max(1, min(4, image_rgb[top:bottom].nbytes >> 20))
        step = -(-rows // chunks)
        for start in range(top, bottom, step):
            stop = min(bottom, start + step)
            np.copyto(host_numpy[start:stop], image_rgb[start:stop])
            self._frame[start:stop].copy_(self._host_frame[start:stop], non_blocking=True)

    def _upload_rois(self, regions: np.ndarray, rows: int) -> torch.Tensor:
        """(K, 4) regions -> the first `rows` >= K rows of the static ROIs (padding: the first region)."""
        if rows > self._rois.shape[0]:  # beyond the largest bucket: eager, its own buffer
            rois = np.zeros((rows, 5), np.float32)
            rois[:, 1:] = regions
            return torch.from_numpy(rois).to(self.device, non_blocking=False)
        host = self._host_rois_np
        count = len(regions)
        host[:rows, 0] = 0.0  # batch index: one frame
        host[:count, 1:] = regions
        host[count:rows, 1:] = regions[0]  # padding rows: a real region, computed and ignored
        device_rois, host_rois = self._roi_views[rows]
        device_rois.copy_(host_rois, non_blocking=self._pin)
        return device_rois

    def _stage(self, image_rgb: np.ndarray, boxes_xyxy) -> tuple[torch.Tensor | None, BoxCheck]:
        """Upload the frame rows and the ROIs of the valid boxes: (ROIs on the device or None, BoxCheck)."""
        if (
            not isinstance(image_rgb, np.ndarray)
            or image_rgb.ndim != 3
            or image_rgb.shape[2] != 3
            or image_rgb.dtype != np.uint8
        ):
            shape = getattr(image_rgb, "shape", None)
            raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {shape}")
        height, width = image_rgb.shape[:2]
        self.prepare(height, width)
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        if self._pin:
            self._uploaded.synchronize()  # the previous frame's copies may still read the pinned buffers
        # The frame goes first, so its copy runs while the host checks the boxes.
        top, bottom = self._rows_needed(boxes, height)
        self.last_upload_rows = (top, bottom) if bottom > top else (0, 0)
        if bottom > top:
            self._upload_rows(image_rgb, top, bottom)
        self._mark("frame copy queued", gpu=True)
        check = validate_boxes(boxes, (height, width), self.context_scale)
        count = len(check.boxes)
        rois, self.last_bucket = None, None
        if count:
            bucket = self.bucket_for(count)
            self.last_bucket = bucket
            rois = self._upload_rois(sample_regions(check.boxes, self._size), bucket or count)
        if self._pin:
            self._uploaded.record(torch.cuda.current_stream(self.device))
        self._mark("boxes checked")
        return rois, check

    # ------------------------------------------------------------------ frames
    def crop(self, image_rgb: np.ndarray, boxes_xyxy) -> tuple[torch.Tensor, BoxCheck]:
        """(K, 3, S, S) float32 raw crops (0..255, not yet normalised) on the device, and the box check."""
        rois, check = self._stage(image_rgb, boxes_xyxy)
        if rois is None:
            return torch.zeros((0, 3, self._size, self._size), dtype=torch.float32, device=self.device), check
        return self.cut(self._frame, rois)[: len(check.boxes)], check

    def _embeddings(self, image_rgb: np.ndarray, boxes_xyxy) -> tuple[torch.Tensor | None, BoxCheck]:
        """(K, D) embeddings on the device (graph memory when a graph ran; None when K is 0), BoxCheck."""
        rois, check = self._stage(image_rgb, boxes_xyxy)
        if rois is None:
            return None, check
        count = len(check.boxes)
        if self.last_bucket is not None:
            embeddings = self._graphs.replay(self.last_bucket)[:count]
        else:
            with torch.no_grad():
                embeddings = self._frame_to_embeddings(self._frame, rois)[:count]
        self._mark("tower queued", gpu=True)
        return embeddings, check

    def embed(self, image_rgb: np.ndarray, boxes_xyxy) -> tuple[torch.Tensor, BoxCheck]:
        """(K, D) float32 projected, L2-normalised embeddings of the valid boxes (on the device), BoxCheck.

        The result is a fresh tensor (safe to keep across frames); nothing is copied to the host.
        """
        embeddings, check = self._embeddings(image_rgb, boxes_xyxy)
        if embeddings is None:
            return torch.zeros((0, self.embed_dim), dtype=torch.float32, device=self.device), check
        return embeddings.clone(), check

    def copy_to_host(self, values: torch.Tensor) -> np.ndarray:
        """The frame's one device-to-host copy (through a reused pinned buffer) and its only sync."""
        if not self._pin:
            return values.numpy().copy()
        numel = values.numel()
        if self._host_out is None or self._host_out.numel() < numel:
            self._host_out = torch.empty(max(numel, 4096), dtype=torch.float32, pin_memory=True)
        host = self._host_out[:numel]
        host.copy_(values.reshape(-1), non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        self._mark("synced")
        # A copy: the pinned buffer is overwritten by the next frame.
        return host.numpy().reshape(values.shape).copy()

    def _scores(self, image_rgb, boxes_xyxy, text_embeddings) -> tuple[torch.Tensor | None, BoxCheck]:
        """(K, M) scores on the device (None when K or M is 0) and the box check; nothing synchronised."""
        embeddings, check = self._embeddings(image_rgb, boxes_xyxy)
        if embeddings is None or int(text_embeddings.shape[0]) == 0:
            return None, check
        text = text_embeddings.to(device=self.device, dtype=torch.float32)
        return embeddings @ text.T, check

    def score(
        self, image_rgb: np.ndarray, boxes_xyxy, text_embeddings: torch.Tensor
    ) -> tuple[np.ndarray, BoxCheck]:
        """(K, M) float32 cosine scores of the valid boxes against `text_embeddings` (M, D), BoxCheck.

        `text_embeddings` should already live on the device (the query bank's cached matrix).
        """
        scores, check = self._scores(image_rgb, boxes_xyxy, text_embeddings)
        if scores is None:
            return np.zeros((len(check.boxes), int(text_embeddings.shape[0])), np.float32), check
        return self.copy_to_host(scores), check

    def process(
        self, image_rgb: np.ndarray, boxes_xyxy, text_embeddings: torch.Tensor, min_score: float = 0.0
    ) -> tuple[MatchResult, BoxCheck, torch.Tensor]:
        """Scores plus the matcher's reductions (best query, margin, softmax), all on the device.

        The reductions are queued behind the graph, so they cost the host nothing while the GPU
        works; scores and reductions come back packed in the frame's one device-to-host copy.
        Also returns the (K, D) crop embeddings, a fresh device tensor (kept for re-scoring).
        """
        if self.timeline is not None:
            self.timeline.start()
        embeddings, check = self._embeddings(image_rgb, boxes_xyxy)
        queries = int(text_embeddings.shape[0])
        if embeddings is None:
            empty = torch.zeros((0, self.embed_dim), dtype=torch.float32, device=self.device)
            return MatchResult.empty(len(check.boxes), queries), check, empty
        embeddings = embeddings.clone()  # graph memory is reused by the next frame
        if queries == 0:
            return MatchResult.empty(len(check.boxes), queries), check, embeddings
        scores = embeddings @ text_embeddings.to(device=self.device, dtype=torch.float32).T
        packed = match_on_device(scores, self.logit_scale, min_score)
        self._mark("matching queued", gpu=True)
        result = unpack_match(self.copy_to_host(packed), queries)
        if self.timeline is not None:
            self.timeline.host("result ready")
            self.timeline.finish()
        return result, check, embeddings
