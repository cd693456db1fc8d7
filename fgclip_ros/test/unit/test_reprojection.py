# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Re-projection heads load the upstream checkpoint layout and compute head + L2 normalisation."""

import pytest
import torch

from fgclip_ros.core.errors import ModelFileError
from fgclip_ros.core.reprojection import Head, ReprojectionHeads, load_heads, project, save_heads

D = 16


def _linear_params(gen):
    return torch.randn(D, D, generator=gen) / D**0.5, torch.randn(D, generator=gen)


def _reference_linear(x, w, b):
    y = x @ w.T + b
    return y / y.norm(dim=1, keepdim=True)


def _reference_mlp(x, w0, b0, w1, b1):
    # Upstream's non-linear head: tanh after every Linear, the last one included.
    y = torch.tanh(torch.tanh(x @ w0.T + b0) @ w1.T + b1)
    return y / y.norm(dim=1, keepdim=True)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def test_upstream_linear_checkpoint_both_sides(tmp_path, gen):
    wv, bv = _linear_params(gen)
    wt, bt = _linear_params(gen)
    # A plain dict of tensors, keyed the way the upstream FG-CLIP training code saves it.
    path = tmp_path / "fg-ovd_linear.pt"
    torch.save({"linear_layers.0.0.weight": wv, "linear_layers.0.0.bias": bv,
                "linear_layers.1.0.weight": wt, "linear_layers.1.0.bias": bt}, path)

    heads = load_heads(path, "linear", D)
    x_img, x_txt = torch.randn(5, D, generator=gen), torch.randn(3, D, generator=gen)
    torch.testing.assert_close(heads.project_images(x_img), _reference_linear(x_img, wv, bv))
    torch.testing.assert_close(heads.project_texts(x_txt), _reference_linear(x_txt, wt, bt))
    assert heads.sides == "both"


@pytest.mark.parametrize("side_index, side", [(0, "visual"), (1, "text")])
def test_one_sided_checkpoint_keeps_other_side_identity(tmp_path, gen, side_index, side):
    w, b = _linear_params(gen)
    path = tmp_path / "one_side.pt"
    torch.save({f"linear_layers.{side_index}.0.weight": w, f"linear_layers.{side_index}.0.bias": b}, path)

    heads = load_heads(path, "linear", D, sides=side)
    x = torch.randn(4, D, generator=gen)
    trained, untouched = (heads.project_images, heads.project_texts)[:: 1 if side == "visual" else -1]
    torch.testing.assert_close(trained(x), _reference_linear(x, w, b))
    torch.testing.assert_close(untouched(x), x / x.norm(dim=1, keepdim=True))
    assert heads.sides == side


def test_upstream_mlp_checkpoint(tmp_path, gen):
    params = {side: (*_linear_params(gen), *_linear_params(gen)) for side in (0, 1)}
    state = {}
    for side, (w0, b0, w1, b1) in params.items():
        # Upstream numbers the Linears only: .0 and .1 (the tanh holds no parameters).
        state.update({f"linear_layers.{side}.0.weight": w0, f"linear_layers.{side}.0.bias": b0,
                      f"linear_layers.{side}.1.weight": w1, f"linear_layers.{side}.1.bias": b1})
    path = tmp_path / "mlp.pt"
    torch.save(state, path)

    heads = load_heads(path, "mlp", D)
    x = torch.randn(6, D, generator=gen)
    torch.testing.assert_close(heads.project_images(x), _reference_mlp(x, *params[0]))
    torch.testing.assert_close(heads.project_texts(x), _reference_mlp(x, *params[1]))
    # save_heads writes what upstream's module loads: the same keys, the same tensors.
    save_heads(heads, tmp_path / "again.pt")
    again = torch.load(tmp_path / "again.pt", map_location="cpu", weights_only=True)
    assert sorted(again) == sorted(state)
    for key, tensor in state.items():
        torch.testing.assert_close(again[key], tensor)


def test_one_sided_mlp_checkpoint(tmp_path, gen):
    w0, b0, w1, b1 = (*_linear_params(gen), *_linear_params(gen))
    path = tmp_path / "mlp_te-freezed.pt"
    torch.save({"linear_layers.0.0.weight": w0, "linear_layers.0.0.bias": b0,
                "linear_layers.0.1.weight": w1, "linear_layers.0.1.bias": b1}, path)
    heads = load_heads(path, "mlp", D, sides="visual")
    x = torch.randn(5, D, generator=gen)
    torch.testing.assert_close(heads.project_images(x), _reference_mlp(x, w0, b0, w1, b1))
    torch.testing.assert_close(heads.project_texts(x), x / x.norm(dim=1, keepdim=True))


def test_fp16_input_gives_float32_unit_vectors(tmp_path, gen):
    heads = ReprojectionHeads(Head("linear", D), Head("identity", D))
    out = heads.project_images(torch.randn(3, D, generator=gen).half())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


def test_project_applies_the_named_side_or_only_normalises_without_heads(tmp_path, gen):
    # The one "heads or normalise" rule of the pipeline, the evaluator, the exporter and the benchmark.
    w, b = _linear_params(gen)
    path = tmp_path / "heads.pt"
    torch.save({"linear_layers.1.0.weight": w, "linear_layers.1.0.bias": b}, path)
    heads = load_heads(path, "linear", D, sides="text")  # a trained text head, identity visual side
    raw = torch.randn(4, D, generator=gen).half()
    torch.testing.assert_close(project(raw, heads, "text"), _reference_linear(raw.float(), w, b))
    plain = raw.float() / raw.float().norm(dim=1, keepdim=True)
    torch.testing.assert_close(project(raw, heads, "visual"), plain)
    torch.testing.assert_close(project(raw, None, "text"), plain)
    assert project(raw, None, "visual").dtype == torch.float32
    with pytest.raises(ValueError, match="side"):
        project(raw, heads, "image")


@pytest.mark.parametrize("kind, sides", [("linear", "both"), ("linear", "visual"), ("mlp", "text")])
def test_save_heads_round_trip_uses_upstream_keys(tmp_path, kind, sides):
    torch.manual_seed(0)
    visual = Head(kind if sides in ("both", "visual") else "identity", D)
    text = Head(kind if sides in ("both", "text") else "identity", D)
    heads = ReprojectionHeads(visual, text)
    path = tmp_path / "heads.pt"
    save_heads(heads, path)

    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(k.startswith(("linear_layers.0.", "linear_layers.1.")) for k in state)
    assert any(k.startswith("linear_layers.0.") for k in state) == (sides in ("both", "visual"))
    assert any(k.startswith("linear_layers.1.") for k in state) == (sides in ("both", "text"))
    loaded = load_heads(path, kind, D, sides=sides)
    x = torch.randn(4, D)
    torch.testing.assert_close(loaded.project_images(x), heads.project_images(x))
    torch.testing.assert_close(loaded.project_texts(x), heads.project_texts(x))


def _write(tmp_path, state, name="bad.pt"):
    path = tmp_path / name
    torch.save(state, path)
    return path


@pytest.mark.parametrize("state, kind, dim, needle", [
    ({"linear_layers.0.0.weight": torch.zeros(8, 8), "linear_layers.0.0.bias": torch.zeros(8)},
     "linear", D, "shape"),
    ({"linear_layers.0.0.weight": torch.zeros(D, D), "linear_layers.0.0.bias": torch.zeros(D),
      "logit_scale": torch.zeros(())}, "linear", D, "unexpected key 'logit_scale'"),
    ({"linear_layers.2.0.weight": torch.zeros(D, D)}, "linear", D, "unexpected key"),
    ({"linear_layers.0.0.weight": torch.zeros(D, D), "linear_layers.0.0.bias": torch.zeros(D)},
     "mlp", D, "'mlp' head needs"),
    ({}, "linear", D, "no linear_layers"),
])
def test_malformed_checkpoints_name_the_file(tmp_path, state, kind, dim, needle):
    path = _write(tmp_path, state)
    with pytest.raises(ModelFileError, match=needle) as info:
        load_heads(path, kind, dim)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_sides_mismatch_and_garbage_and_missing(tmp_path):
    text_only = {"linear_layers.1.0.weight": torch.zeros(D, D), "linear_layers.1.0.bias": torch.zeros(D)}
    path = _write(tmp_path, text_only)
    with pytest.raises(ModelFileError, match="holds the text side"):
        load_heads(path, "linear", D, sides="both")

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ModelFileError, match="garbage.pt"):
        load_heads(garbage, "linear", D)

    with pytest.raises(ModelFileError, match="not found"):
        load_heads(tmp_path / "absent.pt", "linear", D)


def test_pickled_code_is_refused(tmp_path):
    # weights_only loading must reject arbitrary objects instead of unpickling them.
    path = _write(tmp_path, {"linear_layers.0.0.weight": torch.nn.Linear(D, D)})
    with pytest.raises(ModelFileError, match=str(path.name)):
        load_heads(path, "linear", D)
