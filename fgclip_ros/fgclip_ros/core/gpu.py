# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The CUDA fast path: frame + boxes -> projected crop embeddings (and query scores), few launches, one sync.

Per frame, ``GpuFrameEncoder``:

1. uploads the frame once: only the rows the boxes can reach, through a reused pinned
   (page-locked) buffer, in >= 1 MB chunks with non-blocking copies, so the transfer runs while
   the host fills the next chunk and then checks the boxes;
2. checks the boxes (``crops.validate_boxes``), computes the regions open_clip's resize + centre
   crop would keep and uploads them (pinned, non-blocking);
3. cuts and resamples all crops in one ``torchvision.ops.roi_align`` call, the same operation as
   ``crops.crop_batch_torch``;
4. runs normalisation -> image tower (the encoder's dtype, fp16 for speed) -> visual head ->
   L2 norm as one CUDA graph replay: graphs are captured at warm-up for bucketed batch sizes
   (1, 2, 4, ..., 64); a batch is padded up to the next bucket (the padding rows are computed and
   ignored: every op in the tower works per image), larger batches run eagerly; nothing is
   captured after warm-up;
5. ``score``: one matrix product against the cached query matrix, then ONE device-to-host copy
   and the frame's only synchronisation.

On a CPU device the same code runs eagerly (no pinned memory, no graphs), which is what the tests
here use; the numbers only matter on CUDA.
"""

import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fgclip_ros.core.crops import BoxCheck, sample_regions, validate_boxes
from fgclip_ros.core.matcher import MatchResult, match_scores
from fgclip_ros.core.reprojection import ReprojectionHeads

LOG = logging.getLogger("fgclip_ros.gpu")

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# Eager runs before each capture: cuBLAS/cuDNN pick and cache their algorithms and allocate their
# workspaces then, so nothing is allocated or chosen inside the capture.
_WARMUP_RUNS = 3


def _input_dtype(model: nn.Module) -> torch.dtype:
    # The patch embedding (first layer) decides what the image tower consumes.
    conv = getattr(model.visual, "conv1", None)
    if conv is not None and hasattr(conv, "weight"):
        return conv.weight.dtype
    return next(model.visual.parameters()).dtype


def _grow(
    buffer: torch.Tensor | None, numel: int, dtype: torch.dtype, device, pin: bool = False
) -> torch.Tensor:
    """A flat buffer of at least `numel` elements: the old one when big enough, else a new one (x1.5)."""
    if buffer is not None and buffer.numel() >= numel:
        return buffer
    size = max(numel, int((buffer.numel() if buffer is not None else 0) * 1.5))
    if pin:
        return torch.empty(size, dtype=dtype, pin_memory=True)
    return torch.empty(size, dtype=dtype, device=device)


class GpuFrameEncoder:
    """Frame + boxes -> (K, D) projected, L2-normalised embeddings of the valid boxes, on the GPU.

    `encoder` is a ``TorchEncoder`` (its open_clip ``model`` and ``preprocess`` are used; give it
    dtype fp16 for speed); `heads` the manifest's re-projection heads (None: identity). The encoder
    must not be projected (exported graphs run in ONNX Runtime, not here).
    """

    def __init__(
        self,
        encoder,
        heads: ReprojectionHeads | None = None,
        *,
        context_scale: float = 1.0,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        cuda_graphs: bool = True,
        warmup: bool = True,
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
        self.buckets = tuple(sorted(set(int(b) for b in buckets)))
        if not self.buckets or self.buckets[0] < 1:
            raise ValueError(f"buckets must be positive batch sizes, got {buckets}")
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        size = self.preprocess.size
        std = torch.tensor(self.preprocess.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        mean = torch.tensor(self.preprocess.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        # (x / 255 - mean) / std == x * scale - shift, one fused multiply-add on the raw roi_align output.
        self._scale = 1.0 / (255.0 * std)
        self._neg_shift = -mean / std
        self._size = size
        self._pin = self.device.type == "cuda"
        self._host_frame: torch.Tensor | None = None
        self._host_rois: torch.Tensor | None = None
        self._host_scores: torch.Tensor | None = None
        self._dev_frame: torch.Tensor | None = None
        self._dev_rois: torch.Tensor | None = None
        self._float_frame: torch.Tensor | None = None
        # Set when the last frame's host->device copies are done: the pinned buffers are reused.
        self._uploaded = torch.cuda.Event() if self._pin else None
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._static_in: dict[int, torch.Tensor] = {}
        self._static_out: dict[int, torch.Tensor] = {}
        self.captures = 0  # graphs captured so far: warm-up only, never per frame
        self.last_bucket: int | None = None  # batch size the last frame ran at (None: eager)
        if self.cuda_graphs and warmup:
            self.warmup()

    # ------------------------------------------------------------------ the tower
    def run_tower(self, raw_crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float32 roi_align output in 0..255 -> (B, D) float32 projected, normalised."""
        pixels = torch.addcmul(self._neg_shift, raw_crops, self._scale).to(self.input_dtype)
        return self.heads.project_images(self.model.encode_image(pixels))

    def warmup(self) -> None:
        """Capture one CUDA graph per bucket (largest first, all in one memory pool)."""
        if not self.cuda_graphs or self._graphs:
            return
        start = time.perf_counter()
        pool = torch.cuda.graph_pool_handle()
        current = torch.cuda.current_stream(self.device)
        with torch.no_grad():
            for bucket in sorted(self.buckets, reverse=True):
                shape = (bucket, 3, self._size, self._size)
                static_in = torch.zeros(shape, dtype=torch.float32, device=self.device)
                # PyTorch's recipe: warm up on a side stream, then capture (on its own capture stream).
                side = torch.cuda.Stream(self.device)
                side.wait_stream(current)
                with torch.cuda.stream(side):
                    for _ in range(_WARMUP_RUNS):
                        self.run_tower(static_in)
                current.wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    static_out = self.run_tower(static_in)
                self._graphs[bucket] = graph
                self._static_in[bucket], self._static_out[bucket] = static_in, static_out
                self.captures += 1
        torch.cuda.synchronize(self.device)
        LOG.info(
            "captured CUDA graphs for batch sizes %s in %.1f s",
            ", ".join(map(str, self.buckets)),
            time.perf_counter() - start,
        )

    def bucket_for(self, batch: int) -> int | None:
        """The captured batch size a batch of `batch` crops runs at; None: eager (no graph that large)."""
        if not self.cuda_graphs:
            return None
        for bucket in self.buckets:
            if bucket >= batch:
                return bucket
        return None

    def encode_crops(self, raw_crops: torch.Tensor) -> torch.Tensor:
        """(K, 3, S, S) float32 raw crops (0..255) on the device -> (K, D) projected embeddings.

        The returned tensor may be graph memory that the next call overwrites; copy it to keep it.
        """
        count = raw_crops.shape[0]
        bucket = self.bucket_for(count)
        self.last_bucket = bucket
        if bucket is None:
            with torch.no_grad():
                return self.run_tower(raw_crops)
        self._static_in[bucket][:count].copy_(raw_crops)
        self._graphs[bucket].replay()
        return self._static_out[bucket][:count]

    # ------------------------------------------------------------------ crops
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

    def _upload_rows(self, image_rgb: np.ndarray, top: int, bottom: int) -> torch.Tensor:
        """Frame rows [top, bottom) -> (rows, W, 3) uint8 on the device.

        On CUDA through a reused pinned buffer in up to 4 chunks of >= 1 MB: each chunk's
        non-blocking copy to the device runs while the host fills the next one.
        """
        band = image_rgb[top:bottom]
        self._dev_frame = _grow(self._dev_frame, band.size, torch.uint8, self.device)
        device_band = self._dev_frame[: band.size].view(band.shape)
        if not self._pin:
            device_band.copy_(torch.from_numpy(band))
            return device_band
        self._uploaded.synchronize()  # the previous frame's copies may still read the pinned buffer
        self._host_frame = _grow(self._host_frame, band.size, torch.uint8, None, pin=True)
        host_band = self._host_frame[: band.size].view(band.shape)
        host_numpy = host_band.numpy()
        rows = band.shape[0]
        chunks = max(1, min(4, band.nbytes >> 20))
        step = -(-rows // chunks)
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            np.copyto(host_numpy[start:stop], band[start:stop])
            device_band[start:stop].copy_(host_band[start:stop], non_blocking=True)
        return device_band

    def _upload_rois(self, rois: np.ndarray) -> torch.Tensor:
        self._dev_rois = _grow(self._dev_rois, rois.size, torch.float32, self.device)
        device_rois = self._dev_rois[: rois.size].view(rois.shape)
        if not self._pin:
            device_rois.copy_(torch.from_numpy(rois))
            return device_rois
        self._host_rois = _grow(self._host_rois, rois.size, torch.float32, None, pin=True)
        host_rois = self._host_rois[: rois.size].view(rois.shape)
        np.copyto(host_rois.numpy(), rois)
        device_rois.copy_(host_rois, non_blocking=True)
        self._uploaded.record(torch.cuda.current_stream(self.device))
        return device_rois

    def crop(self, image_rgb: np.ndarray, boxes_xyxy) -> tuple[torch.Tensor, BoxCheck]:
        """(K, 3, S, S) float32 raw crops (0..255, not yet normalised) on the device, and the box check."""
        from torchvision.ops import roi_align

        if (
            not isinstance(image_rgb, np.ndarray)
            or image_rgb.ndim != 3
            or image_rgb.shape[2] != 3
            or image_rgb.dtype != np.uint8
        ):
            shape = getattr(image_rgb, "shape", None)
            raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {shape}")
        image_rgb = np.ascontiguousarray(image_rgb)
        height, width = image_rgb.shape[:2]
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        # The frame goes first, so its copy runs while the host checks the boxes.
        top, bottom = self._rows_needed(boxes, height)
        band = self._upload_rows(image_rgb, top, bottom) if bottom > top else None
        check = validate_boxes(boxes, (height, width), self.context_scale)
        count = len(check.boxes)
        if count == 0 or band is None:
            if self._pin:
                self._uploaded.record(torch.cuda.current_stream(self.device))
            empty = torch.zeros((0, 3, self._size, self._size), dtype=torch.float32, device=self.device)
            return empty, check
        rois = np.empty((count, 5), np.float32)
        rois[:, 0] = 0.0  # batch index: one frame
        rois[:, 1:] = sample_regions(check.boxes, self._size)
        rois[:, [2, 4]] -= top
        device_rois = self._upload_rois(rois)
        rows = bottom - top
        self._float_frame = _grow(self._float_frame, 3 * rows * width, torch.float32, self.device)
        planar = self._float_frame[: 3 * rows * width].view(1, 3, rows, width)
        planar.copy_(band.permute(2, 0, 1).unsqueeze(0))  # uint8 HWC -> float32 CHW, one kernel
        # sampling_ratio=0 / aligned=True: exactly crops.crop_batch_torch's resampling.
        crops = roi_align(
            planar,
            device_rois,
            output_size=(self._size, self._size),
            spatial_scale=1.0,
            sampling_ratio=0,
            aligned=True,
        )
        return crops, check

    # ------------------------------------------------------------------ frames
    def embed(self, image_rgb: np.ndarray, boxes_xyxy) -> tuple[torch.Tensor, BoxCheck]:
        """(K, D) float32 projected, L2-normalised embeddings of the valid boxes (on the device), BoxCheck.

        The result is a fresh tensor (safe to keep across frames); nothing is copied to the host.
        """
        crops, check = self.crop(image_rgb, boxes_xyxy)
        if crops.shape[0] == 0:
            return torch.zeros((0, self.embed_dim), dtype=torch.float32, device=self.device), check
        return self.encode_crops(crops).clone(), check

    def score(
        self, image_rgb: np.ndarray, boxes_xyxy, text_embeddings: torch.Tensor
    ) -> tuple[np.ndarray, BoxCheck]:
        """(K, M) float32 cosine scores of the valid boxes against `text_embeddings` (M, D), BoxCheck.

        `text_embeddings` should already live on the device (the query bank's cached matrix);
        the scores are the frame's one device-to-host copy.
        """
        crops, check = self.crop(image_rgb, boxes_xyxy)
        count, queries = crops.shape[0], int(text_embeddings.shape[0])
        if count == 0 or queries == 0:
            return np.zeros((count, queries), np.float32), check
        text = text_embeddings.to(device=self.device, dtype=torch.float32)
        scores = self.encode_crops(crops) @ text.T
        if not self._pin:
            return scores.numpy().copy(), check
        self._host_scores = _grow(self._host_scores, count * queries, torch.float32, None, pin=True)
        host = self._host_scores[: count * queries]
        host.copy_(scores.reshape(-1), non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return host.numpy().reshape(count, queries).copy(), check

    def process(
        self, image_rgb: np.ndarray, boxes_xyxy, text_embeddings: torch.Tensor, min_score: float = 0.0
    ) -> tuple[MatchResult, BoxCheck]:
        """score() + the matcher's reductions (best query, margin, softmax) on the host's copy."""
        scores, check = self.score(image_rgb, boxes_xyxy, text_embeddings)
        return match_scores(scores, self.logit_scale, min_score), check

