# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Per-modality re-projection heads (the FG-CLIP method) and their upstream checkpoint layout.

The heads map raw CLIP projection outputs into a space where fine-grained attributes separate
better; both sides are L2-normalised afterwards and compared by dot product.

Checkpoint layout (upstream's, a plain dict of tensors): ``linear_layers.<side>.<layer>.{weight,bias}``
with side 0 = visual, 1 = text, and layer counting the Linears only (the activation holds no
parameters). A linear head is ``.0`` (one Linear, no activation); the MLP head is ``.0`` and ``.1``
with tanh after EVERY Linear, the last included: tanh(W1 tanh(W0 x + b0) + b1). A side absent from
the file is the identity ("te-freezed" files hold only the visual side, "ve-freezed" the text side).
"""

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fgclip_ros.core.errors import ModelFileError

HEAD_KINDS = ("identity", "linear", "mlp")
SIDES = ("visual", "text")
_KEY_PATTERN = re.compile(r"^linear_layers\.(\d+)\.(.+)$")


# Linears per head kind; the MLP applies tanh after each of them.
_LINEARS = {"identity": 0, "linear": 1, "mlp": 2}


class Head(nn.Module):
    """One modality's head: identity, Linear(D, D), or tanh(Linear(D, D)) twice (upstream's MLP)."""

    def __init__(self, kind: str, embed_dim: int):
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"head kind {kind!r} is not one of {', '.join(HEAD_KINDS)}")
        self.kind = kind
        self.embed_dim = embed_dim
        # The list's indices are upstream's layer numbers, so its state dict keys map 1:1 to the file.
        self.layers = nn.ModuleList(nn.Linear(embed_dim, embed_dim) for _ in range(_LINEARS[kind]))
        self.activated = kind == "mlp"

    @property
    def is_identity(self) -> bool:
        return self.kind == "identity"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
            if self.activated:
                x = torch.tanh(x)
        return x


class ReprojectionHeads(nn.Module):
    """The visual and text heads; ``project_*`` apply the head then L2-normalise (float32 out)."""

    def __init__(self, visual: Head, text: Head):
        super().__init__()
        if visual.embed_dim != text.embed_dim:
            raise ValueError(f"visual head dim {visual.embed_dim} != text head dim {text.embed_dim}")
        self.visual = visual
        self.text = text

    @classmethod
    def identity(cls, embed_dim: int) -> "ReprojectionHeads":
        return cls(Head("identity", embed_dim), Head("identity", embed_dim))

    @property
    def embed_dim(self) -> int:
        return self.visual.embed_dim

    @property
    def sides(self) -> str:
        """Which sides carry a non-identity head: "both", "visual", "text" or "none"."""
        trained = [name for name in SIDES if not getattr(self, name).is_identity]
        return "both" if len(trained) == 2 else (trained[0] if trained else "none")

    def _project(self, head: Head, raw: torch.Tensor) -> torch.Tensor:
        # Encoders may run in fp16/bf16; the heads and everything after them work in float32.
        x = raw.to(dtype=torch.float32)
        return F.normalize(head(x), dim=-1)

    def project_images(self, raw: torch.Tensor) -> torch.Tensor:
        return self._project(self.visual, raw)

    def project_texts(self, raw: torch.Tensor) -> torch.Tensor:
        return self._project(self.text, raw)


def project(raw: torch.Tensor, heads: ReprojectionHeads | None, side: str) -> torch.Tensor:
    """The one "heads or normalise" rule: float32, the side's head (``"visual"`` | ``"text"``), L2 norm.

    ``heads`` None: the embeddings already passed their heads (an exported graph holds them) or
    there are none (plain CLIP cosine): normalise only.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    if heads is None:
        return F.normalize(raw.to(torch.float32), dim=-1)
    return heads.project_images(raw) if side == "visual" else heads.project_texts(raw)


def _side_state_dicts(state: dict, path: Path) -> dict[int, dict[str, torch.Tensor]]:
    """Group ``linear_layers.<side>.<rest>`` entries by side index; anything else is an error."""
    grouped: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = _KEY_PATTERN.match(key) if isinstance(key, str) else None
        if match is None or int(match.group(1)) >= len(SIDES):
            raise ModelFileError(
                f"{path}: unexpected key {key!r}; a re-projection checkpoint holds only "
                "linear_layers.0.* (visual) and linear_layers.1.* (text)"
            )
        if not isinstance(value, torch.Tensor):
            raise ModelFileError(f"{path}: entry {key!r} is not a tensor; not a re-projection checkpoint")
        grouped.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return grouped


def _load_side(head: Head, side_state: dict[str, torch.Tensor], path: Path, side: str) -> None:
    expected = head.layers.state_dict()
    if set(side_state) != set(expected):
        raise ModelFileError(
            f"{path}: {side} head has keys {sorted(side_state)} but a {head.kind!r} head needs "
            f"{sorted(expected)}; check the manifest's reprojection kind"
        )
    for key, tensor in side_state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ModelFileError(
                f"{path}: {side} head {key} has shape {tuple(tensor.shape)}, expected "
                f"{tuple(expected[key].shape)}; check the manifest's embed_dim and reprojection kind"
            )
    head.layers.load_state_dict({k: v.to(torch.float32) for k, v in side_state.items()})


def load_heads(path: Path, kind: str, embed_dim: int, sides: str | None = None) -> ReprojectionHeads:
    """Load heads saved in the upstream layout; a side missing from the file is the identity.

    ``sides`` ("both" | "visual" | "text"), when given, must match the sides the file holds, so a
    manifest naming the wrong file is caught instead of silently running half the method.
    """
    path = Path(path)
    if kind not in HEAD_KINDS:
        raise ModelFileError(f"{path}: re-projection kind {kind!r} is not one of {', '.join(HEAD_KINDS)}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: not found; provide the re-projection checkpoint there") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{path}: not a readable weights-only torch checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: holds a {type(state).__name__}, expected a state dict of tensors")
    grouped = _side_state_dicts(state, path)
    if not grouped:
        raise ModelFileError(f"{path}: holds no linear_layers.* tensors; not a re-projection checkpoint")
    if kind == "identity":
        raise ModelFileError(f"{path}: kind 'identity' asked for but the file holds weights; fix the kind")
    held = "both" if len(grouped) == 2 else SIDES[next(iter(grouped))]
    if sides is not None and sides != held:
        raise ModelFileError(
            f"{path}: the file holds the {held} side(s) but the manifest says sides: {sides}; "
            "fix the manifest or point it at the right file"
        )
    heads = ReprojectionHeads(Head(kind, embed_dim), Head(kind, embed_dim))
    for index, side_state in grouped.items():
        side = SIDES[index]
        _load_side(getattr(heads, side), side_state, path, side)
    # Sides absent from the file stay identity.
    for index, side in enumerate(SIDES):
        if index not in grouped:
            setattr(heads, side, Head("identity", embed_dim))
    return heads.eval()


def save_heads(heads: ReprojectionHeads, path: Path) -> None:
    """Save in the upstream layout (plain dict of CPU tensors); identity sides are omitted."""
    state: dict[str, torch.Tensor] = {}
    for index, side in enumerate(SIDES):
        head: Head = getattr(heads, side)
        for key, tensor in head.layers.state_dict().items():
            state[f"linear_layers.{index}.{key}"] = tensor.detach().to("cpu", torch.float32).contiguous()
    if not state:
        raise ValueError("both heads are identity; there is nothing to save")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
