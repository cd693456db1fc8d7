# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The one factory for the encoder a deployment runs: the node and every CLI with --backend use it.

``choose_backend`` turns ``backend auto`` into a concrete choice for the device at hand:

- CUDA with ONNX Runtime's TensorRT provider: ONNX Runtime, TensorRT first (fp16 engines, cached
  under ``cache_dir()/tensorrt_engines``), then CUDA, then CPU;
- CUDA without TensorRT: the PyTorch CUDA-graph path (``core.gpu``). Its per-frame graph replay
  measured 1.9 ms for 16 ViT-B/16 crops on an H100 (docs/benchmarks.md); ONNX Runtime's CUDA
  provider has not been measured against it on a GPU yet, so the measured path is the default;
- CPU: ONNX Runtime (about 2x PyTorch on the same model and batch, docs/benchmarks.md), with the
  int8 image graph when ``quantize`` allows it, it passes the accuracy gate for that model and
  measured faster than fp32 at export (``export.quantize``).

``deployed_pipeline`` builds the chosen encoder; when ONNX Runtime runs and the manifest names no
graphs, they are exported once into the user cache (``export.cache``) and reused afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fgclip_ros.core.errors import FgclipError
from fgclip_ros.core.manifest import ModelManifest, load_manifest

LOG = logging.getLogger("fgclip_ros.deploy")

BACKENDS = ("auto", "torch", "onnx")
QUANTIZE_MODES = ("auto", "none", "int8")
# ONNX Runtime intra-op threads per session. Measured on the project's 2-core machine (shared by
# other jobs): 1 thread was faster than 2 (ViT-B/16 batch 4: 834 vs 1002 ms; docs/benchmarks.md):
# the second core serves the node's ROS threads and the crops. 0 = ONNX Runtime's own default.
DEFAULT_INTRA_OP_THREADS = 1
TENSORRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


@dataclass(frozen=True)
class BackendChoice:
    """What runs the towers: ``backend`` torch|onnx, ONNX Runtime ``providers`` in order, and why."""

    backend: str
    providers: tuple[str, ...]
    reason: str


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def choose_backend(backend: str, device: str, providers: list[str] | None = None) -> BackendChoice:
    """The concrete backend for `backend` (auto|torch|onnx) on the resolved `device` (cpu, cuda, cuda:N).

    `providers`: ONNX Runtime's available providers (default: ask onnxruntime).
    """
    if backend not in BACKENDS:
        raise FgclipError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    on_cuda = device.startswith("cuda")
    if backend == "torch":
        return BackendChoice("torch", (), "backend torch")
    available = available_providers() if providers is None else list(providers)
    if backend == "onnx":
        order = (TENSORRT, CUDA, CPU) if on_cuda else (CPU,)
        return BackendChoice("onnx", tuple(p for p in order if p in available or p == CPU), "backend onnx")
    if not on_cuda:
        return BackendChoice("onnx", (CPU,), "auto on the CPU: ONNX Runtime")
    if TENSORRT in available:
        return BackendChoice("onnx", tuple(p for p in (TENSORRT, CUDA, CPU) if p in available or p == CPU),
                             "auto on CUDA with TensorRT: ONNX Runtime's TensorRT provider (fp16 engines)")
    return BackendChoice("torch", (), "auto on CUDA without TensorRT: the PyTorch CUDA-graph path")


def _export_dtype(dtype: str) -> str:
    if dtype not in ("fp32", "fp16"):
        raise FgclipError(f"dtype {dtype}: ONNX Runtime runs fp32 or fp16 graphs; "
                          "use dtype fp32/fp16 or backend torch")
    return dtype


def _onnx_manifest(manifest: ModelManifest, choice: BackendChoice, dtype: str, quantize: str,
                   intra_op_threads: int, progress: bool | None) -> ModelManifest:
    """What ONNX Runtime runs: the given one when it names graphs, else a cached export."""
    from fgclip_ros.export.cache import cached_export
    from fgclip_ros.export.quantize import Int8RefusedError

    if manifest.onnx_image is not None and manifest.onnx_text is not None:
        return manifest  # the manifest decides (an int8 export manifest selects int8)
    on_cpu = choice.providers[0] == CPU
    if quantize == "int8" and not on_cpu:
        raise FgclipError("quantize int8: the int8 graphs are for ONNX Runtime's CPU provider; "
                          "use quantize auto or none on CUDA")
    fp32_or_16 = _export_dtype(dtype)
    if on_cpu and fp32_or_16 == "fp32" and quantize in ("auto", "int8"):
        try:
            int8 = load_manifest(cached_export(manifest, "int8", intra_op_threads=intra_op_threads,
                                               progress=progress))
        except Int8RefusedError as refused:
            if quantize == "int8":
                raise
            LOG.warning("model %s: int8 image graph not used: %s", manifest.name, refused.gate.describe())
        else:
            gate = (int8.export or {}).get("int8_gate", {})
            if quantize == "int8" or float(gate.get("speedup", 0.0)) >= _min_speedup():
                return int8
            LOG.info("model %s: fp32 graphs (the int8 image graph was not faster here: %.2fx at export)",
                     manifest.name, float(gate.get("speedup", 0.0)))
    return load_manifest(cached_export(manifest, fp32_or_16, progress=progress))


def _min_speedup() -> float:
    from fgclip_ros.export.quantize import INT8_MIN_SPEEDUP

    return INT8_MIN_SPEEDUP


@dataclass
class Deployment:
    """The encoder built for a deployment, the manifest its files came from, and the backend choice."""

    encoder: object
    manifest: ModelManifest  # the model's manifest (the source of the name and the heads)
    graphs: ModelManifest | None  # the export manifest ONNX Runtime runs (None: torch)
    choice: BackendChoice

    @property
    def provider(self) -> str:
        return str(self.encoder.provider)


def deployed_encoder(model: ModelManifest | str | Path, backend: str = "auto", device: str = "cpu",
                     dtype: str = "fp32", quantize: str = "auto",
                     intra_op_threads: int = DEFAULT_INTRA_OP_THREADS,
                     progress: bool | None = None) -> Deployment:
    """The encoder `backend` picks for the resolved `device` (module doc); graphs exported as needed."""
    from fgclip_ros.core.encoders import build_encoder

    if quantize not in QUANTIZE_MODES:
        raise FgclipError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {quantize!r}")
    manifest = model if isinstance(model, ModelManifest) else load_manifest(model)
    choice = choose_backend(backend, device)
    if backend == "auto" and manifest.onnx_image is not None:
        choice = BackendChoice("onnx", choose_backend("onnx", device).providers,
                               "auto with a manifest that names exported graphs")
    if choice.backend == "torch":
        encoder = build_encoder(manifest, backend="torch", device=device, dtype=dtype)
        graphs = None
    else:
        graphs = _onnx_manifest(manifest, choice, dtype, quantize, intra_op_threads, progress)
        encoder = build_encoder(graphs, backend="onnx", providers=list(choice.providers),
                                intra_op_threads=intra_op_threads)
        if choice.providers[0] == CPU and intra_op_threads > 0:
            _limit_torch_threads(intra_op_threads)
        variant = (graphs.export or {}).get("dtype")
        if variant:
            encoder.provider = f"{encoder.provider}:{variant}"
    LOG.info("model %s: %s (%s)", manifest.name, encoder.provider, choice.reason)
    return Deployment(encoder, manifest, graphs, choice)


def _limit_torch_threads(threads: int) -> None:
    """Give PyTorch, which only matches the embeddings on this path, the same thread budget as ONNX Runtime.

    Measured (fgsynth, 4 boxes, 64 queries, 2 shared cores): matching took 18-20 ms with PyTorch's
    default two threads waiting at their barrier for a core, 0.4 ms with one.
    """
    import torch

    if torch.get_num_threads() > threads:
        LOG.info("PyTorch threads: %d (as intra_op_threads; it only matches embeddings here)", threads)
        torch.set_num_threads(threads)


def deployed_pipeline(model: ModelManifest | str | Path, backend: str = "auto", device: str = "cpu",
                      dtype: str = "fp32", quantize: str = "auto",
                      intra_op_threads: int = DEFAULT_INTRA_OP_THREADS, context_scale: float = 1.0,
                      progress: bool | None = None):
    """A ``core.pipeline.Pipeline`` on ``deployed_encoder``'s encoder (heads in the graphs, or in torch)."""
    from fgclip_ros.core.pipeline import Pipeline, load_manifest_heads

    manifest = model if isinstance(model, ModelManifest) else load_manifest(model)
    heads = None
    runs_torch = manifest.onnx_image is None and choose_backend(backend, device).backend == "torch"
    if backend == "torch" or runs_torch:
        # Torch encoders never contain the heads: fetch the small heads file before the (large)
        # CLIP weights so a missing or corrupt heads file is reported at once.
        heads = load_manifest_heads(manifest, manifest.embed_dim)
    deployment = deployed_encoder(manifest, backend, device, dtype, quantize, intra_op_threads, progress)
    encoder = deployment.encoder
    if heads is None and not encoder.projected:
        heads = load_manifest_heads(deployment.graphs or manifest, encoder.embed_dim)
    source = deployment.graphs or manifest
    return Pipeline(encoder, heads, name=manifest.name, prompt_template=source.prompt_template,
                    context_scale=context_scale, manifest=source)
