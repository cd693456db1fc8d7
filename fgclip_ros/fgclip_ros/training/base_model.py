# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Train the embedded model ``fgsynth``: a small open_clip CLIP from a JSON config, on rendered crops.

Training is plain CLIP: open_clip's ``ClipLoss`` between augmented crops and web-style biased
captions (``data.CaptionStyle``), AdamW with warm-up and a cosine schedule, bf16 autocast on CUDA.
The cosine schedule follows *progress* = max(step / max_steps, elapsed / max_seconds), so a
wall-clock budget (the device machine) still ends with a fully decayed learning rate.

Outputs in ``out_dir``: ``<name>.safetensors`` (weights, fp16 by default), ``<name>.json`` (the
open_clip model config), ``<name>_train_log.json`` (settings, environment, loss curve, periodic
held-out metrics). With ``max_steps`` only, the run is reproducible from the seed (the renderer
feeds chunks in a fixed order); with ``max_seconds`` the number of steps depends on the machine.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from fgclip_ros.core.device import resolve_device
from fgclip_ros.core.paths import models_dir
from fgclip_ros.training import data, probes

LOG = logging.getLogger("fgclip_ros.train.base")

DEFAULT_MODEL_CONFIG = "fgsynth/fgsynth.json"  # relative to models_dir()
SAVE_DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}


def default_model_config() -> Path:
    return models_dir() / DEFAULT_MODEL_CONFIG


def load_model_config(path: str | Path) -> dict:
    config = json.loads(Path(path).read_text())
    if not all(key in config for key in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ValueError(f"{path}: not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)")
    return config


def build_model(architecture: str, config_path: str | Path, seed: int, device: torch.device):
    """A freshly initialised open_clip model exactly as ``TorchEncoder.from_open_clip`` will rebuild it."""
    import open_clip

    from fgclip_ros.core.encoders import register_model_config

    overrides = register_model_config(architecture, config_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(architecture, device=device, force_preprocess_cfg=overrides or None)
    tokenizer = open_clip.get_tokenizer(architecture)
    return model, tokenizer


def model_size_bytes(model: torch.nn.Module, dtype: torch.dtype) -> int:
    element = torch.empty((), dtype=dtype).element_size()
    return sum(t.numel() for t in model.state_dict().values()) * element


@dataclass
class BaseTrainConfig:
    """Everything a base-model run depends on (saved verbatim in the training log)."""

    out_dir: str
    model_config: str = ""  # open_clip config JSON; "" = models/fgsynth/fgsynth.json
    name: str = "fgsynth"  # architecture name and output file stem
    seed: int = 0
    device: str = "auto"  # auto = cuda if available
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 200
    max_steps: int = 0  # 0 = no step limit (then max_seconds must be set)
    max_seconds: float = 0.0  # wall-clock budget of the training loop; 0 = none
    min_lr_ratio: float = 0.02
    pool_size: int = 65536  # crops kept on the training device
    pool_start: int = 0  # crops rendered before step 1; 0 = pool_size (the rest arrive while training)
    chunk: int = 128  # crops per rendered chunk
    chunks_per_step: int = 8  # async mode: at most this many new chunks enter the pool per step
    workers: int = -1  # render worker processes; -1 = all cores but one
    feeder: str = "auto"  # sync | async | auto (async when max_seconds is set)
    scene_fraction: float = 0.7  # share of training crops cut from full scenes (the rest: single objects)
    min_scale: float = 0.8  # augmentation zoom range [min_scale, 1]
    attribute_prob: float = 0.1
    background_prob: float = 0.3
    prefix_prob: float = 0.2
    full_prob: float = 0.0
    attribute_true_prob: float = 0.25  # a named attribute is the true value this often, else the next
    image_ssl_weight: float = 0.5  # weight of the two-view image term (0 = plain CLIP)
    image_ssl_temperature: float = 0.1
    eval_every_seconds: float = 60.0  # periodic held-out metrics (and at the end); 0 = only at the end
    eval_every_steps: int = 0
    eval_images: int = 1536  # per held-out half (probe fit / probe test)
    eval_scene_fraction: float = 1.0  # held-out crops: box crops of scenes, as the benchmark's
    log_every: int = 50
    save_dtype: str = "fp16"  # fp16 keeps the committed weights small
    amp: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU; or bf16 | fp16 | none
    progress: bool = True  # tqdm bars (only on a TTY); False = log lines only
    extra: dict = field(default_factory=dict)


@dataclass
class BaseTrainResult:
    weights: Path
    config: Path
    log: Path
    steps: int
    seconds: float
    images_seen: int
    final_metrics: dict


def _resolve_device(name: str) -> torch.device:
    return torch.device(resolve_device(name))


def _autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # Like open_clip's training: no decay on gains, biases, embeddings of size 1 and the temperature.
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exclude = param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def lr_factor(step: int, progress: float, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up over steps, then cosine decay over progress in [0, 1] down to ``min_ratio``."""
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return warm * (min_ratio + (1.0 - min_ratio) * cosine)


def two_view_loss(features: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent between the two augmented views of each crop (rows i and i + N of ``features``).

    A label-free image term (as in SLIP) that makes the image embedding keep what tells one crop
    from another - colour, pattern, material, transparency, background - even though the biased
    captions rarely name it; it stands in for the variety of real web data.
    """
    z = F.normalize(features, dim=-1)
    n = z.shape[0] // 2
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


class _ModelFns:
    """encode_images / encode_texts of a model in training, for the probes (eval mode, no grad)."""

    def __init__(self, model, tokenizer, device: torch.device, autocast: torch.dtype | None):
        self.model, self.tokenizer, self.device, self.autocast = model, tokenizer, device, autocast

    def _ctx(self):
        if self.autocast is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast)

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        with self._ctx():
            return self.model.encode_image(pixels.to(self.device)).float()

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        with self._ctx():
            return self.model.encode_text(self.tokenizer(texts).to(self.device)).float()


def evaluate_model(model, tokenizer, preprocess, heldout, device, autocast=None, max_iter: int = 200) -> dict:
    """Probe accuracies and cosine hard-negative ranks of ``model`` on held-out crops."""
    was_training = model.training
    model.eval()
    fns = _ModelFns(model, tokenizer, device, autocast)
    (fit_images, fit_labels), (test_images, test_labels) = heldout
    fit_x = probes.embed_crops(fns.encode_images, fit_images, preprocess.mean, preprocess.std, device)
    test_x = probes.embed_crops(fns.encode_images, test_images, preprocess.mean, preprocess.std, device)
    result = {"probe": probes.probe_families(fit_x, fit_labels, test_x, test_labels, max_iter=max_iter)}
    result["cosine"] = probes.hard_negative_check(test_x, test_labels, fns.encode_texts)
    model.train(was_training)
    return result


def render_heldout(cfg: BaseTrainConfig, size: int, workers: int):
    """Probe-fit and probe-test crops: streams disjoint from the training stream of the same seed."""
    return tuple(
        data.render_set(cfg.seed, stream, cfg.eval_images, size, cfg.eval_scene_fraction, workers)
        for stream in (data.STREAM_PROBE_FIT, data.STREAM_PROBE_TEST)
    )


def format_metrics(metrics: dict) -> str:
    probe = " ".join(f"{k[:5]}={v:.3f}" for k, v in metrics["probe"].items())
    cos = metrics["cosine"]
    ranks = " ".join(f"{f[:5]}={cos[f'rank_{f}']:.2f}" for f in probes.ATTRIBUTE_FAMILIES)
    summary = f"sum={cos['rank_sum']:.2f}] cat-acc={cos['category_accuracy']:.3f}"
    return f"probe[{probe}] cosine-rank[{ranks} {summary}"


def save_weights(model: torch.nn.Module, path: Path, dtype: str) -> None:
    from safetensors.torch import save_file

    torch_dtype = SAVE_DTYPES[dtype]
    state = {
        k: (v.detach().to("cpu", torch_dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(path), metadata={"format": "pt", "dtype": dtype})


def train_base_model(cfg: BaseTrainConfig) -> BaseTrainResult:
    """Train, evaluate periodically, save weights + config + log; returns where they went."""
    from open_clip.loss import ClipLoss
    from tqdm import tqdm

    from fgclip_ros.core.crops import Preprocess

    if cfg.max_steps <= 0 and cfg.max_seconds <= 0:
        raise ValueError("set max_steps or max_seconds (or both)")
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = Path(cfg.model_config) if cfg.model_config else default_model_config()
    model_config = load_model_config(config_path)
    device = _resolve_device(cfg.device)
    autocast = _autocast_dtype(cfg.amp, device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for whatever runs outside bf16 autocast
    workers = (os.cpu_count() or 2) - 1 if cfg.workers < 0 else cfg.workers
    feeder_mode = cfg.feeder if cfg.feeder != "auto" else ("async" if cfg.max_seconds > 0 else "sync")
    if feeder_mode == "async" and workers == 0:
        feeder_mode = "sync"  # nothing would render in the background

    model, tokenizer = build_model(cfg.name, config_path, cfg.seed, device)
    preprocess = Preprocess.from_open_clip(model)
    size = preprocess.size
    context_length = model_config["text_cfg"].get("context_length", 77)
    LOG.info(
        "model %s: %.2f M parameters (%.1f MB as %s); device %s, autocast %s, %d render workers (%s)",
        cfg.name,
        sum(p.numel() for p in model.parameters()) / 1e6,
        model_size_bytes(model, SAVE_DTYPES[cfg.save_dtype]) / 1e6,
        cfg.save_dtype,
        device,
        autocast,
        workers,
        feeder_mode,
    )

    t0 = time.perf_counter()
    heldout = render_heldout(cfg, size, workers)
    LOG.info("held-out crops: 2 x %d rendered in %.1f s", cfg.eval_images, time.perf_counter() - t0)

    style = data.CaptionStyle(
        cfg.attribute_prob, cfg.background_prob, cfg.prefix_prob, cfg.full_prob, cfg.attribute_true_prob
    )
    captions = data.CaptionBuilder(tokenizer, context_length, device)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)
    dataset = data.RenderedChunks(cfg.seed, data.STREAM_TRAIN, cfg.chunk, size, cfg.scene_fraction)
    feeder = data.ChunkFeeder(data.chunk_loader(dataset, workers), feeder_mode)
    pool = data.CropPool(cfg.pool_size, size, device)

    t0 = time.perf_counter()
    pool_start = min(cfg.pool_start or cfg.pool_size, cfg.pool_size)
    fill = tqdm(total=pool_start, desc="render pool", unit="crop", disable=None if cfg.progress else True)
    while pool.filled < pool_start:
        images, labels = feeder.next_blocking()
        pool.add(images, labels)
        fill.update(len(images))
    fill.close()
    pool_seconds = time.perf_counter() - t0
    LOG.info(
        "pool of %d crops rendered in %.1f s (%.0f crops/s)",
        pool.filled,
        pool_seconds,
        pool.filled / max(pool_seconds, 1e-9),
    )

    views = 2 if cfg.image_ssl_weight > 0 else 1
    if cfg.batch_size % views:
        raise ValueError(f"batch_size {cfg.batch_size} must be even with the two-view image term")
    model.train()
    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
        **({"fused": True} if device.type == "cuda" else {}),
    )
    loss_fn = ClipLoss()
    history: list[dict] = []
    evaluations: list[dict] = []
    step = 0
    images_seen = 0
    last_eval = 0.0
    bar = tqdm(total=cfg.max_steps or None, desc="train", unit="step", disable=None if cfg.progress else True)
    start = time.perf_counter()
    window_start, window_images = start, 0
    elapsed = 0.0
    loss_value = float("nan")

    def progress() -> float:
        p = 0.0
        if cfg.max_steps > 0:
            p = max(p, step / cfg.max_steps)
        if cfg.max_seconds > 0:
            p = max(p, elapsed / cfg.max_seconds)
        return p

    weights_path = out_dir / f"{cfg.name}.safetensors"
    saved_config = out_dir / f"{cfg.name}.json"
    log_path = out_dir / f"{cfg.name}_train_log.json"
    environment = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "render_workers": workers,
        "feeder": feeder_mode,
        "autocast": str(autocast),
    }

    def save(final: dict | None) -> None:
        """Weights, config and log; also after each periodic evaluation, so a killed run leaves a model."""
        save_weights(model, weights_path, cfg.save_dtype)
        if saved_config.resolve() != config_path.resolve():
            saved_config.write_text(json.dumps(model_config, indent=2) + "\n")
        log = {
            "config": asdict(cfg),
            "model_config": model_config,
            "environment": environment,
            "complete": final is not None,
            "steps": step,
            "train_seconds": round(elapsed, 1),
            "images_seen": images_seen,
            "crops_rendered": pool.added,
            "pool_fill_seconds": round(pool_seconds, 1),
            "weights_bytes": weights_path.stat().st_size,
            "final": final,
            "evaluations": evaluations,
            "history": history,
            "chance_ranks": probes.chance_ranks(),
        }
        log_path.write_text(json.dumps(log, indent=2) + "\n")

    def run_eval(tag: str) -> dict:
        t = time.perf_counter()
        metrics = evaluate_model(model, tokenizer, preprocess, heldout, device, autocast)
        metrics.update(step=step, seconds=round(elapsed, 1), eval_seconds=round(time.perf_counter() - t, 1))
        evaluations.append(metrics)
        LOG.info("[%s] step %d %.0fs %s", tag, step, elapsed, format_metrics(metrics))
        return metrics

    try:
        while progress() < 1.0:
            for images, labels in feeder.take(cfg.chunks_per_step):
                pool.add(images, labels)
            factor = lr_factor(step, progress(), cfg.warmup_steps, cfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * factor
            crops, crop_labels = pool.sample(cfg.batch_size // views, generator)
            batch_images, batch_labels = crops.repeat(views, 1, 1, 1), crop_labels.repeat(views, 1)
            pixels = data.normalise(
                data.augment(batch_images, generator, cfg.min_scale), preprocess.mean, preprocess.std
            )
            tokens = captions.build(batch_labels, style, generator)  # each view gets its own caption draw
            with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                image_features, text_features, logit_scale = model(pixels, tokens)
            # The losses' similarity matrices in float32: bf16 would blur logits of up to 100.
            clip_loss = loss_fn(image_features.float(), text_features.float(), logit_scale.float())
            ssl_loss = (
                two_view_loss(image_features.float(), cfg.image_ssl_temperature) if views == 2 else None
            )
            loss = clip_loss if ssl_loss is None else clip_loss + cfg.image_ssl_weight * ssl_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
            images_seen += cfg.batch_size
            window_images += cfg.batch_size
            bar.update(1)
            elapsed = time.perf_counter() - start
            if step % cfg.log_every == 0 or progress() >= 1.0:
                loss_value = float(loss.detach())  # synchronises; only at log steps
                now = time.perf_counter()
                rate = window_images / max(now - window_start, 1e-9)
                window_start, window_images = now, 0
                entry = {
                    "step": step,
                    "seconds": round(elapsed, 2),
                    "loss": round(loss_value, 4),
                    "clip_loss": round(float(clip_loss.detach()), 4),
                    "image_ssl_loss": None if ssl_loss is None else round(float(ssl_loss.detach()), 4),
                    "lr": cfg.lr * factor,
                    "logit_scale": round(float(model.logit_scale.detach().exp()), 2),
                    "images_per_s": round(rate),
                    "pool_added": pool.added,
                }
                history.append(entry)
                bar.set_postfix(loss=f"{loss_value:.3f}", ips=f"{rate:.0f}")
                LOG.info(
                    "step %d %.0fs loss %.4f (clip %.4f) lr %.2e scale %.1f %.0f img/s, %d crops rendered",
                    step,
                    elapsed,
                    loss_value,
                    entry["clip_loss"],
                    entry["lr"],
                    entry["logit_scale"],
                    rate,
                    pool.added,
                )
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"loss became {loss_value} at step {step}")
            due_seconds = cfg.eval_every_seconds > 0 and elapsed - last_eval >= cfg.eval_every_seconds
            due_steps = cfg.eval_every_steps > 0 and step % cfg.eval_every_steps == 0
            if (due_seconds or due_steps) and progress() < 1.0:
                pause = time.perf_counter()
                run_eval("eval")
                save(None)
                last_eval = elapsed
                # Evaluation and saving do not count against the training budget.
                start += time.perf_counter() - pause
                window_start += time.perf_counter() - pause
    finally:
        bar.close()
        feeder.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    final = run_eval("final")
    save(final)
    LOG.info(
        "saved %s (%.1f MB), %s, %s after %d steps, %.0f s, %d images",
        weights_path,
        weights_path.stat().st_size / 1e6,
        saved_config,
        log_path,
        step,
        elapsed,
        images_seen,
    )
    return BaseTrainResult(weights_path, saved_config, log_path, step, elapsed, images_seen, final)
