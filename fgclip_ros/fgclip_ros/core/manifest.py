# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Model manifests: one YAML file per deployable model (schema documented in models/openai-vit-b-16.yaml).

Schema (unknown keys are errors, so a typo never silently changes the model):

    name: str                  optional, default: the file name without .yaml
    description: str           optional
    architecture: str          open_clip model name (or the name of `model_config`'s architecture)
    model_config: FILE         optional, an open_clip model-config JSON for the project's own models
    pretrained: str            open_clip pretrained tag (e.g. openai)      } exactly one of the two
    weights: FILE              weight file (safetensors or state dict)     }
    input_size: int            image side the towers take (e.g. 224)
    embed_dim: int             CLIP embedding dimension (e.g. 512)
    prompt_template: str       optional, default "{}"; "{}" is replaced by each query
    reprojection:              optional, default kind identity
      kind: identity|linear|mlp
      sides: both|visual|text  optional, default both
      file: FILE               required unless kind is identity
    onnx_image: FILE           optional, both or neither: graphs for backend "onnx" (from fgclip-export);
    onnx_text: FILE            then pretrained/weights may be omitted
    export: mapping            optional, free-form provenance written by fgclip-export (kept, not interpreted)
FILE is a mapping: {path: relative/to/manifest} or {url: https://..., sha256: <64 hex>}
(a path may also carry sha256, then it is checked).
"""

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from fgclip_ros.core.errors import ManifestError
from fgclip_ros.core.fetch import FileSpec
from fgclip_ros.core.paths import models_dir
from fgclip_ros.core.prompts import SLOT, check_template
from fgclip_ros.core.reprojection import HEAD_KINDS

REPROJECTION_SIDES = ("both", "visual", "text")
_TOP_KEYS = {
    "name", "description", "architecture", "model_config", "pretrained", "weights",
    "input_size", "embed_dim", "prompt_template", "reprojection", "onnx_image", "onnx_text",
    "export",
}
_REPROJECTION_KEYS = {"kind", "sides", "file"}
_FILE_KEYS = {"path", "url", "sha256"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class ModelManifest:
    name: str
    description: str
    source_path: Path
    architecture: str
    model_config: FileSpec | None
    pretrained: str | None
    weights: FileSpec | None
    reprojection_kind: str
    reprojection_sides: str
    reprojection: FileSpec | None
    input_size: int
    embed_dim: int
    prompt_template: str
    onnx_image: FileSpec | None = None   # exported graphs for backend "onnx" (None: torch only)
    onnx_text: FileSpec | None = None
    export: dict | None = None           # fgclip-export provenance (source, dtype, opset, checks, versions)

    @property
    def base_dir(self) -> Path:
        """Folder that relative file paths in the manifest are resolved against."""
        return self.source_path.parent


def _fail(path: Path, problem: str) -> ManifestError:
    return ManifestError(f"{path}: {problem}")


def _check_keys(path: Path, where: str, data: dict, allowed: set[str]) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise _fail(path, f"unknown key {unknown[0]!r} in {where} (allowed: {', '.join(sorted(allowed))})")


def _string(path: Path, data: dict, key: str, default: str | None = None,
            required: bool = False) -> str | None:
    value = data.get(key, default)
    if value is None:
        if required:
            raise _fail(path, f"missing required field {key!r}")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, f"{key!r} must be a non-empty string, got {value!r}")
    return value


def _positive_int(path: Path, data: dict, key: str) -> int:
    if key not in data:
        raise _fail(path, f"missing required field {key!r}")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(path, f"{key!r} must be a positive integer, got {value!r}")
    return value


def _file_spec(path: Path, where: str, value) -> FileSpec | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise _fail(path, f"{where} must be a mapping like {{path: file}} or {{url: ..., sha256: ...}}, "
                          f"got {value!r}")
    if not isinstance(value, dict):
        raise _fail(path, f"{where} must be a mapping with 'path' or 'url' (+ 'sha256'), got {value!r}")
    _check_keys(path, where, value, _FILE_KEYS)
    local, url, sha = value.get("path"), value.get("url"), value.get("sha256")
    if (local is None) == (url is None):
        raise _fail(path, f"{where} needs exactly one of 'path' or 'url'")
    for key, item in (("path", local), ("url", url), ("sha256", sha)):
        if item is not None and not isinstance(item, str):
            raise _fail(path, f"{where}.{key} must be a string, got {item!r}")
    if url is not None and sha is None:
        raise _fail(path, f"{where} has a 'url' but no 'sha256'; add the file's sha256 to verify downloads")
    if sha is not None:
        sha = sha.strip().lower()
        if not _SHA256.match(sha):
            raise _fail(path, f"{where}.sha256 must be 64 hex digits, got {value['sha256']!r}")
    return FileSpec(path=local, url=url, sha256=sha)


def _reprojection(path: Path, value) -> tuple[str, str, FileSpec | None]:
    if value is None:
        return "identity", "both", None
    if not isinstance(value, dict):
        raise _fail(path, f"'reprojection' must be a mapping with kind/sides/file, got {value!r}")
    _check_keys(path, "reprojection", value, _REPROJECTION_KEYS)
    kind = value.get("kind")
    if kind not in HEAD_KINDS:
        raise _fail(path, f"reprojection.kind must be one of {', '.join(HEAD_KINDS)}, got {kind!r}")
    sides = value.get("sides", "both")
    if sides not in REPROJECTION_SIDES:
        raise _fail(path, f"reprojection.sides must be one of {', '.join(REPROJECTION_SIDES)}, got {sides!r}")
    spec = _file_spec(path, "reprojection.file", value.get("file"))
    if kind == "identity" and spec is not None:
        raise _fail(path, "reprojection.kind is identity but a file is given; drop the file or fix the kind")
    if kind != "identity" and spec is None:
        raise _fail(path, f"reprojection.kind is {kind} but reprojection.file is missing")
    return kind, sides, spec


def parse_manifest(data, source_path: Path) -> ModelManifest:
    """Validate an already-parsed YAML document; errors are one-line ManifestErrors naming the file."""
    path = Path(source_path)
    if not isinstance(data, dict):
        raise _fail(path, f"a manifest is a YAML mapping, got {type(data).__name__}")
    _check_keys(path, "the manifest", data, _TOP_KEYS)
    pretrained = _string(path, data, "pretrained")
    weights = _file_spec(path, "weights", data.get("weights"))
    onnx_image = _file_spec(path, "onnx_image", data.get("onnx_image"))
    onnx_text = _file_spec(path, "onnx_text", data.get("onnx_text"))
    if (onnx_image is None) != (onnx_text is None):
        raise _fail(path, "give both 'onnx_image' and 'onnx_text' or neither")
    if pretrained is not None and weights is not None:
        raise _fail(path, "give exactly one of 'pretrained' (open_clip tag) or 'weights' (file), not both")
    if pretrained is None and weights is None and onnx_image is None:
        raise _fail(path, "give exactly one of 'pretrained' (open_clip tag) or 'weights' (file)")
    template = _string(path, data, "prompt_template", default=SLOT)
    try:
        check_template(template, "prompt_template")
    except ValueError as err:
        raise _fail(path, str(err)) from None
    kind, sides, reprojection = _reprojection(path, data.get("reprojection"))
    export = data.get("export")
    if export is not None and not isinstance(export, dict):
        raise _fail(path, f"'export' must be a mapping (fgclip-export provenance), got {export!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _fail(path, f"'description' must be a string, got {description!r}")
    return ModelManifest(
        name=_string(path, data, "name", default=path.stem),
        description=description.strip(),
        source_path=path.resolve(),
        architecture=_string(path, data, "architecture", required=True),
        model_config=_file_spec(path, "model_config", data.get("model_config")),
        pretrained=pretrained,
        weights=weights,
        reprojection_kind=kind,
        reprojection_sides=sides,
        reprojection=reprojection,
        input_size=_positive_int(path, data, "input_size"),
        embed_dim=_positive_int(path, data, "embed_dim"),
        prompt_template=template,
        onnx_image=onnx_image,
        onnx_text=onnx_text,
        export=export,
    )


def _looks_like_path(name_or_path: str) -> bool:
    return name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path or "\\" in name_or_path


def load_manifest(name_or_path: str | Path) -> ModelManifest:
    """Load a manifest by name (``models_dir()/NAME.yaml``) or by path to a YAML file."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ManifestError(f"{path}: manifest not found; give an existing .yaml file or a model name")
    else:
        path = models_dir() / f"{text}.yaml"
        if not path.is_file():
            available = ", ".join(list_manifests()) or "none"
            raise ManifestError(
                f"model {text!r} not found: no {path}; available: {available} "
                "(or give a path to a .yaml file)"
            )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(f"{path}: invalid YAML{where}: {problem}") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_manifest(data, path)


def list_manifests() -> list[str]:
    """Names of the manifests shipped in ``models_dir()``, sorted."""
    folder = models_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
