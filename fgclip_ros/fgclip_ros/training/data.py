# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Training data for the embedded model: rendered crops, a GPU pool, augmentation, biased captions.

Crops come from the synthetic world (``render_object_crop`` and box crops of ``render_scene``
scenes, cut exactly as the evaluator cuts them) in chunks rendered by DataLoader workers, each chunk
deterministic from ``(seed, stream, chunk index)``. The training loop keeps a pool of crops on the
training device, refreshes it with new chunks, samples batches from it and augments them there, so
a fast GPU is never waiting for 16 CPU cores to draw pictures.

Captions mimic web-caption bias: the category always, each attribute only with a small probability
and, when named, often named loosely and systematically (the next value in the family's order: a
teal mug tagged blue, a translucent bottle tagged transparent), plus nuisance words (a framing
prefix, the background colour). The loose naming is what makes cosine similarity rank attribute hard
negatives poorly while the image embedding still holds the attribute (the two-view image term keeps
it there). They are assembled on the device from per-word token tables (the CLIP tokenizer encodes
word by word, so concatenating word tokens is exactly what it would produce; a test checks this).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fgclip_ros.synth.vocab import (
    ATTRIBUTE_FAMILIES,
    CATEGORIES,
    COLORS,
    FAMILY_VALUES,
    ObjectSpec,
    random_spec,
)

# Columns of a label row; "background" is the index of the named colour nearest to the crop's
# border (-1 when no colour name is close), used only for nuisance words in captions.
LABEL_COLUMNS: tuple[str, ...] = ("category", *ATTRIBUTE_FAMILIES, "background")
LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "category": CATEGORIES,
    **FAMILY_VALUES,
    "background": tuple(COLORS),
}
BACKGROUND_COLUMN = LABEL_COLUMNS.index("background")
_COLOR_TABLE = np.array(list(COLORS.values()), dtype=np.float32)
# Farther than this (RGB Euclidean) from every named colour: the background gets no colour word.
_BACKGROUND_NAME_DISTANCE = 60.0

# Streams keep training, probe-fit and probe-test crops disjoint for the same seed.
STREAM_TRAIN, STREAM_PROBE_FIT, STREAM_PROBE_TEST = 0, 1, 2


def spec_labels(spec: ObjectSpec) -> list[int]:
    """Category and attribute indices of a spec (the first five label columns)."""
    return [LABEL_VALUES[name].index(getattr(spec, name)) for name in LABEL_COLUMNS[:-1]]


def background_label(crop: np.ndarray) -> int:
    """Named colour nearest to the median of the crop's one-pixel border, or -1 if none is close."""
    border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]]).astype(np.float32)
    distance = np.linalg.norm(_COLOR_TABLE - np.median(border, axis=0), axis=1)
    best = int(np.argmin(distance))
    return best if distance[best] <= _BACKGROUND_NAME_DISTANCE else -1


def scene_crops(scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Box crops (K, size, size, 3) uint8 of a scene's objects and their validity, cut as the evaluator cuts.

    ``crop_batch_cpu`` with mean 0 / std 1 returns the crop scaled to [0, 1]; scaling back gives
    the exact pixels the evaluator's crops are made of, before its own normalisation.
    """
    from fgclip_ros.core.crops import Preprocess, crop_batch_cpu

    boxes = np.array([obj.box for obj in scene.objects], dtype=np.float32).reshape(-1, 4)
    crops, check = crop_batch_cpu(scene.image, boxes, Preprocess(size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
    pixels = np.clip(np.rint(crops.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    out[np.flatnonzero(check.valid)] = pixels
    return out, check.valid


def training_scene_seed(rng: np.random.Generator) -> int:
    """A scene seed outside the benchmark's val/test seed ranges (training never sees those scenes)."""
    from fgclip_ros.synth.benchmark import is_held_out_seed

    while True:
        seed = int(rng.integers(2**31 - 1))
        if not is_held_out_seed(seed):
            return seed


def render_crops(
    seed: int, stream: int, index: int, count: int, size: int = 64, scene_fraction: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """One chunk: ``count`` crops uint8 (count, size, size, 3) and labels int64 (count, 6).

    About ``scene_fraction`` of the crops are boxes cut out of full scenes (neighbours, clutter
    and the evaluator's centre-crop geometry), the rest single objects from the renderer's fast path.
    """
    from fgclip_ros.synth.render import render_object_crop, render_scene

    rng = np.random.default_rng([seed, stream, index])
    images = np.empty((count, size, size, 3), np.uint8)
    labels = np.empty((count, len(LABEL_COLUMNS)), np.int64)
    filled = from_scenes = 0
    while filled < count:
        # A scene yields several crops, so pick the source that keeps the running share on target.
        if from_scenes < scene_fraction * (filled + 1):
            scene = render_scene(training_scene_seed(rng))
            crops, valid = scene_crops(scene, size)
            pairs = [(obj.spec, crop) for obj, crop, ok in zip(scene.objects, crops, valid) if ok]
            from_scenes += min(len(pairs), count - filled)
        else:
            spec = random_spec(rng)
            pairs = [(spec, render_object_crop(spec, rng, size=size))]
        for spec, crop in pairs[: count - filled]:
            images[filled] = crop
            labels[filled, :-1] = spec_labels(spec)
            labels[filled, -1] = background_label(crop)
            filled += 1
    return images, labels


class RenderedChunks(torch.utils.data.Dataset):
    """Map-style dataset of rendered chunks: item ``i`` is ``render_crops(seed, stream, i, ...)``."""

    def __init__(
        self, seed: int, stream: int, chunk: int, size: int, scene_fraction: float, length: int = 2**30
    ):
        self.seed, self.stream, self.chunk = seed, stream, chunk
        self.size, self.scene_fraction, self.length = size, scene_fraction, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels = render_crops(
            self.seed, self.stream, index, self.chunk, self.size, self.scene_fraction
        )
        return images, labels


def _worker_init(_worker_id: int) -> None:
    # Each worker is one core's worth of rendering; library thread pools would only fight each other.
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _as_is(item):
    return item


def chunk_loader(dataset: RenderedChunks, workers: int, prefetch: int = 4) -> torch.utils.data.DataLoader:
    """In-order loader of chunks (order is deterministic whatever the number of workers).

    Chunks stay NumPy arrays, so they travel from the workers through pipes rather than shared
    memory: containers often have a small /dev/shm, which tensors in flight could fill.
    """
    kwargs = {
        "num_workers": workers,
        "worker_init_fn": _worker_init if workers else None,
        "collate_fn": _as_is,
    }
    if workers:
        kwargs["prefetch_factor"] = prefetch
    return torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, **kwargs)


def render_set(
    seed: int,
    stream: int,
    count: int,
    size: int = 64,
    scene_fraction: float = 0.3,
    workers: int = 0,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed set of ``count`` crops and labels (held-out sets for probes and periodic metrics)."""
    n_chunks = -(-count // chunk)
    dataset = RenderedChunks(seed, stream, chunk, size, scene_fraction, length=n_chunks)
    parts = list(chunk_loader(dataset, min(workers, n_chunks)))
    images = np.concatenate([p[0] for p in parts])[:count]
    labels = np.concatenate([p[1] for p in parts])[:count]
    return images, labels


class ChunkFeeder:
    """Hands rendered chunks to the training loop.

    ``sync``: each ``take`` blocks for exactly one next chunk (fully reproducible from the seed).
    ``async``: a thread drains the loader into a queue and ``take`` returns whatever is ready,
    so the accelerator never waits for rendering (used with a wall-clock budget, which is not
    step-reproducible anyway).
    """

    def __init__(self, loader: torch.utils.data.DataLoader, mode: str = "sync", max_queued: int = 32):
        if mode not in ("sync", "async"):
            raise ValueError(f"feeder mode {mode!r} is not 'sync' or 'async'")
        self.mode = mode
        self._iterator = iter(loader)
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self._thread = None
        self._error: Exception | None = None
        if mode == "async":
            self._thread = threading.Thread(target=self._pump, daemon=True, name="fgsynth-render-feeder")
            self._thread.start()

    def _pump(self) -> None:
        try:
            for item in self._iterator:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except Exception as error:  # noqa: BLE001 - handed to the training loop, which re-raises it
            self._error = error

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"rendering training crops failed: {self._error!r}") from self._error

    def next_blocking(self):
        """The next chunk, waiting for it (initial pool fill)."""
        if self.mode == "sync":
            return next(self._iterator)
        while True:
            self._check()
            try:
                return self._queue.get(timeout=0.5)
            except queue.Empty:
                continue

    def take(self, max_chunks: int = 1) -> list:
        if self.mode == "sync":
            return [next(self._iterator)]
        self._check()
        items = []
        while len(items) < max_chunks:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # Unblock a pump waiting on a full queue, then let the daemon thread end on its own.
            while not self._queue.empty():
                self._queue.get_nowait()
        # Dropping the iterator shuts the loader's worker processes down.
        self._iterator = None


class CropPool:
    """A ring buffer of uint8 crops and their labels on the training device."""

    def __init__(self, capacity: int, size: int, device: torch.device):
        self.capacity = capacity
        self.images = torch.empty((capacity, size, size, 3), dtype=torch.uint8, device=device)
        self.labels = torch.empty((capacity, len(LABEL_COLUMNS)), dtype=torch.long, device=device)
        self.filled = 0
        self._cursor = 0
        self.added = 0

    def add(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> None:
        images, labels = torch.as_tensor(images), torch.as_tensor(labels)
        n = min(len(images), self.capacity)
        images, labels = images[:n], labels[:n]
        first = min(n, self.capacity - self._cursor)
        slots = [(self._cursor, 0, first), (0, first, n - first)]
        for start, offset, length in slots:
            if length:
                self.images[start : start + length].copy_(images[offset : offset + length], non_blocking=True)
                self.labels[start : start + length].copy_(labels[offset : offset + length], non_blocking=True)
        self._cursor = (self._cursor + n) % self.capacity
        self.filled = min(self.capacity, self.filled + n)
        self.added += n

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(self.filled, (n,), generator=generator, device=self.images.device)
        return self.images[index], self.labels[index]


def augment(
    images: torch.Tensor, generator: torch.Generator, min_scale: float = 0.8, flip: bool = True
) -> torch.Tensor:
    """Random zoom/shift (+ horizontal flip) of uint8 (B, S, S, 3) crops -> float (B, 3, S, S) in [0, 1].

    Geometry only: any colour jitter would change the very attributes the model must keep.
    """
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    if min_scale >= 1.0 and not flip:
        return x
    b, device = x.shape[0], x.device
    scale = torch.empty(b, device=device).uniform_(min_scale, 1.0, generator=generator)
    aspect = torch.exp(torch.empty(b, device=device).uniform_(-0.1, 0.1, generator=generator))
    sx, sy = (scale * aspect).clamp(max=1.0), (scale / aspect).clamp(max=1.0)
    tx = (torch.rand(b, device=device, generator=generator) * 2 - 1) * (1 - sx)
    ty = (torch.rand(b, device=device, generator=generator) * 2 - 1) * (1 - sy)
    sign = torch.ones(b, device=device)
    if flip:
        sign = torch.where(torch.rand(b, device=device, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2] = sx * sign, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    """[0, 1] float (B, 3, S, S) -> the model's normalised input."""
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


@dataclass(frozen=True)
class CaptionStyle:
    """How training captions are drawn for one crop.

    The defaults mimic web captions: the category always, each attribute named independently
    with ``attribute_prob``, a framing prefix and the background colour sometimes. A named
    attribute is the true value with ``attribute_true_prob``, else the next value in the family's
    (cyclic) order (``loose_value``): one-directional, so the loose names stay informative and a
    linear re-projection can undo them. ``full_prob`` is the share of FG-OVD-style full,
    exact captions (every attribute, no nuisance words); a model trained with
    ``attribute_prob=1, full_prob=1`` is the "full-caption" reference.
    """

    attribute_prob: float = 0.1
    background_prob: float = 0.3
    prefix_prob: float = 0.2
    full_prob: float = 0.0
    attribute_true_prob: float = 0.25


def loose_value(values: torch.Tensor, family_size: int) -> torch.Tensor:
    """The next value in the family's (cyclic) value order."""
    return (values + 1) % family_size


PREFIXES: tuple[str, ...] = ("a photo of", "an image of", "a picture of", "there is")
_VOWELS = "aeiou"


class CaptionBuilder:
    """Draws captions for label rows and turns them into CLIP token ids, all on one device."""

    SLOTS: tuple[str, ...] = (
        "prefix",
        "article",
        "transparency",
        "color",
        "pattern",
        "material",
        "category",
        "background",
    )

    def __init__(self, tokenizer, context_length: int, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.context_length = context_length
        self.sot = tokenizer.encoder["<start_of_text>"]
        self.eot = tokenizer.encoder["<end_of_text>"]
        article_of = {c: ("an" if c[0] in _VOWELS else "a") for c in COLORS}
        self.options: dict[str, tuple[str, ...]] = {
            "prefix": PREFIXES,
            "article": ("a", "an"),
            **{family: FAMILY_VALUES[family] for family in ATTRIBUTE_FAMILIES},
            "category": CATEGORIES,
            "background": tuple(f"on {article_of[c]} {c} background" for c in COLORS),
        }
        self.tables: list[torch.Tensor] = []
        for slot in self.SLOTS:
            encoded = [tokenizer.encode(text) for text in self.options[slot]]
            table = torch.full((len(encoded), max(map(len, encoded))), -1, dtype=torch.long)
            for row, ids in enumerate(encoded):
                table[row, : len(ids)] = torch.tensor(ids)
            self.tables.append(table.to(self.device))
        longest = sum(t.shape[1] for t in self.tables)
        if longest > context_length - 2:
            raise ValueError(
                f"captions can reach {longest} tokens; context_length {context_length} is too short"
            )
        # Whether each option of the five article-deciding slots starts with a vowel ("an opaque").
        self._vowel = [
            torch.tensor([text[0] in _VOWELS for text in self.options[slot]], device=self.device)
            for slot in ("transparency", "color", "pattern", "material", "category")
        ]

    def sample_choices(
        self, labels: torch.Tensor, style: CaptionStyle, generator: torch.Generator
    ) -> torch.Tensor:
        """Option index per slot (B, len(SLOTS)); -1 = the slot is left out."""
        labels = labels.to(self.device)
        b = labels.shape[0]

        def coin(p: float) -> torch.Tensor:
            return torch.rand(b, device=self.device, generator=generator) < p

        full = coin(style.full_prob)
        absent = torch.full((b,), -1, dtype=torch.long, device=self.device)
        choices = torch.full((b, len(self.SLOTS)), -1, dtype=torch.long, device=self.device)
        prefix = torch.randint(len(PREFIXES), (b,), device=self.device, generator=generator)
        choices[:, 0] = torch.where(coin(style.prefix_prob) & ~full, prefix, absent)
        for family in ATTRIBUTE_FAMILIES:
            column = LABEL_COLUMNS.index(family)
            named = full | coin(style.attribute_prob)
            loose = ~full & ~coin(style.attribute_true_prob)
            said = torch.where(loose, loose_value(labels[:, column], len(FAMILY_VALUES[family])),
                               labels[:, column])
            choices[:, self.SLOTS.index(family)] = torch.where(named, said, absent)
        choices[:, self.SLOTS.index("category")] = labels[:, 0]
        background = labels[:, BACKGROUND_COLUMN]
        with_background = coin(style.background_prob) & ~full & (background >= 0)
        choices[:, -1] = torch.where(with_background, background, absent)
        # The article agrees with the first word after it.
        present, vowel = [], []
        for k, slot in enumerate(("transparency", "color", "pattern", "material", "category")):
            idx = choices[:, self.SLOTS.index(slot)]
            present.append(idx >= 0)
            vowel.append(self._vowel[k][idx.clamp(min=0)] & (idx >= 0))
        first = torch.stack(present, 1).int().argmax(1, keepdim=True)
        choices[:, 1] = torch.stack(vowel, 1).gather(1, first).squeeze(1).long()
        return choices

    def tokens(self, choices: torch.Tensor) -> torch.Tensor:
        """Token ids (B, context_length): <sot> words <eot> then zeros, as open_clip's tokenizer gives."""
        parts = []
        for slot, table in enumerate(self.tables):
            idx = choices[:, slot]
            part = table[idx.clamp(min=0)]
            parts.append(torch.where((idx >= 0)[:, None], part, torch.full_like(part, -1)))
        words = torch.cat(parts, 1)
        valid = words >= 0
        # A stable sort on "is padding" moves the real tokens to the front in their order.
        order = torch.sort((~valid).to(torch.int32), dim=1, stable=True).indices
        words = words.gather(1, order)[:, : self.context_length - 2].clamp(min=0)
        length = valid.sum(1)
        out = torch.zeros((len(choices), self.context_length), dtype=torch.long, device=choices.device)
        out[:, 0] = self.sot
        out[:, 1 : 1 + words.shape[1]] = words
        positions = torch.arange(self.context_length, device=choices.device)[None]
        out = torch.where(positions > length[:, None], torch.zeros_like(out), out)
        out.scatter_(1, (length + 1)[:, None], self.eot)
        return out

    def texts(self, choices: torch.Tensor) -> list[str]:
        """The caption strings of ``choices`` (for logs and tests)."""
        rows = choices.tolist()
        return [" ".join(self.options[slot][c] for slot, c in zip(self.SLOTS, row) if c >= 0) for row in rows]

    def build(self, labels: torch.Tensor, style: CaptionStyle, generator: torch.Generator) -> torch.Tensor:
        return self.tokens(self.sample_choices(labels, style, generator))
