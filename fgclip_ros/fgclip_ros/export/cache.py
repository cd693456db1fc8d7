# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Exported graphs on first use: one export per model into the user cache, shared by every process.

``cached_export(manifest, dtype)`` returns the manifest of the model's exported graphs in
``cache_dir()/exports/<name>-<key>/``, exporting them first when they are not there. The key is
the sha256 of every input file (weights, model config, heads), the manifest fields the graphs
depend on, the opset and the exporter/runtime versions; the dtype names the variant inside the
folder. A changed input file therefore gets a new folder and a new export. The export is
verified against PyTorch (``export.onnx.export_model``) before its manifest is written, and the
manifest's sha256 entries are checked again whenever the graphs are loaded. A file lock per
folder makes a second process wait for the first one's export and then reuse it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import time
from pathlib import Path

from fgclip_ros.core.errors import FgclipError, ManifestError, ModelFileError
from fgclip_ros.core.fetch import resolve_file, sha256_of
from fgclip_ros.core.manifest import ModelManifest, load_manifest
from fgclip_ros.core.paths import cache_dir

LOG = logging.getLogger("fgclip_ros.export.cache")

CACHE_DTYPES = ("fp32", "fp16", "int8")
# Bumped when the export itself changes in a way the versions below do not show.
EXPORT_FORMAT = 1
# How long a process waits for another one's export before it gives up (a ViT-B/16 export with
# the int8 variant takes 1-3 minutes on a loaded 2-core machine).
LOCK_TIMEOUT_S = 1800.0


class ExportFailedError(FgclipError):
    """Exporting a model's graphs for the chosen backend failed; the message names the model and the fix."""


def exports_dir() -> Path:
    return cache_dir() / "exports"


def _input_files(manifest: ModelManifest) -> dict[str, Path]:
    files = {}
    for role, spec, what in (
        ("weights", manifest.weights, "weights"),
        ("model_config", manifest.model_config, "model config"),
        ("reprojection", manifest.reprojection, "re-projection heads"),
    ):
        if spec is not None:
            files[role] = resolve_file(spec, manifest.base_dir, f"{what} of {manifest.name}")
    return files


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import open_clip
    import torch

    # The installed distribution's version: a process started in the repository root sees the
    # fgclip_ros/ folder as a namespace package without __init__ (and so without __version__).
    __version__ = importlib.metadata.version("fgclip_ros")

    return {
        "fgclip_ros": __version__,
        "export_format": str(EXPORT_FORMAT),
        "torch": str(torch.__version__),
        "onnx": str(onnx.__version__),
        "onnxruntime": str(onnxruntime.__version__),
        "open_clip": str(open_clip.__version__),
    }


def export_key(manifest: ModelManifest, opset: int) -> str:
    """sha256 (hex) of what the graphs are made from: input files, model fields, opset, versions."""
    document = {
        "model": {
            "architecture": manifest.architecture,
            "pretrained": manifest.pretrained,
            "input_size": manifest.input_size,
            "embed_dim": manifest.embed_dim,
            "prompt_template": manifest.prompt_template,
            "reprojection": [manifest.reprojection_kind, manifest.reprojection_sides],
        },
        "files": {role: sha256_of(path) for role, path in _input_files(manifest).items()},
        "opset": int(opset),
        "versions": _versions(),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def export_folder(manifest: ModelManifest, opset: int) -> Path:
    return exports_dir() / f"{manifest.name}-{export_key(manifest, opset)[:16]}"


def variant_manifest_path(folder: Path, name: str, dtype: str) -> Path:
    return folder / f"{name}-onnx-{dtype}.yaml"


def _fix(name: str, dtype: str) -> str:
    source = "fp32" if dtype == "int8" else dtype
    return (f"pre-export it with `fgclip-export --model {name} --dtype {source}` "
            f"and pass the written {name}-onnx-{dtype}.yaml as the model, point FGCLIP_ROS_CACHE at a "
            "writable folder, or use backend torch")


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def cached_export(manifest: ModelManifest | str | Path, dtype: str = "fp32", *, opset: int | None = None,
                  intra_op_threads: int = 1, progress: bool | None = None) -> Path:
    """The manifest (.yaml in the cache) of `manifest`'s exported `dtype` graphs; exported here when missing.

    dtype "int8": the fp32 export with its image graph quantised, which must pass
    ``export.quantize``'s accuracy gate (``Int8RefusedError`` otherwise; the refusal is cached
    too, so it is decided once per model). Any other failure raises ``ExportFailedError`` with
    one line naming the model and the fix; a missing or corrupt model file raises its own error.
    """
    from filelock import FileLock, Timeout

    from fgclip_ros.export.onnx import DEFAULT_OPSET

    if dtype not in CACHE_DTYPES:
        raise ValueError(f"dtype must be one of {CACHE_DTYPES}, got {dtype!r}")
    if not isinstance(manifest, ModelManifest):
        manifest = load_manifest(manifest)
    opset = DEFAULT_OPSET if opset is None else int(opset)
    name = manifest.name
    folder = export_folder(manifest, opset)
    target = variant_manifest_path(folder, name, dtype)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder) + ".lock", timeout=LOCK_TIMEOUT_S)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            LOG.info("model %s: another process is exporting it into %s; waiting for it", name, folder)
            lock.acquire()
    except Timeout as error:
        raise ExportFailedError(
            f"model {name}: waited {LOCK_TIMEOUT_S:g} s for another process's export ({folder}.lock); "
            f"{_fix(name, dtype)}") from error
    except OSError as error:
        raise ExportFailedError(
            f"model {name}: cannot create the export cache {folder.parent} ({_one_line(error)}); "
            f"{_fix(name, dtype)}") from error
    try:
        if target.is_file():
            return _checked(target)
        from fgclip_ros.export.quantize import Int8RefusedError, refusal

        if dtype == "int8" and (refused := refusal(folder, name)) is not None:
            raise Int8RefusedError(refused)
        started = time.perf_counter()
        LOG.info("model %s: no exported %s graphs for ONNX Runtime yet; exporting once into %s "
                 "(later starts reuse them)", name, dtype, folder)
        try:
            _export(manifest, folder, dtype, opset, intra_op_threads, progress)
        except (Int8RefusedError, ModelFileError, ManifestError):
            raise
        except Exception as error:  # noqa: BLE001 - every other failure becomes the one-line error
            raise ExportFailedError(
                f"model {name}: exporting its {dtype} ONNX graphs into {folder} failed "
                f"({_one_line(error)}); {_fix(name, dtype)}") from error
        LOG.info("model %s: %s graphs exported and verified in %.1f s", name, dtype,
                 time.perf_counter() - started)
        return _checked(target)
    finally:
        lock.release()


def _checked(path: Path) -> Path:
    """`path` after its graphs' sha256 entries match (a corrupt cached graph is named, never used)."""
    exported = load_manifest(path)
    for spec, what in ((exported.onnx_image, "ONNX image graph"), (exported.onnx_text, "ONNX text graph")):
        what = f"{what} of {exported.name} (delete {path.parent} to export again)"
        resolve_file(spec, exported.base_dir, what, allow_download=False)
    return path


def _export(manifest: ModelManifest, folder: Path, dtype: str, opset: int, intra_op_threads: int,
            progress: bool | None) -> None:
    from fgclip_ros.export.onnx import export_manifest
    from fgclip_ros.export.quantize import quantize_export

    source_dtype = "fp32" if dtype == "int8" else dtype
    source = variant_manifest_path(folder, manifest.name, source_dtype)
    if not source.is_file():
        export_manifest(manifest, folder, dtypes=(source_dtype,), opset=opset, progress=progress)
    if dtype == "int8":
        quantize_export(_checked(source), folder, manifest.name, intra_op_threads=intra_op_threads)
