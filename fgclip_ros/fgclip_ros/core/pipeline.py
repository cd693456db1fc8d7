# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The whole per-frame path: image + boxes -> crops -> image tower -> heads -> scores against the queries.

``Pipeline.process`` is the one per-frame function (the node, the bag evaluator and the benchmark
reach it through ``perception.PerceptionEngine.process``). On CUDA with a PyTorch encoder it is the
fused ``gpu.GpuFrameEncoder`` path (one upload, crops, CUDA-graph tower and heads, matching on the
device, one device-to-host copy); everywhere else ``crops`` + the encoder (torch or ONNX Runtime)
and the host-side ``matcher.match``.
"""

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from fgclip_ros.core.crops import BoxCheck, crop_batch_cpu, crop_batch_torch
from fgclip_ros.core.fetch import resolve_file
from fgclip_ros.core.manifest import ModelManifest, load_manifest
from fgclip_ros.core.matcher import MatchResult, QueryBank, match
from fgclip_ros.core.reprojection import ReprojectionHeads, load_heads, project

LOG = logging.getLogger("fgclip_ros.pipeline")


@dataclass
class FrameResult:
    """One processed frame. ``match`` has one row per *valid* box, in input order (``check.indices``).

    ``embeddings``: (K, D) projected crop embeddings of the valid boxes, on the encoder's device
    (kept by the engine so the Query service can re-score the frame without the image tower).
    ``timings_ms``: "crop", "encode", "match" stages; on the CUDA fast path one "crop_encode_match"
    (upload, crops, tower, heads, scores, matching and their copy to the host, up to the frame's one
    sync: the stages overlap there, so separate figures would mislead).
    """

    check: BoxCheck
    match: MatchResult
    queries: list[str]
    embeddings: torch.Tensor
    timings_ms: dict[str, float] = field(default_factory=dict)

    def row_of_box(self) -> np.ndarray:
        """(N,) row of ``match`` for each input box, -1 for rejected boxes."""
        rows = np.full(len(self.check.valid), -1, np.int64)
        rows[self.check.valid] = np.arange(int(self.check.valid.sum()))
        return rows


def load_manifest_heads(manifest: ModelManifest, embed_dim: int) -> ReprojectionHeads:
    """The manifest's heads (downloaded/verified as needed); identity when the manifest says so."""
    if manifest.reprojection_kind == "identity":
        return ReprojectionHeads.identity(embed_dim)
    path = resolve_file(manifest.reprojection, manifest.base_dir, f"re-projection heads of {manifest.name}")
    return load_heads(path, manifest.reprojection_kind, embed_dim, sides=manifest.reprojection_sides)


def _as_boxes(boxes) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4), np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) xyxy, got {array.shape}")
    return array


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        raise ValueError(f"image must be an HxWx3 uint8 RGB array, got {type(image).__name__} {shape}")


class Pipeline:
    """Encoder + re-projection heads + crops + query bank.

    Build from a manifest (``Pipeline.from_manifest``) or from parts (tests, training code):
    ``Pipeline(encoder, heads)``. With an encoder whose graphs already contain the heads
    (``encoder.projected``), ``heads`` must be identity (or None).

    ``gpu_fast_path``: None (default) runs frames through ``gpu.GpuFrameEncoder`` on CUDA with a
    PyTorch encoder; False never; True always (on the CPU it runs eagerly: tests of the wiring).
    """

    def __init__(self, encoder, heads: ReprojectionHeads | None = None, *, name: str = "model",
                 prompt_template: str = "{}", context_scale: float = 1.0,
                 manifest: ModelManifest | None = None, gpu_fast_path: bool | None = None):
        heads = heads if heads is not None else ReprojectionHeads.identity(encoder.embed_dim)
        if heads.embed_dim != encoder.embed_dim:
            raise ValueError(
                f"heads are {heads.embed_dim}-d but the encoder gives {encoder.embed_dim}-d embeddings")
        if encoder.projected and heads.sides != "none":
            raise ValueError("the encoder's graphs already apply the heads (projected=True); pass no heads")
        self.encoder = encoder
        self.heads = heads.to(encoder.device).eval()
        self.name = name
        self.manifest = manifest
        self._fast = None
        self.context_scale = context_scale
        self.query_bank = QueryBank(self.encode_queries, template=prompt_template,
                                    embed_dim=encoder.embed_dim)
        self._fast = self._build_fast_path(gpu_fast_path)

    @property
    def context_scale(self) -> float:
        return self._context_scale

    @context_scale.setter
    def context_scale(self, value: float) -> None:
        # The node changes it at run time; the fused path crops with the same value.
        self._context_scale = float(value)
        if self._fast is not None:
            self._fast.context_scale = self._context_scale

    @property
    def fused(self) -> bool:
        """Whether frames run through the fused CUDA path (``gpu.GpuFrameEncoder``)."""
        return self._fast is not None

    def _build_fast_path(self, wanted: bool | None):
        """The GPU fast path (its CUDA graphs are captured here), or None for the crops + encoder path."""
        from fgclip_ros.core.encoders import TorchEncoder

        torch_encoder = isinstance(self.encoder, TorchEncoder)
        if wanted is None:
            wanted = torch_encoder and self.encoder.device.type == "cuda"
        if not wanted:
            return None
        if not torch_encoder:
            raise ValueError(f"gpu_fast_path needs a PyTorch encoder, got {type(self.encoder).__name__}")
        from fgclip_ros.core.gpu.frame_encoder import GpuFrameEncoder

        return GpuFrameEncoder(self.encoder, self.heads, context_scale=self.context_scale)

    @classmethod
    def from_manifest(cls, manifest: ModelManifest | str, backend: str = "torch", device: str = "cpu",
                      dtype: str = "fp32", providers: list[str] | None = None,
                      context_scale: float = 1.0) -> "Pipeline":
        from fgclip_ros.core.encoders import build_encoder  # heavy (open_clip); only when a model is built

        if not isinstance(manifest, ModelManifest):
            manifest = load_manifest(manifest)
        # Torch encoders never contain the heads: fetch the small heads file before the (large)
        # CLIP weights so a missing or corrupt heads file is reported at once.
        heads = load_manifest_heads(manifest, manifest.embed_dim) if backend == "torch" else None
        encoder = build_encoder(manifest, backend=backend, device=device, dtype=dtype, providers=providers)
        if heads is None and not encoder.projected:
            heads = load_manifest_heads(manifest, encoder.embed_dim)
        LOG.info("model %s on %s (heads: %s)", manifest.name, encoder.provider,
                 "in graph" if encoder.projected else f"{manifest.reprojection_kind}/{heads.sides}")
        return cls(encoder, heads, name=manifest.name, prompt_template=manifest.prompt_template,
                   context_scale=context_scale, manifest=manifest)

    # ------------------------------------------------------------------ queries
    @property
    def queries(self) -> list[str]:
        return self.query_bank.queries

    @property
    def logit_scale(self) -> float:
        return float(self.encoder.logit_scale)

    def _project(self, raw: torch.Tensor, side: str) -> torch.Tensor:
        # An exported encoder's graphs already hold the heads.
        return project(raw, None if self.encoder.projected else self.heads, side)

    def encode_queries(self, prompts: list[str]) -> torch.Tensor:
        """(M, D) projected, L2-normalised text embeddings of prompts (template already applied)."""
        with torch.inference_mode():
            return self._project(self.encoder.encode_texts(prompts), "text")

    def set_queries(self, queries: list[str], template: str | None = None) -> None:
        """Replace the queries (and optionally the prompt template); text embeddings are computed now."""
        if template is not None:
            self.query_bank.set_template(template)
        self.query_bank.set_queries(queries)
        self.query_bank.embeddings  # noqa: B018 - encode now, not inside the next frame

    # ------------------------------------------------------------------ frames
    def _sync(self) -> None:
        # Honest stage timings on CUDA need the queued kernels to finish.
        if self.encoder.device.type == "cuda":
            torch.cuda.synchronize(self.encoder.device)

    def _crop(self, image_rgb: np.ndarray, boxes: np.ndarray):
        if self.encoder.device.type == "cuda":
            frame = torch.from_numpy(np.ascontiguousarray(image_rgb))
            image = frame.to(self.encoder.device, non_blocking=True)
            return crop_batch_torch(image, boxes, self.encoder.preprocess, self.context_scale)
        return crop_batch_cpu(image_rgb, boxes, self.encoder.preprocess, self.context_scale)

    def _embed(self, image_rgb, boxes_xyxy, timings: dict[str, float]) -> tuple[torch.Tensor, BoxCheck]:
        _check_image(image_rgb)
        boxes = _as_boxes(boxes_xyxy)
        start = time.perf_counter()
        batch, check = self._crop(image_rgb, boxes)
        self._sync()
        cropped = time.perf_counter()
        if int(check.valid.sum()) == 0:
            embeddings = torch.zeros((0, self.encoder.embed_dim), device=self.encoder.device)
        else:
            with torch.inference_mode():
                embeddings = self._project(self.encoder.encode_images(batch), "visual")
        self._sync()
        timings["crop"] = (cropped - start) * 1e3
        timings["encode"] = (time.perf_counter() - cropped) * 1e3
        return embeddings, check

    def warmup(self) -> None:
        """Run the image tower once on a blank crop: lazy initialisation and kernel choice before frame one.

        The CUDA fast path captures its graphs on the first frame instead: they depend on the image
        size, which only the camera knows.
        """
        size = int(self.encoder.preprocess.size)
        if self._fast is not None:
            with torch.no_grad():
                self._fast.run_tower(torch.zeros((1, 3, size, size), device=self.encoder.device))
            return
        self.embed_crops(np.zeros((size, size, 3), np.uint8), np.array([[0, 0, size, size]], np.float64))

    def prepare_frames(self, width: int, height: int) -> None:
        """Prepare the CUDA fast path for width x height frames now (capture its graphs); else nothing."""
        if self._fast is not None:
            self._fast.prepare(int(height), int(width))

    @property
    def prepared_frame_hw(self) -> tuple[int, int] | None:
        """(height, width) the fused path holds buffers and CUDA graphs for; None: not yet, or not fused."""
        return self._fast.frame_hw if self._fast is not None else None

    def embed_crops(self, image_rgb: np.ndarray, boxes_xyxy) -> tuple[torch.Tensor, BoxCheck]:
        """(K, D) projected, L2-normalised embeddings of the K valid boxes (encoder's device), BoxCheck."""
        if self._fast is not None:
            _check_image(image_rgb)
            return self._fast.embed(image_rgb, _as_boxes(boxes_xyxy))
        return self._embed(image_rgb, boxes_xyxy, {})

    def process(self, image_rgb: np.ndarray, boxes_xyxy, min_score: float = 0.0) -> FrameResult:
        """Score every valid box against the current queries; rejected boxes are reported in ``check``."""
        threshold = float(min_score)
        if self._fast is not None:
            return self._process_fast(image_rgb, boxes_xyxy, threshold)
        timings: dict[str, float] = {}
        embeddings, check = self._embed(image_rgb, boxes_xyxy, timings)
        start = time.perf_counter()
        result = match(embeddings, self.query_bank.embeddings, self.logit_scale, threshold)
        timings["match"] = (time.perf_counter() - start) * 1e3
        return FrameResult(check, result, self.queries, embeddings.detach(), timings)

    def _process_fast(self, image_rgb: np.ndarray, boxes_xyxy, threshold: float) -> FrameResult:
        _check_image(image_rgb)
        boxes = _as_boxes(boxes_xyxy)
        text = self.query_bank.embeddings  # encoded on a query change, not timed as part of the frame
        start = time.perf_counter()
        # Crop, tower, heads and matching in one go; ends with the frame's one sync.
        result, check, embeddings = self._fast.process(image_rgb, boxes, text, threshold)
        timings = {"crop_encode_match": (time.perf_counter() - start) * 1e3}
        return FrameResult(check, result, self.queries, embeddings, timings)
