# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Encoders: torch vs ONNX Runtime agreement, provider fallback, dtypes, weight files, build_encoder."""

import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import (
    TINY_ARCHITECTURE,
    TINY_CLIP_CONFIG,
    make_tiny_clip,
    make_tiny_encoder,
    make_tiny_tokenizer,
)

from fgclip_ros.core.crops import Preprocess
from fgclip_ros.core.encoders import (
    Encoder,
    OnnxEncoder,
    TorchEncoder,
    build_encoder,
    onnx_session,
    read_onnx_metadata,
    tokenize,
)
from fgclip_ros.core.errors import ManifestError, ModelFileError
from fgclip_ros.core.fetch import FileSpec

TEXTS = ["a red ceramic mug", "a transparent glass bottle", "striped", "x"]


def normalised_pixels(count: int, seed: int = 0) -> torch.Tensor:
    """Inputs in the range real normalised crops have (about -1.8 .. 2.2)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((count, 3, 32, 32), generator=generator) * 4.0 - 1.8


class _Tower(torch.nn.Module):
    """One tower of a CLIP model (`encode`: "encode_image" or "encode_text") as a module to export."""

    def __init__(self, model, encode: str):
        super().__init__()
        self.model, self.encode = model, encode

    def forward(self, inputs):
        return getattr(self.model, self.encode)(inputs)


def export_towers(model, folder: Path, metadata: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Export the image and text towers as two ONNX graphs with a dynamic batch axis."""
    image_path, text_path = folder / "image.onnx", folder / "text.onnx"
    tokens = torch.from_numpy(tokenize(make_tiny_tokenizer(), ["a photo", "b"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notes
        for encode, example, path, name in (("encode_image", normalised_pixels(2), image_path, "pixels"),
                                            ("encode_text", tokens, text_path, "token_ids")):
            torch.onnx.export(_Tower(model, encode), (example,), str(path), dynamo=False,
                              input_names=[name], output_names=["embeddings"], opset_version=17,
                              dynamic_axes={name: {0: "batch"}, "embeddings": {0: "batch"}})
    if metadata:
        graph = onnx.load(str(image_path))
        for key, value in metadata.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, str(image_path))
    return image_path, text_path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = make_tiny_clip(seed=0)
    return export_towers(model, tmp_path_factory.mktemp("onnx"))


def onnx_encoder(paths, providers=None, **kwargs) -> OnnxEncoder:
    model = make_tiny_clip(seed=0)
    return OnnxEncoder(paths[0], paths[1], Preprocess.from_open_clip(model), make_tiny_tokenizer(),
                       providers=providers or ["CPUExecutionProvider"], **kwargs)


def assert_same_embeddings(actual: torch.Tensor, expected: torch.Tensor, relative: float, min_cosine: float):
    assert actual.dtype == torch.float32 and actual.shape == expected.shape
    norms = expected.norm(dim=-1)
    assert ((actual - expected).abs().max(dim=-1).values / norms).max() < relative
    assert torch.nn.functional.cosine_similarity(actual, expected).min() > min_cosine


def test_torch_and_onnx_backends_agree(exported, tiny_encoder):
    onnx_enc = onnx_encoder(exported)
    assert isinstance(onnx_enc, Encoder) and isinstance(tiny_encoder, Encoder)
    assert onnx_enc.embed_dim == tiny_encoder.embed_dim == 32
    assert onnx_enc.provider == "onnxruntime:CPUExecutionProvider"
    pixels = normalised_pixels(5, seed=3)
    # Same fp32 graph on two runtimes: only kernel summation order differs, so the largest
    # per-element difference must stay below 1e-4 of the embedding's norm and cosine above 0.99999
    # (measured: ~1.5e-7 of the norm).
    assert_same_embeddings(onnx_enc.encode_images(pixels), tiny_encoder.encode_images(pixels), 1e-4, 0.99999)
    assert_same_embeddings(onnx_enc.encode_images(pixels.numpy()), tiny_encoder.encode_images(pixels),
                           1e-4, 0.99999)
    assert_same_embeddings(onnx_enc.encode_texts(TEXTS), tiny_encoder.encode_texts(TEXTS), 1e-4, 0.99999)


def test_session_options_are_applied_and_give_the_same_embeddings(exported, tiny_encoder):
    encoder = onnx_encoder(exported, intra_op_threads=1, graph_optimization="basic")
    options = encoder.session_options
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    pixels = normalised_pixels(3, seed=5)
    assert_same_embeddings(encoder.encode_images(pixels), tiny_encoder.encode_images(pixels), 1e-4, 0.99999)
    with pytest.raises(ValueError, match="graph_optimization"):
        onnx_encoder(exported, graph_optimization="fast")


def test_onnx_session_applies_its_options_and_names_a_bad_file(exported, tmp_path):
    session = onnx_session(exported[0], intra_op_threads=1, graph_optimization="basic", log_severity=3)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.log_severity_level == 3
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert session.get_providers() == ["CPUExecutionProvider"]  # the default provider list
    with pytest.raises(ModelFileError, match="nowhere.onnx"):
        onnx_session(tmp_path / "nowhere.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(ModelFileError, match="broken.onnx.*not a loadable ONNX model"):
        onnx_session(broken)


def test_every_onnx_runtime_session_is_built_by_onnx_session():
    # One builder: the node's encoders, the export checks and the int8 gate share its options
    # (e.g. the NCHWc pass left out, without which fp16 graphs crash ONNX Runtime's CPU provider).
    import ast

    package = Path(__file__).resolve().parents[2] / "fgclip_ros"
    builders = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                calls = [
                    call for call in ast.walk(node) if isinstance(call, ast.Call)
                    and getattr(call.func, "attr", getattr(call.func, "id", None)) == "InferenceSession"
                ]
                if calls:
                    builders.append(f"{path.relative_to(package)}:{node.name}")
    assert builders == ["core/encoders.py:onnx_session"]


def test_empty_inputs_give_empty_outputs(exported, tiny_encoder):
    for encoder in (onnx_encoder(exported), tiny_encoder):
        assert encoder.encode_texts([]).shape == (0, 32)
        assert encoder.encode_images(np.zeros((0, 3, 32, 32), np.float32)).shape == (0, 32)


def test_tokenize_gives_int64_ids_of_the_context_length():
    tokens = tokenize(make_tiny_tokenizer(), TEXTS)
    context_length = TINY_CLIP_CONFIG["text_cfg"]["context_length"]
    assert tokens.dtype == np.int64 and tokens.shape == (len(TEXTS), context_length)


def test_missing_providers_fall_back_with_one_log_line(exported, caplog):
    caplog.set_level(logging.DEBUG, logger="fgclip_ros.encoders")
    encoder = onnx_encoder(exported, providers=["NoSuchExecutionProvider", "CPUExecutionProvider"])
    assert encoder.provider == "onnxruntime:CPUExecutionProvider"
    lines = [record for record in caplog.records
             if record.name == "fgclip_ros.encoders" and record.levelno >= logging.INFO]
    assert len(lines) == 1
    message = lines[0].getMessage()
    assert "in use: CPUExecutionProvider" in message and "NoSuchExecutionProvider" in message
    assert encoder.encode_texts(["ok"]).shape == (1, 32)


def test_provider_that_fails_to_start_falls_back_to_the_next(exported, caplog, monkeypatch):
    import onnxruntime

    from fgclip_ros.core import encoders

    real_session = onnxruntime.InferenceSession

    def session_without_working_cuda(path, providers, **kwargs):
        # As on a machine whose onnxruntime lists the CUDA EP but lacks the CUDA libraries.
        if providers[0][0] == "CUDAExecutionProvider":
            raise RuntimeError("libcudart.so: cannot open shared object file")
        return real_session(path, providers=providers, **kwargs)

    monkeypatch.setattr(encoders, "_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", session_without_working_cuda)
    caplog.set_level(logging.INFO, logger="fgclip_ros.encoders")
    encoder = onnx_encoder(exported, providers=["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    assert encoder.provider == "onnxruntime:CPUExecutionProvider"
    lines = [record.getMessage() for record in caplog.records if record.name == "fgclip_ros.encoders"]
    assert len(lines) == 1
    assert "in use: CPUExecutionProvider" in lines[0] and "failed to start: CUDAExecutionProvider" in lines[0]
    assert "not available: TensorrtExecutionProvider" in lines[0]


def test_default_providers_run_on_what_is_available(exported, caplog):
    import onnxruntime

    caplog.set_level(logging.INFO, logger="fgclip_ros.encoders")
    preprocess = Preprocess.from_open_clip(make_tiny_clip(seed=0))
    encoder = OnnxEncoder(exported[0], exported[1], preprocess, make_tiny_tokenizer(), providers=None)
    in_use = encoder.provider.split(":", 1)[1]
    assert in_use in onnxruntime.get_available_providers()
    assert in_use in ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    assert f"in use: {in_use}" in caplog.records[-1].getMessage()


def test_onnx_encoder_passes_projected_and_logit_scale(exported):
    encoder = onnx_encoder(exported, projected=True, logit_scale=42.0)
    assert encoder.projected is True and encoder.logit_scale == 42.0
    assert onnx_encoder(exported).projected is False


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_low_precision_returns_float32_close_to_fp32(dtype, tiny_encoder):
    encoder = make_tiny_encoder(seed=0, dtype=dtype)
    assert encoder.provider == f"torch:cpu:{dtype}"
    pixels = normalised_pixels(4, seed=5)
    for actual, expected in ((encoder.encode_images(pixels), tiny_encoder.encode_images(pixels)),
                             (encoder.encode_texts(TEXTS), tiny_encoder.encode_texts(TEXTS))):
        assert actual.dtype == torch.float32
        # bf16 keeps ~3 significant digits: cosine to fp32 stays well above 0.99.
        assert torch.nn.functional.cosine_similarity(actual, expected).min() > 0.99


def test_unknown_dtype_is_rejected():
    with pytest.raises(ValueError, match="dtype"):
        make_tiny_encoder(dtype="int8")


def test_logit_scale_is_the_models_temperature(tiny_clip, tiny_encoder):
    assert tiny_encoder.logit_scale == pytest.approx(float(tiny_clip.logit_scale.detach().exp()))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_file_round_trip(tmp_path, tiny_model_config_json, suffix):
    source = make_tiny_encoder(seed=11)
    state = {key: value.contiguous() for key, value in source.model.state_dict().items()}
    weights = tmp_path / f"tiny{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(weights))
    else:
        torch.save(state, weights)
    loaded = TorchEncoder.from_open_clip(TINY_ARCHITECTURE, weights=weights,
                                         model_config=tiny_model_config_json)
    assert loaded.provider == "torch:cpu:fp32" and loaded.preprocess == source.preprocess
    pixels = normalised_pixels(3, seed=2)
    torch.testing.assert_close(loaded.encode_images(pixels), source.encode_images(pixels), rtol=0, atol=1e-6)
    torch.testing.assert_close(loaded.encode_texts(TEXTS), source.encode_texts(TEXTS), rtol=0, atol=1e-6)
    other_seed = make_tiny_encoder(seed=12)
    assert not torch.allclose(other_seed.encode_texts(TEXTS), source.encode_texts(TEXTS))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_corrupt_weight_file_names_the_file(tmp_path, tiny_model_config_json, suffix):
    broken = tmp_path / f"broken{suffix}"
    broken.write_bytes(b"\x00not a weight file" * 50)
    with pytest.raises(ModelFileError, match=str(broken)) as error:
        TorchEncoder.from_open_clip(TINY_ARCHITECTURE, weights=broken, model_config=tiny_model_config_json)
    assert "\n" not in str(error.value)


def test_weights_of_another_architecture_name_the_file(tmp_path, tiny_model_config_json):
    import open_clip

    other = open_clip.model.CLIP(embed_dim=16, vision_cfg=TINY_CLIP_CONFIG["vision_cfg"],
                                 text_cfg=TINY_CLIP_CONFIG["text_cfg"])
    weights = tmp_path / "other.pt"
    torch.save(other.state_dict(), weights)
    with pytest.raises(ModelFileError, match=f"{weights}.*{TINY_ARCHITECTURE}") as error:
        TorchEncoder.from_open_clip(TINY_ARCHITECTURE, weights=weights, model_config=tiny_model_config_json)
    assert "\n" not in str(error.value)


def test_pickled_code_is_never_loaded(tmp_path, tiny_model_config_json):
    weights = tmp_path / "code.pt"
    torch.save({"visual.proj": SimpleNamespace(x=1)}, weights)   # not a plain tensor dict
    with pytest.raises(ModelFileError, match=str(weights)):
        TorchEncoder.from_open_clip(TINY_ARCHITECTURE, weights=weights, model_config=tiny_model_config_json)


def test_missing_weight_file_names_the_file(tmp_path, tiny_model_config_json):
    with pytest.raises(ModelFileError, match="nowhere.safetensors"):
        TorchEncoder.from_open_clip(TINY_ARCHITECTURE, weights=tmp_path / "nowhere.safetensors",
                                    model_config=tiny_model_config_json)


def test_unknown_architecture_and_tag_are_manifest_errors():
    with pytest.raises(ManifestError, match="No-Such-Arch"):
        TorchEncoder.from_open_clip("No-Such-Arch")
    with pytest.raises(ManifestError, match="no-such-tag"):
        TorchEncoder.from_open_clip("ViT-B-16", pretrained="no-such-tag")


def test_custom_config_may_not_shadow_a_builtin(tiny_model_config_json):
    with pytest.raises(ManifestError, match="ViT-B-16"):
        TorchEncoder.from_open_clip("ViT-B-16", model_config=tiny_model_config_json)


def manifest_for(folder: Path, **overrides) -> SimpleNamespace:
    """A manifest with the fields of fgclip_ros.core.manifest.ModelManifest that encoders read."""
    fields = dict(name="tiny", description="test", source_path=folder / "tiny.yaml",
                  architecture=TINY_ARCHITECTURE, model_config=FileSpec(path=f"{TINY_ARCHITECTURE}.json"),
                  pretrained=None, weights=FileSpec(path="tiny.safetensors"), reprojection_kind="identity",
                  reprojection_sides="both", reprojection=None, input_size=32, embed_dim=32,
                  prompt_template="{}")
    fields.update(overrides)
    return SimpleNamespace(**fields)


@pytest.fixture
def manifest_folder(tmp_path, tiny_model_config_json):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in make_tiny_clip(seed=0).state_dict().items()},
              str(tmp_path / "tiny.safetensors"))
    return tmp_path


def test_build_encoder_torch_from_manifest(manifest_folder, tiny_encoder):
    encoder = build_encoder(manifest_for(manifest_folder), backend="torch")
    assert isinstance(encoder, TorchEncoder) and encoder.projected is False
    expected = tiny_encoder.encode_texts(TEXTS)
    torch.testing.assert_close(encoder.encode_texts(TEXTS), expected, rtol=0, atol=1e-6)


def test_build_encoder_rejects_a_manifest_that_disagrees_with_the_model(manifest_folder):
    with pytest.raises(ManifestError, match="embed_dim"):
        build_encoder(manifest_for(manifest_folder, embed_dim=512))


def test_build_encoder_onnx_from_manifest(manifest_folder, tiny_encoder):
    metadata = {"projected": "false", "logit_scale": "7.5"}
    export_towers(make_tiny_clip(seed=0), manifest_folder, metadata=metadata)
    manifest = manifest_for(manifest_folder, onnx_image=FileSpec(path="image.onnx"),
                            onnx_text=FileSpec(path="text.onnx"))
    assert read_onnx_metadata(manifest_folder / "image.onnx")["logit_scale"] == "7.5"
    encoder = build_encoder(manifest, backend="onnx", providers=["CPUExecutionProvider"])
    assert isinstance(encoder, OnnxEncoder)
    assert encoder.projected is False and encoder.logit_scale == 7.5
    assert encoder.preprocess == tiny_encoder.preprocess
    assert_same_embeddings(encoder.encode_texts(TEXTS), tiny_encoder.encode_texts(TEXTS), 1e-4, 0.99999)


def test_build_encoder_onnx_without_graphs_says_what_to_do(manifest_folder):
    with pytest.raises(ManifestError, match="fgclip-export"):
        build_encoder(manifest_for(manifest_folder), backend="onnx")


def test_corrupt_onnx_graph_names_the_file(tmp_path, exported):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"garbage" * 10)
    with pytest.raises(ModelFileError, match=str(broken)):
        onnx_encoder((broken, exported[1]))
