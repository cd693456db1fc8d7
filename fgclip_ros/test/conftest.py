# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: tiny, seeded open_clip models so torch tests stay fast and deterministic on CPU.

Use the fixtures (`tiny_clip`, `tiny_transform`, `tiny_encoder`, `tiny_encoder_factory`,
`tiny_model_config_json`) or import the helpers directly (`from conftest import make_tiny_encoder`).
"""

import copy
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

# A real open_clip ViT-CLIP, just very small: 32x32 input, 4x4 patches of 8 px, 2 layers per tower.
# The text tower keeps open_clip's default BPE vocabulary so the stock SimpleTokenizer works.
TINY_ARCHITECTURE = "fgclip-test-tiny"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def make_tiny_clip(seed: int = 0) -> torch.nn.Module:
    """A freshly built tiny open_clip CLIP in eval mode, fp32 on CPU, weights drawn from `seed`."""
    import open_clip
    from open_clip.transform import PreprocessCfg

    cfg = copy.deepcopy(TINY_CLIP_CONFIG)
    saved_rng = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**cfg)
    torch.random.set_rng_state(saved_rng)  # keep the caller's RNG stream untouched
    # create_model() attaches the preprocess config; a hand-built model needs it set explicitly.
    open_clip.set_model_preprocess_cfg(model, asdict(PreprocessCfg(size=cfg["vision_cfg"]["image_size"])))
    return model.eval()


def make_tiny_tokenizer():
    import open_clip

    return open_clip.SimpleTokenizer(context_length=TINY_CLIP_CONFIG["text_cfg"]["context_length"])


def make_tiny_transform(model):
    """open_clip's own eval preprocess (PIL image -> normalised tensor) for `model`."""
    import open_clip
    from open_clip.transform import PreprocessCfg

    cfg = PreprocessCfg(**model.visual.preprocess_cfg)
    return open_clip.transform.image_transform_v2(cfg, is_train=False)


def make_tiny_encoder(seed: int = 0, device: str = "cpu", dtype: str = "fp32"):
    """A TorchEncoder around a new tiny model (the encoder owns the model: dtype/device may change it)."""
    from fgclip_ros.core.crops import Preprocess
    from fgclip_ros.core.encoders import TorchEncoder

    model = make_tiny_clip(seed)
    return TorchEncoder(model, make_tiny_tokenizer(), Preprocess.from_open_clip(model), device, dtype)


@pytest.fixture(scope="session")
def tiny_clip():
    """Session-wide tiny model; treat as read-only (build your own with make_tiny_clip to modify one)."""
    return make_tiny_clip(seed=0)


@pytest.fixture(scope="session")
def tiny_transform(tiny_clip):
    return make_tiny_transform(tiny_clip)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_clip):
    """TorchEncoder (cpu, fp32) wrapping the session's tiny model."""
    from fgclip_ros.core.crops import Preprocess
    from fgclip_ros.core.encoders import TorchEncoder

    return TorchEncoder(tiny_clip, make_tiny_tokenizer(), Preprocess.from_open_clip(tiny_clip), "cpu", "fp32")


@pytest.fixture
def tiny_encoder_factory():
    """Callable(seed=0, device="cpu", dtype="fp32") -> a new TorchEncoder on a new tiny model."""
    return make_tiny_encoder


@pytest.fixture
def tiny_model_config_json(tmp_path):
    """The tiny config as an open_clip model-config JSON file (for manifests' `model_config`)."""
    path = tmp_path / f"{TINY_ARCHITECTURE}.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2))
    return path


def write_tiny_manifest(folder) -> Path:
    """A manifest of the tiny model (config, state dict) in `folder`, loadable by any process."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    torch.save(make_tiny_clip(0).state_dict(), folder / "tiny.pt")
    (folder / "tiny.yaml").write_text(
        f"architecture: {TINY_ARCHITECTURE}\nmodel_config: {{path: tiny.json}}\n"
        "weights: {path: tiny.pt}\ninput_size: 32\nembed_dim: 32\n"
    )
    return folder / "tiny.yaml"


@pytest.fixture(scope="session", autouse=True)
def private_user_cache(tmp_path_factory):
    """Tests, and the nodes and CLIs they start, export and download into a temporary cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FGCLIP_ROS_CACHE", str(tmp_path_factory.mktemp("fgclip_ros_cache")))
        yield


# The folder a test lives in is its kind: `pytest -m unit` (make test-fast) selects the fast ones.
TEST_KINDS = ("unit", "graph", "workspace", "demo")


def pytest_collection_modifyitems(config, items):
    for item in items:
        kind = item.path.parent.name
        if kind in TEST_KINDS:
            item.add_marker(getattr(pytest.mark, kind))
