# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""CLIP image/text encoders behind one interface: open_clip in PyTorch, or exported graphs in ONNX Runtime.

Both return the raw (un-normalised) CLIP projection outputs as float32 tensors, like open_clip's
`encode_image` / `encode_text`; re-projection heads and L2 normalisation happen elsewhere unless the
encoder's graphs already contain them (`projected = True`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from fgclip_ros.core.crops import Preprocess
from fgclip_ros.core.errors import FgclipError, ManifestError, ModelFileError

LOG = logging.getLogger("fgclip_ros.encoders")

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
# OpenAI CLIP's trained temperature (exp(logit_scale) clamped at 100); used only when a graph does not say.
DEFAULT_LOGIT_SCALE = 100.0
# ONNX Runtime graph optimisation levels by name (SessionOptions.graph_optimization_level).
ORT_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
# NCHWc only speeds up CNN convolutions, and ORT 1.32's CPU provider segfaults in it on fp16 CLIP exports.
ORT_DISABLED_OPTIMIZERS = ("NchwcTransformer",)


@runtime_checkable
class Encoder(Protocol):
    embed_dim: int
    preprocess: Preprocess
    device: torch.device
    logit_scale: float
    projected: bool
    provider: str

    def encode_images(self, batch: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(N, 3, S, S) normalised pixels -> (N, D) float32."""

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """M texts -> (M, D) float32."""


def _parse_dtype(dtype: str) -> torch.dtype:
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(TORCH_DTYPES)}, got {dtype!r}")
    return TORCH_DTYPES[dtype]


class TorchEncoder:
    """An open_clip model run in PyTorch (inference mode) on cpu/cuda in fp32, fp16 or bf16."""

    projected = False

    def __init__(self, model: torch.nn.Module, tokenizer: Callable, preprocess: Preprocess,
                 device: str | torch.device = "cpu", dtype: str = "fp32"):
        """Wrap `model` (it is moved to `device` and, for fp16/bf16, converted in place)."""
        self.dtype = dtype
        torch_dtype = _parse_dtype(dtype)
        self.device = torch.device(device)
        model = model.to(self.device).eval()
        if torch_dtype != torch.float32 and _parameter_dtype(model.visual) != torch_dtype:
            # Every parameter, LayerNorm included: a model built in fp32 has open_clip's plain LayerNorm,
            # which on CUDA refuses fp16 activations with fp32 weights (convert_weights_to_lp leaves those).
            model.to(dtype=torch_dtype)
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self._input_dtype = _parameter_dtype(model.visual)
        self.embed_dim = int(_embed_dim(model))
        self.logit_scale = float(model.logit_scale.detach().float().exp().reshape(-1)[0])
        self.provider = f"torch:{self.device.type}:{dtype}"

    @classmethod
    def from_open_clip(cls, architecture: str, pretrained: str | None = None,
                       weights: str | Path | None = None, device: str | torch.device = "cpu",
                       dtype: str = "fp32", model_config: str | Path | None = None) -> "TorchEncoder":
        """Build an open_clip model by name; weights from a pretrained tag or a local weight file.

        `model_config`: an open_clip model-config JSON (project-own architectures), registered
        with open_clip under `architecture`. `weights`: safetensors or a weights-only state dict.
        """
        import open_clip

        _parse_dtype(dtype)
        if pretrained and weights:
            raise ManifestError(f"{architecture}: give either a pretrained tag or a weights file, not both")
        preprocess_overrides = register_model_config(architecture, model_config) if model_config else {}
        if open_clip.get_model_config(architecture) is None:
            raise ManifestError(
                f"unknown open_clip architecture {architecture!r}; use one of open_clip.list_models() "
                "or give a model_config JSON")
        if pretrained:
            _check_pretrained_tag(architecture, pretrained)
            if os.environ.get("FGCLIP_ROS_OFFLINE") == "1":
                # Without this the Hugging Face client retries each file for about a minute before failing.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if weights is not None:
            weights = Path(weights)
            _check_weight_file(weights)
        _check_device(device)
        try:
            # open_clip loads a file given as `pretrained` (converting older key layouts) after building.
            model = open_clip.create_model(
                architecture, pretrained=str(weights) if weights is not None else pretrained or None,
                precision=dtype, device=device, force_preprocess_cfg=preprocess_overrides or None)
        except Exception as error:  # noqa: BLE001 - mapped to a user-facing error where we can say why
            text = str(error)
            if weights is not None and ("state_dict" in text or isinstance(error, (KeyError, ValueError))):
                raise ModelFileError(
                    f"weights {weights}: do not match architecture {architecture!r} "
                    f"({_mismatch_detail(error)}); use the weights that belong to it") from error
            if pretrained and "download" in text.lower():
                raise ModelFileError(
                    f"{architecture}: could not download pretrained weights {pretrained!r} "
                    f"({_brief(error)}); check the network or give a local weights file") from error
            raise
        model.eval()
        tokenizer = open_clip.get_tokenizer(architecture)
        return cls(model, tokenizer, Preprocess.from_open_clip(model), device, dtype)

    @torch.inference_mode()
    def encode_images(self, batch: torch.Tensor | np.ndarray) -> torch.Tensor:
        pixels = torch.as_tensor(batch).to(device=self.device, dtype=self._input_dtype)
        if pixels.shape[0] == 0:
            return torch.zeros((0, self.embed_dim), dtype=torch.float32, device=self.device)
        return self.model.encode_image(pixels).float()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros((0, self.embed_dim), dtype=torch.float32, device=self.device)
        tokens = torch.from_numpy(tokenize(self.tokenizer, texts)).to(self.device)
        return self.model.encode_text(tokens).float()


def _parameter_dtype(module: torch.nn.Module) -> torch.dtype:
    # The patch-embedding (first layer) weights decide what the image tower consumes.
    conv = getattr(module, "conv1", None)
    if conv is not None:
        return conv.weight.dtype
    return next(module.parameters()).dtype


def _embed_dim(model) -> int:
    visual = model.visual
    proj = getattr(visual, "proj", None)
    if isinstance(proj, torch.Tensor):
        return proj.shape[-1]
    output_dim = getattr(visual, "output_dim", None)
    if output_dim:
        return output_dim
    with torch.inference_mode():
        tokens = torch.zeros((1, getattr(model, "context_length", 77)), dtype=torch.long,
                             device=next(model.parameters()).device)
        return model.encode_text(tokens).shape[-1]


def _brief(error: BaseException | str, limit: int = 160) -> str:
    """One short line from an exception message, for the one-line user errors."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    if len(text) > limit:
        sentence = text.split(". ")[0]
        text = sentence if len(sentence) <= limit else sentence[:limit - 3] + "..."
    return text


# Architectures this process registered from model-config JSON files (name -> config dict).
_REGISTERED_CONFIGS: dict[str, dict] = {}


def register_model_config(architecture: str, config_path: str | Path) -> dict:
    """Register an open_clip model-config JSON under `architecture`; return its preprocess overrides.

    The JSON is open_clip's model-config format (embed_dim, vision_cfg, text_cfg, ...) plus an
    optional "preprocess_cfg" (e.g. mean/std) that is applied when the model is created.
    """
    import open_clip

    path = Path(config_path)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ModelFileError(f"model config {path}: not found; fix the manifest's model_config") from error
    except (OSError, ValueError) as error:
        raise ModelFileError(f"model config {path}: not valid JSON ({_brief(error)}); fix it") from error
    required = ("embed_dim", "vision_cfg", "text_cfg")
    if not isinstance(config, dict) or not all(key in config for key in required):
        raise ModelFileError(f"model config {path}: needs {', '.join(required)} (open_clip config format)")
    preprocess_overrides = config.pop("preprocess_cfg", None) or {}
    if architecture not in _REGISTERED_CONFIGS and open_clip.get_model_config(architecture) is not None:
        raise ManifestError(
            f"model config {path}: architecture name {architecture!r} is a built-in open_clip model; "
            "give the custom config another name")
    if _REGISTERED_CONFIGS.get(architecture) != config:
        # open_clip registers configs by file stem, so register a copy named after the architecture.
        # It reads the file at once and keeps the entry when the file is gone: no folder is left behind.
        with tempfile.TemporaryDirectory(prefix="fgclip_ros_open_clip_config_") as folder:
            target = Path(folder) / f"{architecture}.json"
            target.write_text(json.dumps(config))
            open_clip.add_model_config(target)
        _REGISTERED_CONFIGS[architecture] = config
    return preprocess_overrides


def _check_pretrained_tag(architecture: str, tag: str) -> None:
    import open_clip

    if not open_clip.get_pretrained_cfg(architecture, tag):
        tags = open_clip.list_pretrained_tags_by_model(architecture)
        raise ManifestError(
            f"{architecture}: unknown pretrained tag {tag!r}; known tags: {', '.join(tags) or 'none'}")


def _check_weight_file(path: Path) -> None:
    """Fail early, naming the file, unless it is a readable safetensors / weights-only state dict.

    Reading it here with weights_only=True also guarantees open_clip's own loader (which reads it
    again) never falls back to unpickling code.
    """
    if not path.is_file():
        raise ModelFileError(f"weights {path}: not found; put the file there or fix the manifest's 'weights'")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state_dict = load_file(str(path), device="cpu")
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
            state_dict = state_dict["state_dict"]
        if not isinstance(state_dict, dict) or not state_dict:
            raise ValueError("no state dict inside")
        if not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
            raise ValueError("entries that are not tensors")
    except Exception as error:  # noqa: BLE001 - safetensors/pickle raise many types for a bad file
        raise ModelFileError(
            f"weights {path}: unreadable or not a weights-only state dict ({_brief(error)}); "
            "re-download or re-export it") from error
    del state_dict


def _check_device(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise FgclipError(f"device {device!r} requested but CUDA is not available here; use device 'cpu'")


def _mismatch_detail(error: BaseException) -> str:
    """The first specific line of torch's load_state_dict report (size mismatch / missing keys)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return _brief(lines[1] if len(lines) > 1 else (lines[0] if lines else type(error).__name__))


def tokenize(tokenizer: Callable, texts: Sequence[str]) -> np.ndarray:
    """Texts -> (M, context_length) int64 token ids, what open_clip's text tower and the text graph take."""
    tokens = tokenizer(list(texts))
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.cpu().numpy()
    return np.ascontiguousarray(tokens, dtype=np.int64)


class OnnxEncoder:
    """Exported image and text graphs run by ONNX Runtime; outputs come back as float32 CPU tensors."""

    def __init__(self, image_onnx: Path, text_onnx: Path, preprocess: Preprocess, tokenizer: Callable,
                 providers: list[str] | None = None, projected: bool = False,
                 logit_scale: float = DEFAULT_LOGIT_SCALE, trt_fp16: bool = True,
                 trt_cache_dir: Path | None = None, device_id: int = 0, intra_op_threads: int = 0,
                 graph_optimization: str = "all"):
        """`providers`: preference order; unavailable ones are skipped (one log line names the one used).

        `intra_op_threads`: ONNX Runtime's thread count per session (0: its default, one per physical
        core); `graph_optimization`: one of ``ORT_OPTIMIZATION_LEVELS``.
        """
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.projected = bool(projected)
        self.logit_scale = float(logit_scale)
        self.device = torch.device("cpu")
        requested = list(providers) if providers else list(DEFAULT_PROVIDERS)
        options = _provider_options(trt_fp16, trt_cache_dir, device_id)
        failed: list[str] = []
        tuning = {"intra_op_threads": intra_op_threads, "graph_optimization": graph_optimization}
        self._image = _create_session(Path(image_onnx), requested, options, "image graph", failed, **tuning)
        self._text = _create_session(Path(text_onnx), requested, options, "text graph", failed, **tuning)
        used = self._image.get_providers()[0]
        text_used = self._text.get_providers()[0]
        self.provider = f"onnxruntime:{used}"
        self._image_input = self._image.get_inputs()[0]
        self._text_input = self._text.get_inputs()[0]
        # Follow the graphs' declared input types (an fp16 export, an int32-token export).
        self._image_dtype = np.float16 if self._image_input.type == "tensor(float16)" else np.float32
        self._text_dtype = np.int32 if self._text_input.type == "tensor(int32)" else np.int64
        self.embed_dim = int(_output_width(self._image, self._text))
        skipped = [name for name in requested if name not in _available_providers()]
        LOG.info("onnxruntime provider in use: %s%s (requested %s%s%s)", used,
                 "" if text_used == used else f" (text graph: {text_used})", ", ".join(requested),
                 f"; not available: {', '.join(skipped)}" if skipped else "",
                 f"; failed to start: {', '.join(dict.fromkeys(failed))}" if failed else "")

    @property
    def session_options(self):
        """The onnxruntime.SessionOptions both graphs run with (thread count, optimisation level)."""
        return self._image.get_session_options()

    def encode_images(self, batch: torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):
            batch = batch.detach().cpu().numpy()
        pixels = np.ascontiguousarray(batch, dtype=self._image_dtype)
        if pixels.shape[0] == 0:
            return torch.zeros((0, self.embed_dim), dtype=torch.float32)
        output = self._image.run(None, {self._image_input.name: pixels})[0]
        return torch.from_numpy(np.asarray(output, dtype=np.float32))

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros((0, self.embed_dim), dtype=torch.float32)
        tokens = tokenize(self.tokenizer, texts).astype(self._text_dtype, copy=False)
        output = self._text.run(None, {self._text_input.name: tokens})[0]
        return torch.from_numpy(np.asarray(output, dtype=np.float32))


def _available_providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


def _provider_options(trt_fp16: bool, trt_cache_dir: Path | None, device_id: int) -> dict[str, dict]:
    from fgclip_ros.core.paths import cache_dir

    engine_dir = Path(trt_cache_dir) if trt_cache_dir else cache_dir() / "tensorrt_engines"
    return {
        "TensorrtExecutionProvider": {
            "device_id": device_id,
            "trt_fp16_enable": bool(trt_fp16),
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(engine_dir),
        },
        "CUDAExecutionProvider": {"device_id": device_id},
    }


def _session_options(intra_op_threads: int, graph_optimization: str, log_severity: int | None):
    """onnxruntime.SessionOptions with a thread count (0: ORT's default) and an optimisation level by name."""
    import onnxruntime

    levels = dict(zip(ORT_OPTIMIZATION_LEVELS, (
        onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
    ), strict=True))
    if graph_optimization not in levels:
        raise ValueError(f"graph_optimization must be one of {', '.join(levels)}, got {graph_optimization!r}")
    threads = int(intra_op_threads)
    if threads < 0:
        raise ValueError(f"intra_op_threads must be >= 0 (0: ONNX Runtime's default), got {intra_op_threads}")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = levels[graph_optimization]
    if threads:
        options.intra_op_num_threads = threads
    if log_severity is not None:
        options.log_severity_level = int(log_severity)
    return options


def onnx_session(path: Path, providers: Sequence[str] | None = None, intra_op_threads: int = 0,
                 graph_optimization: str = "all", log_severity: int | None = None,
                 provider_options: dict[str, dict] | None = None, what: str = "ONNX graph"):
    """The one way an ONNX Runtime InferenceSession is built: on `providers` (default CPU), in that order.

    `intra_op_threads`: threads per session (0: ORT's default); `graph_optimization`: one of
    ``ORT_OPTIMIZATION_LEVELS``; `log_severity`: ORT's log level (None: its default, 3: errors only);
    `provider_options`: per provider name. ``ORT_DISABLED_OPTIMIZERS`` are always left out. A missing or
    unloadable file raises ModelFileError naming `what`; a provider that fails to start raises ORT's error.
    """
    import onnxruntime

    session_options = _session_options(intra_op_threads, graph_optimization, log_severity)
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{what} {path}: not found; export it with fgclip-export or fix the path")
    chain = list(providers or ["CPUExecutionProvider"])
    options = provider_options or {}
    try:
        return onnxruntime.InferenceSession(
            str(path), sess_options=session_options,
            providers=[(name, options.get(name, {})) for name in chain],
            disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS))
    except Exception as error:
        if _looks_like_bad_model(error):
            raise ModelFileError(f"{what} {path}: not a loadable ONNX model ({_brief(error)}); "
                                 "re-export it") from error
        raise


def _create_session(path: Path, requested: list[str], options: dict[str, dict], what: str, failed: list[str],
                    intra_op_threads: int = 0, graph_optimization: str = "all"):
    """A session on the first requested provider that is available and starts; CPU is the floor.

    Providers that are available but fail to start (e.g. missing TensorRT libraries) are appended
    to `failed` and the next one is tried.
    """
    _session_options(intra_op_threads, graph_optimization, None)  # bad options: not a provider failing
    available = _available_providers()
    candidates = [name for name in requested if name in available] or ["CPUExecutionProvider"]
    if "CPUExecutionProvider" not in candidates:
        candidates.append("CPUExecutionProvider")
    if "TensorrtExecutionProvider" in candidates:
        Path(options["TensorrtExecutionProvider"]["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for start in range(len(candidates)):
        chain = candidates[start:]
        try:
            return onnx_session(path, chain, intra_op_threads, graph_optimization,
                                provider_options=options, what=what)
        except ModelFileError:
            raise
        except Exception as error:  # noqa: BLE001 - an EP whose libraries fail to load; try the next
            last_error = error
            failed.append(chain[0])
            LOG.debug("%s: provider %s failed to start: %s", what, chain[0], error)
    raise ModelFileError(f"{what} {path}: no execution provider could run it ({_brief(last_error)})")


def _looks_like_bad_model(error: Exception) -> bool:
    name = type(error).__name__
    return name in ("InvalidProtobuf", "InvalidGraph", "NoSuchFile") or "protobuf" in str(error).lower()


def _output_width(image_session, text_session) -> int:
    for session in (image_session, text_session):
        shape = session.get_outputs()[0].shape
        if shape and isinstance(shape[-1], int):
            return shape[-1]
    raise ModelFileError("ONNX graphs do not declare their embedding width; re-export them")


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """The custom metadata (key -> string) an exporter stored in an ONNX file, without building a session."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


def build_encoder(manifest, backend: str = "torch", device: str = "cpu", dtype: str = "fp32",
                  providers: list[str] | None = None, intra_op_threads: int = 0,
                  graph_optimization: str = "all") -> Encoder:
    """The encoder a manifest describes; every file is resolved (local or cached download) first.

    backend "torch": open_clip architecture + pretrained tag / weights file / model_config.
    backend "onnx": the manifest's `onnx_image` / `onnx_text` file specs (graphs from fgclip-export,
    which store `projected` and `logit_scale` as ONNX metadata; absent `projected` means True);
    `intra_op_threads` / `graph_optimization` are OnnxEncoder's session options (unused by torch).
    """
    from fgclip_ros.core.fetch import resolve_file

    base_dir = Path(manifest.source_path).parent
    name = manifest.name
    model_config = (resolve_file(manifest.model_config, base_dir, f"model config of {name}")
                    if manifest.model_config else None)
    if backend == "torch":
        weights = resolve_file(manifest.weights, base_dir, f"weights of {name}") if manifest.weights else None
        encoder = TorchEncoder.from_open_clip(manifest.architecture, pretrained=manifest.pretrained,
                                              weights=weights, device=device, dtype=dtype,
                                              model_config=model_config)
    elif backend == "onnx":
        encoder = _build_onnx_encoder(manifest, base_dir, model_config, providers, intra_op_threads,
                                      graph_optimization)
    else:
        raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
    if encoder.embed_dim != manifest.embed_dim or encoder.preprocess.size != manifest.input_size:
        raise ManifestError(
            f"manifest {manifest.source_path}: says embed_dim {manifest.embed_dim} / input_size "
            f"{manifest.input_size}, the model has {encoder.embed_dim} / {encoder.preprocess.size}; "
            "fix the manifest")
    return encoder


def _build_onnx_encoder(manifest, base_dir: Path, model_config: Path | None, providers,
                        intra_op_threads: int = 0, graph_optimization: str = "all") -> OnnxEncoder:
    import open_clip

    from fgclip_ros.core.fetch import resolve_file

    image_spec = getattr(manifest, "onnx_image", None)
    text_spec = getattr(manifest, "onnx_text", None)
    if image_spec is None or text_spec is None:
        raise ManifestError(
            f"manifest {manifest.source_path}: backend 'onnx' needs onnx_image and onnx_text files; "
            "export them with fgclip-export or use backend 'torch'")
    image_onnx = resolve_file(image_spec, base_dir, f"ONNX image graph of {manifest.name}")
    text_onnx = resolve_file(text_spec, base_dir, f"ONNX text graph of {manifest.name}")
    preprocess_overrides = register_model_config(manifest.architecture, model_config) if model_config else {}
    metadata = read_onnx_metadata(image_onnx)
    mean, std = _pretrained_mean_std(manifest.architecture, manifest.pretrained)
    preprocess = Preprocess(
        size=int(metadata.get("input_size", manifest.input_size)),
        mean=_floats(metadata.get("mean"), preprocess_overrides.get("mean", mean)),
        std=_floats(metadata.get("std"), preprocess_overrides.get("std", std)))
    if "logit_scale" not in metadata:
        LOG.warning("%s: no logit_scale in its metadata; probabilities use %g", image_onnx,
                    DEFAULT_LOGIT_SCALE)
    projected = metadata.get("projected", "true").strip().lower() in ("1", "true", "yes")
    return OnnxEncoder(image_onnx, text_onnx, preprocess, open_clip.get_tokenizer(manifest.architecture),
                       providers=providers, projected=projected,
                       logit_scale=float(metadata.get("logit_scale", DEFAULT_LOGIT_SCALE)),
                       intra_op_threads=intra_op_threads, graph_optimization=graph_optimization)


def _pretrained_mean_std(architecture: str, pretrained: str | None):
    import open_clip

    cfg = open_clip.get_pretrained_cfg(architecture, pretrained) if pretrained else {}
    return cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), cfg.get("std", open_clip.OPENAI_DATASET_STD)


def _floats(text: str | None, default) -> tuple[float, float, float]:
    values = json.loads(text) if text else default
    return tuple(float(v) for v in values)
