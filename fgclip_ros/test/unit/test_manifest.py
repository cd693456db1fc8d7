# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Model manifests (schema, validation, lookup) and file fetching (local, cached, downloaded, offline).

Nothing here touches the network: downloads use file:// URLs or a replaced URL opener.
"""

import hashlib
import io

import pytest

from fgclip_ros.core import fetch
from fgclip_ros.core.errors import ManifestError, ModelFileError
from fgclip_ros.core.fetch import FileSpec, resolve_file
from fgclip_ros.core.manifest import list_manifests, load_manifest

HEADS_SHA = "55d3b5acc6ee3787fcbad6a66bf847c1514ca5b971ba6174c4cf3d045a9a522a"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("FGCLIP_ROS_CACHE", str(folder))
    monkeypatch.delenv("FGCLIP_ROS_OFFLINE", raising=False)
    return folder


@pytest.fixture
def no_network(monkeypatch):
    def refuse(url):
        raise AssertionError(f"test tried to open {url}")

    monkeypatch.setattr(fetch, "_open_url", refuse)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- shipped manifests

def test_shipped_manifests_load_with_upstream_heads(monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("FGCLIP_ROS_SHARE", str(Path(__file__).resolve().parents[2]))
    names = list_manifests()
    assert {"openai-vit-b-16", "openai-vit-b-16-visual-only", "openai-vit-b-16-text-only"} <= set(names)
    default = load_manifest("openai-vit-b-16")
    assert (default.architecture, default.pretrained, default.embed_dim) == ("ViT-B-16", "openai", 512)
    assert (default.reprojection_kind, default.reprojection_sides) == ("linear", "both")
    assert default.reprojection.url.endswith("/fg-ovd_linear-mlp.pt")
    assert default.reprojection.sha256 == HEADS_SHA
    assert load_manifest("openai-vit-b-16-visual-only").reprojection.url.endswith("_te-freezed.pt")
    assert load_manifest("openai-vit-b-16-visual-only").reprojection_sides == "visual"
    assert load_manifest("openai-vit-b-16-text-only").reprojection.url.endswith("_ve-freezed.pt")
    assert load_manifest("openai-vit-b-16-text-only").reprojection_sides == "text"


# ---------------------------------------------------------------- manifest schema

GOOD = """\
description: tiny test model
architecture: fgclip-test-tiny
model_config: {path: tiny.json}
weights: {path: tiny.safetensors}
input_size: 32
embed_dim: 32
prompt_template: "a photo of a {}"
reprojection:
  kind: mlp
  sides: visual
  file: {url: "https://example.invalid/heads.pt", sha256: "%s"}
""" % HEADS_SHA.upper()


def test_load_by_path_and_by_name(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "tiny.yaml"
    path.write_text(GOOD)
    by_path = load_manifest(str(path))
    assert by_path.name == "tiny"
    assert by_path.base_dir == path.parent.resolve()
    assert by_path.model_config == FileSpec(path="tiny.json")
    assert by_path.reprojection == FileSpec(url="https://example.invalid/heads.pt", sha256=HEADS_SHA)
    assert (by_path.reprojection_kind, by_path.reprojection_sides) == ("mlp", "visual")
    assert by_path.prompt_template == "a photo of a {}"

    monkeypatch.setenv("FGCLIP_ROS_SHARE", str(tmp_path))
    assert list_manifests() == ["tiny"]
    assert load_manifest("tiny") == by_path


def test_identity_is_the_default_reprojection(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text("architecture: ViT-B-32\npretrained: openai\ninput_size: 224\nembed_dim: 512\n")
    manifest = load_manifest(path)
    assert (manifest.reprojection_kind, manifest.reprojection) == ("identity", None)
    assert manifest.prompt_template == "{}"


def test_unknown_model_name_lists_the_available_ones(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.yaml").write_text(GOOD)
    monkeypatch.setenv("FGCLIP_ROS_SHARE", str(tmp_path))
    with pytest.raises(ManifestError, match="'nope' not found.*available: tiny"):
        load_manifest("nope")
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("edit, needle", [
    (("embed_dim: 32", "embed_dim: 32\ncolour: red"), "unknown key 'colour'"),
    (("  sides: visual", "  sides: visual\n  scale: 2"), "unknown key 'scale' in reprojection"),
    (("architecture: fgclip-test-tiny\n", ""), "missing required field 'architecture'"),
    (("input_size: 32\n", ""), "missing required field 'input_size'"),
    (("embed_dim: 32", "embed_dim: -4"), "'embed_dim' must be a positive integer"),
    (("kind: mlp", "kind: conv"), "reprojection.kind must be one of"),
    (("sides: visual", "sides: left"), "reprojection.sides must be one of"),
    (("weights: {path: tiny.safetensors}", "pretrained: openai\nweights: {path: x}"), "not both"),
    (("weights: {path: tiny.safetensors}\n", ""), "exactly one of 'pretrained'"),
    (('"a photo of a {}"', '"a photo"'), "prompt_template must contain"),
    ((', sha256: "%s"' % HEADS_SHA.upper(), ""), "no 'sha256'"),
    ((HEADS_SHA.upper(), "abc"), "64 hex digits"),
    (("file: {url", "file: {path: a.pt, url"), "exactly one of 'path' or 'url'"),
    (("  file: {url: \"https://example.invalid/heads.pt\", sha256: \"%s\"}\n" % HEADS_SHA.upper(), ""),
     "reprojection.file is missing"),
    (("model_config: {path: tiny.json}", "model_config: tiny.json"), "model_config must be a mapping"),
    (("input_size: 32", "input_size: [32"), "invalid YAML"),
])
def test_invalid_manifests_fail_with_one_line_naming_the_file(tmp_path, edit, needle):
    old, new = edit
    assert old in GOOD
    path = tmp_path / "broken.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ManifestError, match=needle) as info:
        load_manifest(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_onnx_graphs_are_optional_and_come_in_pairs(tmp_path):
    path = tmp_path / "exported.yaml"
    path.write_text(GOOD.replace("weights: {path: tiny.safetensors}",
                                 "onnx_image: {path: image.onnx}\nonnx_text: {path: text.onnx}"))
    manifest = load_manifest(path)
    assert (manifest.weights, manifest.pretrained) == (None, None)
    assert manifest.onnx_image == FileSpec(path="image.onnx")
    assert manifest.onnx_text == FileSpec(path="text.onnx")
    assert load_manifest(tmp_path / "exported.yaml").onnx_text is not None  # a Path works like a str
    path.write_text(GOOD.replace("input_size: 32", "input_size: 32\nonnx_image: {path: image.onnx}"))
    with pytest.raises(ManifestError, match="both 'onnx_image' and 'onnx_text'"):
        load_manifest(path)


def test_non_mapping_manifest(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ManifestError, match="YAML mapping"):
        load_manifest(path)


# ---------------------------------------------------------------- fetch: local files

def test_local_path_is_relative_to_the_manifest_folder(tmp_path, cache, no_network):
    (tmp_path / "w.bin").write_bytes(b"weights")
    assert resolve_file(FileSpec(path="w.bin"), tmp_path, "weights") == tmp_path / "w.bin"
    spec = FileSpec(path="w.bin", sha256=_sha(b"weights"))
    assert resolve_file(spec, tmp_path, "weights") == tmp_path / "w.bin"


def test_missing_or_wrong_local_file(tmp_path, cache, no_network):
    with pytest.raises(ModelFileError, match=r"weights of tiny: .*absent.bin: not found; put the file there"):
        resolve_file(FileSpec(path="absent.bin"), tmp_path, "weights of tiny")
    (tmp_path / "w.bin").write_bytes(b"weights")
    with pytest.raises(ModelFileError, match="does not match the expected " + "0" * 64):
        resolve_file(FileSpec(path="w.bin", sha256="0" * 64), tmp_path, "weights")


# ---------------------------------------------------------------- fetch: downloads

def test_file_url_download_is_verified_and_cached(tmp_path, cache, monkeypatch):
    payload = b"upstream heads" * 1000
    source = tmp_path / "remote" / "fg-ovd_linear-mlp.pt"
    source.parent.mkdir()
    source.write_bytes(payload)
    spec = FileSpec(url=source.as_uri(), sha256=_sha(payload))

    got = resolve_file(spec, tmp_path, "heads")
    assert got == cache / _sha(payload)[:16] / "fg-ovd_linear-mlp.pt"
    assert got.read_bytes() == payload
    assert [p.name for p in got.parent.iterdir()] == ["fg-ovd_linear-mlp.pt"]  # no temp file left

    # Second call: served from the cache without opening the URL.
    monkeypatch.setattr(fetch, "_open_url", lambda url: pytest.fail("downloaded twice"))
    assert resolve_file(spec, tmp_path, "heads") == got


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def test_download_with_wrong_sha256_is_rejected_and_not_cached(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(fetch, "_open_url", lambda url: _FakeResponse(b"tampered"))
    expected = _sha(b"original")
    spec = FileSpec(url="https://example.invalid/x/heads.pt", sha256=expected)
    with pytest.raises(ModelFileError) as info:
        resolve_file(spec, tmp_path, "heads")
    message = str(info.value)
    assert spec.url in message and expected in message and _sha(b"tampered") in message
    target_dir = cache / expected[:16]
    assert not target_dir.exists() or not any(target_dir.iterdir())


def test_corrupt_cached_file_is_an_error_naming_it(tmp_path, cache, no_network):
    expected = _sha(b"original")
    target = cache / expected[:16] / "heads.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"corrupted")
    with pytest.raises(ModelFileError, match=f"{target}: sha256 {_sha(b'corrupted')} does not match"):
        resolve_file(FileSpec(url="https://example.invalid/heads.pt", sha256=expected), tmp_path, "heads")


def test_unreachable_url_names_the_manual_location(tmp_path, cache):
    spec = FileSpec(url=(tmp_path / "nowhere.pt").as_uri(), sha256=_sha(b"x"))
    with pytest.raises(ModelFileError, match="could not download .*download it yourself to .*nowhere.pt"):
        resolve_file(spec, tmp_path, "heads")


@pytest.mark.parametrize("how", ["argument", "env"])
def test_offline_names_url_and_cache_path(tmp_path, cache, no_network, monkeypatch, how):
    spec = FileSpec(url="https://example.invalid/heads.pt", sha256=_sha(b"x"))
    if how == "env":
        monkeypatch.setenv("FGCLIP_ROS_OFFLINE", "1")
    with pytest.raises(ModelFileError) as info:
        resolve_file(spec, tmp_path, "heads", allow_download=(how == "env"))
    message = str(info.value)
    assert spec.url in message and str(cache / _sha(b"x")[:16] / "heads.pt") in message
    # Offline still serves a verified cached copy.
    target = cache / _sha(b"x")[:16] / "heads.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert resolve_file(spec, tmp_path, "heads", allow_download=(how == "env")) == target


def test_url_without_sha256_is_refused(tmp_path, cache, no_network):
    with pytest.raises(ManifestError, match="needs a 'sha256'"):
        resolve_file(FileSpec(url="https://example.invalid/heads.pt"), tmp_path, "heads")


def test_export_provenance_is_kept_as_written(tmp_path):
    path = tmp_path / "exported.yaml"
    provenance = "export:\n  dtype: fp16\n  opset: 17\n  verified_with: {providers: [CPUExecutionProvider]}\n"
    path.write_text(GOOD + provenance)
    expected = {"dtype": "fp16", "opset": 17, "verified_with": {"providers": ["CPUExecutionProvider"]}}
    assert load_manifest(path).export == expected
    path.write_text(GOOD)
    assert load_manifest(path).export is None
    path.write_text(GOOD + "export: fp16\n")
    with pytest.raises(ManifestError, match="'export' must be a mapping"):
        load_manifest(path)
