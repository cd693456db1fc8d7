# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""ONNX export of a model's image and text towers with the re-projection heads and L2 norm folded in.

Each exported graph maps its input straight to ready-to-match embeddings:

- image graph: ``pixels`` (B, 3, S, S) float32, normalised as ``crops.Preprocess`` makes them
  -> ``embeddings`` (B, D) float32, visual head applied, L2-normalised;
- text graph: ``tokens`` (B, L) int64 from the model's open_clip tokenizer
  -> ``embeddings`` (B, D) float32, text head applied, L2-normalised.

The batch axis is dynamic. The fp16 variant runs the towers in fp16 (open_clip's ``.half()``) but
keeps float32 inputs and outputs, so callers feed and read the same arrays for both variants; the
heads and the normalisation run in float32 in both, as they do in the PyTorch path. fp16 graphs are
for GPU providers; ONNX Runtime 1.32's CPU provider runs them only with its NCHWc layout pass
disabled (it crashes building the session otherwise), see ``core.encoders.onnx_session``.

Every export is verified against the PyTorch model (float32, heads applied) on a fixed batch run
through ONNX Runtime; an export whose embeddings drift beyond ``TOLERANCES`` is refused (no manifest
is written). A manifest YAML next to the graphs makes the export loadable like any model
(``--model path/to/<name>.yaml --backend onnx``); the graphs also carry their own metadata
(``projected``, ``logit_scale``, ``input_size``, ``mean``, ``std``, ...), which ``OnnxEncoder`` reads.
"""

import copy
import datetime
import importlib.metadata
import json
import logging
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from fgclip_ros.core.crops import Preprocess
from fgclip_ros.core.encoders import onnx_session
from fgclip_ros.core.errors import FgclipError
from fgclip_ros.core.fetch import resolve_file, sha256_of
from fgclip_ros.core.manifest import ModelManifest, load_manifest
from fgclip_ros.core.prompts import prompts
from fgclip_ros.core.reprojection import Head, ReprojectionHeads, project

LOG = logging.getLogger("fgclip_ros.export")
# The checks' ONNX Runtime log level: errors only (it warns about every fp16 node it cannot fold on the CPU).
ORT_QUIET = 3

EXPORT_DTYPES = ("fp32", "fp16")
# 17 is the first opset with LayerNormalization as one op (fused on every provider); ORT >= 1.14
# and TensorRT >= 8.6 run it.
DEFAULT_OPSET = 17
IMAGE_INPUT, TEXT_INPUT, OUTPUT = "pixels", "tokens", "embeddings"
# What the verification runs: these captions (through the manifest's prompt template) and seeded
# random crops, at batch 1 and VERIFY_BATCH so the dynamic batch axis is exercised too.
VERIFY_TEXTS = (
    "a red ceramic mug",
    "a transparent glass bottle",
    "a dark brown wooden table",
    "a striped fabric bag",
    "a blue metal can with white dots",
    "a translucent plastic box",
    "a person",
    "an object",
)
VERIFY_BATCH = 4
VERIFY_SEED = 20260526


@dataclass(frozen=True)
class Tolerance:
    """The largest drift from the PyTorch float32 embeddings an export may show."""

    min_cosine: float
    max_abs_error: float


# Why these thresholds. Both sides are unit vectors, so a crop-vs-query score can move by at most
# ||e - e'|| = sqrt(2 (1 - cos(e, e'))) (Cauchy-Schwarz): min_cosine bounds every score change.
# Measured (ORT 1.32 CPU, fixed batch; ViT-B/16 random weights and the tiny test model):
# - fp32: the same arithmetic in another order: max |err| <= 3e-7, 1 - cos < 1e-9.
# - fp16: 11-bit mantissas (unit roundoff 4.9e-4) through the towers: max |err| <= 6e-4,
#   1 - cos <= 1e-6.
# A broken export (an op with other semantics, a head or the normalisation missing, channels or
# mean/std swapped) typically moves embeddings by 1 - cos >= 1e-3. The gates sit between the two,
# with >= 100x headroom over rounding (trained weights have larger activations than random ones):
# fp32 1 - cos <= 1e-6 (scores move <= 1.4e-3), fp16 1 - cos <= 1e-4 (scores move <= 1.4e-2);
# max |err| <= 1e-4 / 1e-2 per component likewise.
TOLERANCES = {
    "fp32": Tolerance(min_cosine=1.0 - 1e-6, max_abs_error=1e-4),
    "fp16": Tolerance(min_cosine=1.0 - 1e-4, max_abs_error=1e-2),
}


class ExportVerificationError(FgclipError):
    """An exported graph's embeddings differ from the PyTorch model's beyond the tolerance."""


@dataclass
class TowerCheck:
    """How one exported tower compares with PyTorch on the verification batches."""

    tower: str
    batch_sizes: list[int]
    max_abs_error: float
    min_cosine: float
    tolerance: Tolerance

    @property
    def passed(self) -> bool:
        return (
            self.min_cosine >= self.tolerance.min_cosine
            and self.max_abs_error <= self.tolerance.max_abs_error
        )

    def as_dict(self) -> dict:
        return {
            "batch_sizes": list(self.batch_sizes),
            "max_abs_error": float(self.max_abs_error),
            "min_cosine": float(self.min_cosine),
            "passed": self.passed,
            "tolerance": {
                "min_cosine": self.tolerance.min_cosine,
                "max_abs_error": self.tolerance.max_abs_error,
            },
        }


@dataclass
class ExportResult:
    """One exported dtype variant: its graphs, its manifest (None if refused) and the checks."""

    dtype: str
    image_onnx: Path
    text_onnx: Path
    manifest_path: Path | None
    checks: list[TowerCheck] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)


class ProjectedImageTower(nn.Module):
    """pixels -> image tower (in `dtype`) -> visual head (float32) -> L2-normalised embeddings."""

    def __init__(self, clip_model: nn.Module, head: Head, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.clip = clip_model
        self.head = head.float()
        self.dtype = dtype

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        raw = self.clip.encode_image(pixels.to(self.dtype))
        return F.normalize(self.head(raw.float()), dim=-1)


class ProjectedTextTower(nn.Module):
    """token ids -> text tower (in its weights' dtype) -> text head (float32) -> L2-normalised embeddings."""

    def __init__(self, clip_model: nn.Module, head: Head):
        super().__init__()
        self.clip = clip_model
        self.head = head.float()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.clip.encode_text(tokens).float()), dim=-1)


def _tower_model(clip_model: nn.Module, dtype: str) -> nn.Module:
    """A float32 or fp16 copy of the float32 CPU model `clip_model` (which stays untouched)."""
    model = copy.deepcopy(clip_model)
    return model.half() if dtype == "fp16" else model


def _export_graph(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, opset: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, which needs onnxscript
        # (not a dependency here); the TorchScript one exports open_clip's towers exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=[OUTPUT],
            dynamic_axes={input_name: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _write_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Store key/value metadata in the graph itself, so a graph alone says how to feed and read it."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "fgclip_ros.export"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def verification_pixels(preprocess: Preprocess, batch: int, seed: int = VERIFY_SEED) -> np.ndarray:
    """(batch, 3, S, S) float32: seeded random RGB crops normalised with the model's mean/std.

    Smooth colour fields plus pixel noise, so the input covers both the flat regions and the edges
    real crops have (pure noise alone is far from what the tower sees in use).
    """
    rng = np.random.default_rng(seed)
    size = preprocess.size
    coarse = rng.integers(0, 256, size=(batch, 4, 4, 3)).astype(np.float32)
    smooth = F.interpolate(
        torch.from_numpy(coarse).permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=False
    ).numpy()
    noise = rng.normal(0.0, 24.0, size=smooth.shape).astype(np.float32)
    pixels = np.clip(smooth + noise, 0, 255).round() / 255.0
    mean = np.asarray(preprocess.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(preprocess.std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((pixels - mean) / std, dtype=np.float32)


def compare_embeddings(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(max abs error, min row-wise cosine) of two (B, D) embedding arrays."""
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise ExportVerificationError(
            f"exported graph gives shape {candidate.shape}, PyTorch {reference.shape}"
        )
    if not np.isfinite(candidate).all():
        return float("inf"), float("-inf")
    cosine = (reference * candidate).sum(1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1) + 1e-30
    )
    return float(np.abs(reference - candidate).max()), float(cosine.min())


def _check_tower(
    tower: str,
    session,
    input_name: str,
    batches: list[np.ndarray],
    references: list[np.ndarray],
    tolerance: Tolerance,
) -> TowerCheck:
    worst_abs, worst_cos = 0.0, 1.0
    for batch, reference in zip(batches, references, strict=True):
        output = session.run([OUTPUT], {input_name: batch})[0]
        abs_error, cosine = compare_embeddings(reference, output)
        worst_abs, worst_cos = max(worst_abs, abs_error), min(worst_cos, cosine)
    return TowerCheck(tower, [len(b) for b in batches], worst_abs, worst_cos, tolerance)


def _logit_scale(clip_model: nn.Module) -> float:
    scale = getattr(clip_model, "logit_scale", None)
    return float(scale.detach().float().exp().reshape(-1)[0]) if scale is not None else 100.0


def _tokens(tokenizer, texts: list[str]) -> np.ndarray:
    from fgclip_ros.core.encoders import tokenize

    return tokenize(tokenizer, texts)


def export_model(
    clip_model: nn.Module,
    heads: ReprojectionHeads | None,
    tokenizer,
    preprocess: Preprocess,
    out_dir: Path,
    name: str,
    *,
    dtypes=EXPORT_DTYPES,
    opset: int = DEFAULT_OPSET,
    prompt_template: str = "{}",
    providers: list[str] | None = None,
    manifest_fields: dict | None = None,
    provenance: dict | None = None,
    progress: bool | None = None,
) -> list[ExportResult]:
    """Export, verify and (when verified) describe `clip_model` + `heads` in `out_dir`.

    Writes ``<name>-image-<dtype>.onnx``, ``<name>-text-<dtype>.onnx`` and, for each dtype whose
    graphs pass verification, ``<name>-onnx-<dtype>.yaml``. `manifest_fields` are the manifest keys
    that describe the source model (architecture, model_config, ...; input_size and embed_dim are
    filled in), written into each export manifest. Raises ExportVerificationError if any dtype
    fails (after all ran).
    """
    from tqdm import tqdm

    unknown = [d for d in dtypes if d not in EXPORT_DTYPES]
    if unknown or not dtypes:
        raise ValueError(f"dtypes must be drawn from {EXPORT_DTYPES}, got {list(dtypes)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    providers = list(providers or ["CPUExecutionProvider"])
    source = _cpu_float32(clip_model)
    texts = prompts(prompt_template, VERIFY_TEXTS)
    pixel_batches = [
        verification_pixels(preprocess, 1, VERIFY_SEED),
        verification_pixels(preprocess, VERIFY_BATCH, VERIFY_SEED + 1),
    ]
    all_tokens = _tokens(tokenizer, texts)
    token_batches = [all_tokens[:1], all_tokens]
    with torch.inference_mode():
        raw_images = [source.encode_image(torch.from_numpy(b)).float() for b in pixel_batches]
        raw_texts = [source.encode_text(torch.from_numpy(t)).float() for t in token_batches]
        if heads is None:
            heads = ReprojectionHeads.identity(raw_images[0].shape[-1])
        heads = copy.deepcopy(heads).to("cpu").float().eval()
        image_refs = [project(raw, heads, "visual").numpy() for raw in raw_images]
        text_refs = [project(raw, heads, "text").numpy() for raw in raw_texts]
    manifest_fields = {
        "input_size": preprocess.size,
        "embed_dim": int(raw_images[0].shape[-1]),
        **(manifest_fields or {}),
    }
    metadata = {
        "projected": "true",
        "logit_scale": repr(_logit_scale(source)),
        "input_size": str(preprocess.size),
        "mean": json.dumps(list(preprocess.mean)),
        "std": json.dumps(list(preprocess.std)),
        "opset": str(opset),
        "source": name,
        "heads": heads.sides,
    }
    results: list[ExportResult] = []
    steps = tqdm(total=4 * len(dtypes), desc=f"export {name}", unit="step", disable=_tqdm_disable(progress))
    with steps:
        for dtype in dtypes:
            image_path = out_dir / f"{name}-image-{dtype}.onnx"
            text_path = out_dir / f"{name}-text-{dtype}.onnx"
            model = _tower_model(source, dtype)
            torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
            steps.set_postfix_str(f"{dtype} image graph")
            _export_graph(
                ProjectedImageTower(model, copy.deepcopy(heads.visual), torch_dtype),
                torch.from_numpy(verification_pixels(preprocess, 2)),
                image_path,
                IMAGE_INPUT,
                opset,
            )
            steps.update()
            steps.set_postfix_str(f"{dtype} text graph")
            _export_graph(
                ProjectedTextTower(model, copy.deepcopy(heads.text)),
                torch.from_numpy(all_tokens[:2]),
                text_path,
                TEXT_INPUT,
                opset,
            )
            steps.update()
            del model
            for path, tower in ((image_path, "image"), (text_path, "text")):
                _write_metadata(path, {**metadata, "dtype": dtype, "tower": tower})
            steps.set_postfix_str(f"{dtype} verify image")
            tolerance = TOLERANCES[dtype]
            session = onnx_session(image_path, providers, log_severity=ORT_QUIET)
            used = session.get_providers()
            checks = [_check_tower("image", session, IMAGE_INPUT, pixel_batches, image_refs, tolerance)]
            del session
            steps.update()
            steps.set_postfix_str(f"{dtype} verify text")
            session = onnx_session(text_path, providers, log_severity=ORT_QUIET)
            checks.append(_check_tower("text", session, TEXT_INPUT, token_batches, text_refs, tolerance))
            del session
            steps.update()
            result = ExportResult(dtype, image_path, text_path, None, checks, used)
            for check in checks:
                LOG.info(
                    "%s %s %s: max |err| %.3g, min cosine %.9f (%s)",
                    name,
                    dtype,
                    check.tower,
                    check.max_abs_error,
                    check.min_cosine,
                    "ok" if check.passed else "FAILED",
                )
            if result.passed:
                result.manifest_path = _write_export_manifest(
                    result, out_dir, name, opset, prompt_template, manifest_fields, provenance or {}
                )
            else:
                stale = out_dir / f"{name}-onnx-{dtype}.yaml"
                stale.unlink(missing_ok=True)  # never leave a loadable manifest next to refused graphs
            results.append(result)
    failed = [(r, c) for r in results for c in r.checks if not c.passed]
    if failed:
        details = "; ".join(
            f"{r.dtype} {c.tower}: min cosine {c.min_cosine:.9f} (needs >= {c.tolerance.min_cosine}), "
            f"max |err| {c.max_abs_error:.3g} (needs <= {c.tolerance.max_abs_error})"
            for r, c in failed
        )
        raise ExportVerificationError(
            f"{out_dir}: exported graphs of {name} do not reproduce the PyTorch model ({details}); "
            "no manifest was written for them; report this with the model and the torch/onnxruntime versions"
        )
    return results


def _tqdm_disable(progress: bool | None) -> bool | None:
    # None: tqdm decides (off when not a TTY); True forces it on, False off.
    return None if progress is None else not progress


def _cpu_float32(clip_model: nn.Module) -> nn.Module:
    """`clip_model` itself when already float32 on the CPU, else a float32 CPU copy (the caller's stays)."""
    tensors = list(clip_model.parameters()) + list(clip_model.buffers())
    if all(
        t.device.type == "cpu" and (t.dtype == torch.float32 or not t.is_floating_point()) for t in tensors
    ):
        return clip_model.eval()
    return copy.deepcopy(clip_model).to("cpu").float().eval()


def _write_export_manifest(
    result: ExportResult,
    out_dir: Path,
    name: str,
    opset: int,
    prompt_template: str,
    manifest_fields: dict,
    provenance: dict,
) -> Path:
    """The manifest that makes the export loadable (backend onnx); relative paths, checksums, provenance."""
    import onnx
    import onnxruntime

    # The installed distribution's version: a process started in the repository root sees the
    # fgclip_ros/ folder as a namespace package without __init__ (and so without __version__).
    __version__ = importlib.metadata.version("fgclip_ros")

    export_name = f"{name}-onnx-{result.dtype}"
    document = {
        "name": export_name,
        "description": f"{name} exported to ONNX ({result.dtype}, opset {opset}) with the re-projection "
        "heads and L2 normalisation in the graphs",
        **manifest_fields,
        "prompt_template": prompt_template,
        "onnx_image": {"path": result.image_onnx.name, "sha256": sha256_of(result.image_onnx)},
        "onnx_text": {"path": result.text_onnx.name, "sha256": sha256_of(result.text_onnx)},
        "export": {
            "source": provenance,
            "dtype": result.dtype,
            "opset": opset,
            "projected": True,
            "inputs": {
                "image": f"{IMAGE_INPUT} (batch, 3, S, S) float32",
                "text": f"{TEXT_INPUT} (batch, L) int64",
            },
            "output": f"{OUTPUT} (batch, D) float32, L2-normalised",
            "verified_with": {
                "providers": list(result.providers),
                **{check.tower: check.as_dict() for check in result.checks},
            },
            "versions": {
                "fgclip_ros": __version__,
                "torch": str(torch.__version__),
                "onnx": str(onnx.__version__),
                "onnxruntime": str(onnxruntime.__version__),
            },
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    path = out_dir / f"{export_name}.yaml"
    header = (
        f"# Written by fgclip-export: {name} as ONNX graphs ({result.dtype}), heads + L2 norm folded in.\n"
        f"# Load with: --model {path.name} --backend onnx (paths relative to this file; sha256 checked).\n"
    )
    path.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def export_manifest(
    manifest: ModelManifest | str | Path,
    out_dir: Path,
    *,
    dtypes=EXPORT_DTYPES,
    opset: int = DEFAULT_OPSET,
    providers: list[str] | None = None,
    progress: bool | None = None,
) -> list[ExportResult]:
    """Export the model a manifest describes (weights + heads resolved as for the torch backend)."""
    from fgclip_ros.core.encoders import build_encoder
    from fgclip_ros.core.pipeline import load_manifest_heads

    if not isinstance(manifest, ModelManifest):
        manifest = load_manifest(manifest)
    encoder = build_encoder(manifest, backend="torch", device="cpu", dtype="fp32")
    heads = load_manifest_heads(manifest, encoder.embed_dim)
    out_dir = Path(out_dir)
    fields = {
        "architecture": manifest.architecture,
        "input_size": manifest.input_size,
        "embed_dim": manifest.embed_dim,
    }
    if manifest.model_config is not None:
        # Custom architectures need their config for the tokenizer; ship a copy next to the graphs.
        config = resolve_file(manifest.model_config, manifest.base_dir, f"model config of {manifest.name}")
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / config.name
        if target.resolve() != config.resolve():
            shutil.copyfile(config, target)
        fields["model_config"] = {"path": target.name, "sha256": sha256_of(target)}
    return export_model(
        encoder.model,
        heads,
        encoder.tokenizer,
        encoder.preprocess,
        out_dir,
        manifest.name,
        dtypes=dtypes,
        opset=opset,
        prompt_template=manifest.prompt_template,
        providers=providers,
        manifest_fields=fields,
        provenance=_provenance(manifest),
        progress=progress,
    )


def _spec_dict(spec) -> dict | None:
    return None if spec is None else {k: v for k, v in asdict(spec).items() if v is not None}


def _provenance(manifest: ModelManifest) -> dict:
    return {
        "manifest": manifest.name,
        "manifest_path": str(manifest.source_path),
        "architecture": manifest.architecture,
        "pretrained": manifest.pretrained,
        "weights": _spec_dict(manifest.weights),
        "reprojection": {
            "kind": manifest.reprojection_kind,
            "sides": manifest.reprojection_sides,
            "file": _spec_dict(manifest.reprojection),
        },
    }
