# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Latency / throughput benchmark of the per-frame path (what ``fgclip-bench`` runs).

A synthetic 1280x720 frame with N boxes is scored against M queries by:

- ``naive``: what a first implementation does: per box a PIL crop and open_clip's own eval
  transform on the CPU, then one float32 batch through the tower, heads and matching;
- ``encoder``: the image tower + heads alone on a batch already on the device (CUDA: eager and as a
  CUDA graph replay; CPU: PyTorch, and ONNX Runtime with the exported graph);
- ``pipeline``: the node's own per-frame function, ``PerceptionEngine.process``, frame + boxes in,
  per-box results out (CUDA: the fused ``gpu.GpuFrameEncoder`` path; CPU: crops + the PyTorch or
  ONNX Runtime encoder + matching);
- ``bulk``: crops/s of ``encoder`` and ``pipeline`` at large batches (one frame, many boxes).

Each measurement repeats for a time budget (at least `min_iters` runs) after warm-up runs and
reports the median and the 99th percentile of the per-run wall time; CUDA work is synchronised
inside every run, so a run is what one frame costs a caller.
"""

import copy
import datetime
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from fgclip_ros.core.device import resolve_device
from fgclip_ros.core.errors import FgclipError
from fgclip_ros.core.matcher import match
from fgclip_ros.core.prompts import prompts
from fgclip_ros.core.reprojection import Head, ReprojectionHeads, project

LOG = logging.getLogger("fgclip_ros.bench")

FRAME_W, FRAME_H = 1280, 720
_TRACE_BOXES = 16  # the target frame: the one N whose profiler trace is kept
_COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "orange")
_MATERIALS = ("ceramic", "glass", "metal", "wooden", "plastic", "fabric", "paper", "leather")
_CATEGORIES = ("mug", "bottle", "bowl", "box", "ball", "can", "cup", "vase")


@dataclass
class BenchConfig:
    model: str | None = None  # manifest name or path
    arch: str | None = None  # open_clip architecture (with random_weights)
    model_config: Path | None = None  # open_clip model-config JSON for a custom arch
    random_weights: bool = False
    device: str = "cpu"
    dtype: str = "fp16"  # fast-path tower dtype on CUDA (CPU always runs fp32)
    backends: tuple[str, ...] = ("torch",)  # CPU: torch and/or onnx
    boxes: tuple[int, ...] = (1, 4, 16, 64)
    queries: int = 64
    bulk: tuple[int, ...] = (128, 512)
    modes: tuple[str, ...] = ("naive", "encoder", "pipeline", "bulk")
    budget_s: float = 2.0  # per measurement
    min_iters: int = 3
    max_iters: int = 500
    warmup_iters: int | None = None  # None: 3 on CUDA, 1 on the CPU (one CPU run can take seconds)
    seed: int = 0
    onnx_dir: Path | None = None  # reuse / keep the exported graphs here
    threads: int = 0  # CPU threads for torch and ONNX Runtime alike (0: their defaults)
    ort_threads: int = 0  # 0: `threads`, else ONNX Runtime's default (one per physical core)
    ort_level: str = "all"
    progress: bool | None = None
    profile_dir: Path | None = None  # torch.profiler tables (and one trace) of the pipeline go here
    timeline_frames: int = 50  # CUDA: frames whose host/GPU marks give each N's timeline
    compile_boxes: tuple[int, ...] = ()  # CUDA section: also time a torch.compile'd tower at these N
    compile_backend: str = "inductor"


@dataclass
class Row:
    section: str  # naive | encoder | pipeline | bulk | text
    variant: str  # e.g. "torch fp32", "torch fp16 cuda-graph", "onnxruntime CPU fp32"
    boxes: int
    queries: int
    median_ms: float
    p99_ms: float
    crops_per_s: float
    iters: int


@dataclass
class BenchResult:
    meta: dict
    rows: list[Row] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    # CUDA: per N, median ms since the frame began at which the host / the GPU passed each point.
    timelines: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "meta": self.meta,
            "rows": [asdict(r) for r in self.rows],
            "summary": self.summary,
            "timelines": self.timelines,
        }


# ---------------------------------------------------------------------------------------------- inputs
def synthetic_frame(width: int = FRAME_W, height: int = FRAME_H, seed: int = 0) -> np.ndarray:
    """A deterministic RGB frame with smooth regions and texture (JPEG-like content, not flat noise)."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(9, 16, 3), dtype=np.uint8)
    frame = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    frame += rng.integers(-20, 21, size=frame.shape, dtype=np.int16)
    return np.clip(frame, 0, 255).astype(np.uint8)


def synthetic_boxes(count: int, width: int = FRAME_W, height: int = FRAME_H, seed: int = 0) -> np.ndarray:
    """(count, 4) xyxy boxes of detector-like sizes (24..360 px, aspect 1:3..3:1) inside the frame."""
    rng = np.random.default_rng(seed + 1)
    side = np.exp(rng.uniform(np.log(24), np.log(360), count))
    aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3), count))
    w = np.minimum(side * np.sqrt(aspect), width - 1)
    h = np.minimum(side / np.sqrt(aspect), height - 1)
    x = rng.uniform(0, width - w)
    y = rng.uniform(0, height - h)
    return np.stack([x, y, x + w, y + h], axis=1).astype(np.float64)


def synthetic_queries(count: int) -> list[str]:
    """`count` distinct fine-grained captions ("a red ceramic mug", ...)."""
    captions = [f"a {c} {m} {k}" for k in _CATEGORIES for m in _MATERIALS for c in _COLORS]
    if count > len(captions):
        raise ValueError(f"at most {len(captions)} synthetic queries, asked for {count}")
    rng = np.random.default_rng(1234)
    return [captions[i] for i in rng.permutation(len(captions))[:count]]


# ---------------------------------------------------------------------------------------------- timing
class Timer:
    def __init__(self, config: BenchConfig, device: torch.device):
        self.config = config
        self.device = device

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def measure(self, fn: Callable[[], object], budget_s: float | None = None) -> tuple[float, float, int]:
        """(median ms, p99 ms, runs) of fn() + device sync, repeated for the time budget."""
        return self.measure_interleaved([fn], budget_s)[0]

    def measure_interleaved(
        self, fns: list[Callable[[], object]], budget_s: float | None = None
    ) -> list[tuple[float, float, int]]:
        """Like measure() for several functions run in turn (A, B, A, B, ...), one result each.

        Interleaving keeps comparisons fair on a shared machine: load that comes and goes hits every
        variant alike instead of whichever happened to run then.
        """
        budget = self.config.budget_s * len(fns) if budget_s is None else budget_s
        warmup = self.config.warmup_iters
        for fn in fns:
            for _ in range(warmup if warmup is not None else (3 if self.device.type == "cuda" else 1)):
                fn()
        self._sync()
        times: list[list[float]] = [[] for _ in fns]
        deadline = time.perf_counter() + budget
        while len(times[0]) < self.config.max_iters and (
            len(times[0]) < self.config.min_iters or time.perf_counter() < deadline
        ):
            for fn, samples in zip(fns, times, strict=True):
                start = time.perf_counter()
                fn()
                self._sync()
                samples.append((time.perf_counter() - start) * 1e3)
        return [
            (float(np.median(samples)), float(np.percentile(samples, 99)), len(samples)) for samples in times
        ]


def profile_frames(fn: Callable[[], object], device: torch.device, label: str, out_dir: Path,
                   frames: int = 20, trace: bool = False) -> Path:
    """torch.profiler over `frames` calls of fn (each synchronised); appends the op table to profile.txt.

    The table is sorted by self time on the device (CUDA) or on the CPU; with `trace`, a Chrome
    trace of the same frames is written as trace_<label>.json (open it in chrome://tracing or Perfetto).
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for _ in range(3):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        for _ in range(frames):
            with record_function("frame"):
                fn()
                if cuda:
                    torch.cuda.synchronize(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    sort_by = "self_device_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_by, row_limit=30, max_name_column_width=60)
    path = out_dir / "profile.txt"
    with path.open("a") as stream:
        stream.write(f"== {label}: {frames} frames, sorted by {sort_by}\n{table}\n")
    if trace:
        prof.export_chrome_trace(str(out_dir / f"trace_{label}.json"))
    return path


# ---------------------------------------------------------------------------------------------- models
@dataclass
class _Models:
    model: torch.nn.Module  # float32 open_clip model on the CPU (the source of every variant)
    tokenizer: Callable
    preprocess: object  # crops.Preprocess
    heads: ReprojectionHeads
    name: str
    prompt_template: str


def _load_models(config: BenchConfig) -> _Models:
    from fgclip_ros.core.crops import Preprocess
    from fgclip_ros.core.encoders import TorchEncoder, build_encoder, register_model_config
    from fgclip_ros.core.manifest import load_manifest
    from fgclip_ros.core.pipeline import load_manifest_heads

    if config.model:
        manifest = load_manifest(config.model)
        encoder = build_encoder(manifest, backend="torch", device="cpu", dtype="fp32")
        heads = load_manifest_heads(manifest, encoder.embed_dim)
        return _Models(
            encoder.model,
            encoder.tokenizer,
            encoder.preprocess,
            heads,
            manifest.name,
            manifest.prompt_template,
        )
    if not (config.arch and config.random_weights):
        raise FgclipError("give --model NAME, or --arch ARCH --random-weights")
    import open_clip

    if config.model_config:
        register_model_config(config.arch, config.model_config)
    torch.manual_seed(config.seed)
    model = open_clip.create_model(config.arch, pretrained=None).eval()
    encoder = TorchEncoder(
        model, open_clip.get_tokenizer(config.arch), Preprocess.from_open_clip(model), "cpu", "fp32"
    )
    # Random linear heads on both sides: the paper's default model has them, so their cost is counted.
    dim = encoder.embed_dim
    heads = ReprojectionHeads(Head("linear", dim), Head("linear", dim)).eval()
    return _Models(
        model, encoder.tokenizer, encoder.preprocess, heads, f"{config.arch} (random weights)", "{}"
    )


def _open_clip_transform(model):
    import open_clip
    from open_clip.transform import PreprocessCfg

    return open_clip.transform.image_transform_v2(
        PreprocessCfg(**model.visual.preprocess_cfg), is_train=False
    )


# ---------------------------------------------------------------------------------------------- runs
class Benchmark:
    """The measurements of one configuration: ``run()`` picks the device's section; rows, timelines."""

    def __init__(self, config: BenchConfig):
        self.config = config
        self.device = torch.device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
            config.ort_threads = config.ort_threads or config.threads
        self.timer = Timer(config, self.device)
        self.models = _load_models(config)
        self.frame = synthetic_frame(seed=config.seed)
        self.queries = synthetic_queries(config.queries)
        # The component rows feed the text tower directly, with the prompts the engine builds.
        self.prompts = prompts(self.models.prompt_template, self.queries)
        self.rows: list[Row] = []
        self.timelines: dict[str, dict[str, float]] = {}
        self._progress = None

    def add(self, section: str, variant: str, boxes: int, timing: tuple[float, float, int]) -> Row:
        median, p99, iters = timing
        row = Row(
            section,
            variant,
            boxes,
            self.config.queries,
            round(median, 4),
            round(p99, 4),
            round(boxes / (median / 1e3), 1) if median > 0 else 0.0,
            iters,
        )
        self.rows.append(row)
        LOG.info(
            "%-8s %-34s N=%-4d median %9.3f ms  p99 %9.3f ms  %9.1f crops/s",
            section,
            variant,
            boxes,
            row.median_ms,
            row.p99_ms,
            row.crops_per_s,
        )
        if self._progress is not None:
            self._progress.update()
        return row

    # -- torch encoders
    def torch_encoder(self, dtype: str):
        from fgclip_ros.core.encoders import TorchEncoder

        model = copy.deepcopy(self.models.model)
        return TorchEncoder(model, self.models.tokenizer, self.models.preprocess, self.device, dtype)

    def text_embeddings(self, encoder, heads: ReprojectionHeads | None) -> torch.Tensor:
        with torch.inference_mode():
            return project(encoder.encode_texts(self.prompts), None if encoder.projected else heads, "text")

    def engine(self, encoder, heads: ReprojectionHeads | None):
        """The node's per-frame function around `encoder`: what every "pipeline" row times."""
        from fgclip_ros.core.perception import PerceptionEngine
        from fgclip_ros.core.pipeline import Pipeline

        pipeline = Pipeline(encoder, heads, prompt_template=self.models.prompt_template)
        height, width = self.frame.shape[:2]
        pipeline.prepare_frames(width, height)
        engine = PerceptionEngine(pipeline, max_detections=0)  # 0: every box, bulk rows included
        engine.set_queries(self.queries)
        return engine

    # -- (a) naive
    def naive_frame(self, fp32_encoder, heads: ReprojectionHeads, text: torch.Tensor, boxes: np.ndarray):
        """The naive per-frame function: PIL crop + open_clip's transform per box, one fp32 batch, match."""
        from PIL import Image

        transform = _open_clip_transform(fp32_encoder.model)
        scale = fp32_encoder.logit_scale

        def naive():
            picture = Image.fromarray(self.frame)
            batch = torch.stack([transform(picture.crop(tuple(float(v) for v in box))) for box in boxes])
            with torch.inference_mode():
                embeddings = heads.project_images(fp32_encoder.encode_images(batch.to(self.device)))
                return match(embeddings, text, scale)

        return naive

    def naive_label(self) -> str:
        return f"PIL + open_clip preprocess, torch fp32 {self.device.type}"

    def run_naive(self, heads: ReprojectionHeads) -> None:
        fp32 = self.torch_encoder("fp32")
        naive_heads = copy.deepcopy(heads).to(self.device)
        text = self.text_embeddings(fp32, naive_heads)
        for count in self.config.boxes:
            naive = self.naive_frame(fp32, naive_heads, text, synthetic_boxes(count, seed=self.config.seed))
            self.add("naive", self.naive_label(), count, self.timer.measure(naive))
        del fp32
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- CUDA: (b) encoder eager / graph, (c) pipeline, bulk
    def run_gpu_section(self, heads: ReprojectionHeads) -> None:
        """The CUDA section's rows (encoder, pipeline, stages, bulk, torch.compile, timelines).

        On a CPU device it runs eagerly (no graphs, no pinned memory): its code can be checked
        on machines without a GPU.
        """
        from fgclip_ros.core.gpu.frame_encoder import GpuFrameEncoder

        config = self.config
        encoder = self.torch_encoder(config.dtype)
        heads = copy.deepcopy(heads).to(self.device)
        start = time.perf_counter()
        height, width = self.frame.shape[:2]
        fast = GpuFrameEncoder(encoder, heads, cuda_graphs=True, frame_size=(width, height))
        LOG.info("CUDA graph warm-up (%d buckets): %.2f s", len(fast.buckets), time.perf_counter() - start)
        tower = _TowerGraphs(fast) if fast.cuda_graphs else None
        engine = self.engine(encoder, heads)
        text = self.text_embeddings(encoder, heads)
        self.add(
            "text",
            f"text tower + head, torch {config.dtype}",
            config.queries,
            self.timer.measure(lambda: self.text_embeddings(encoder, heads)),
        )
        tag = f"torch {config.dtype}"
        sizes = sorted(set(config.boxes) | (set(config.bulk) if "bulk" in config.modes else set()))
        for count in sizes:
            boxes = synthetic_boxes(count, seed=config.seed)
            raw_crops, _ = fast.crop(self.frame, boxes)
            section = "bulk" if count not in config.boxes else None
            graphed = tower is not None and tower.bucket_for(count) is not None
            if "encoder" in config.modes or section:
                with torch.no_grad():
                    self.add(
                        section or "encoder",
                        f"{tag} eager",
                        count,
                        self.timer.measure(lambda raw=raw_crops: fast.run_tower(raw)),
                    )
                    if graphed:
                        self.add(
                            section or "encoder",
                            f"{tag} cuda-graph",
                            count,
                            self.timer.measure(lambda raw=raw_crops: tower(raw)),
                        )
            if "pipeline" in config.modes or section:
                fns = [lambda b=boxes: engine.process(self.frame, b)]
                labels = [(section or "pipeline", f"PerceptionEngine.process, fused GpuFrameEncoder {tag}")]
                if graphed and not section:
                    # The previous design, crops cut eagerly and then the tower graph, in the same
                    # rotation: what moving the crops into the graph changed, on the same machine.
                    fns.append(lambda b=boxes: _two_step(fast, tower, self.frame, b, text))
                    labels.append(("pipeline", f"two-step: crop, then tower graph, {tag}"))
                for (where, label), timing in zip(labels, self.timer.measure_interleaved(fns), strict=True):
                    self.add(where, label, count, timing)
            if "pipeline" in config.modes and not section:
                # Where the pipeline's time beyond the tower goes: box checks, upload, roi_align.
                self.add(
                    "stage",
                    "crop: checks + upload + roi_align",
                    count,
                    self.timer.measure(lambda b=boxes: fast.crop(self.frame, b)),
                )
                self.timelines[f"N={count}"] = self.timeline(fast, boxes, text)
                if config.profile_dir:
                    profile_frames(
                        lambda b=boxes: engine.process(self.frame, b),
                        self.device,
                        f"N{count}",
                        Path(config.profile_dir),
                        trace=count == _TRACE_BOXES,
                    )
        if config.compile_boxes:
            self.run_compiled_tower(fast, tag)

    def run_compiled_tower(self, fast, tag: str) -> None:
        """An experiment, not the product: the tower compiled with torch.compile (kernel fusion), timed.

        The tower + head compiled for each asked N, checked against the eager tower, then timed
        like the "cuda-graph" encoder rows (CUDA: replayed as a graph; CPU: called).
        """
        backend = self.config.compile_backend
        for count in self.config.compile_boxes:
            raw_crops, _ = fast.crop(self.frame, synthetic_boxes(count, seed=self.config.seed))
            compiled = torch.compile(fast.run_tower, backend=backend, dynamic=False)
            start = time.perf_counter()
            with torch.no_grad():
                reference, result = fast.run_tower(raw_crops), compiled(raw_crops)
                if fast.cuda_graphs:
                    graphs = _TowerGraphs(fast, compiled, buckets=(count,))
                    result = graphs(raw_crops)
                    run = graphs
                else:
                    run = compiled
            worst = float((result - reference).abs().max())
            LOG.info(
                "torch.compile (%s) of the tower at N=%d: %.1f s, max abs difference to eager %.2e",
                backend, count, time.perf_counter() - start, worst,
            )  # fmt: skip
            kind = "cuda-graph" if fast.cuda_graphs else "called"
            with torch.no_grad():
                timing = self.timer.measure(lambda raw=raw_crops, fn=run: fn(raw))
            self.add("encoder", f"{tag} torch.compile({backend}) {kind}, max err {worst:.1e}", count, timing)

    def timeline(self, fast, boxes: np.ndarray, text: torch.Tensor) -> dict[str, float]:
        """Median host and GPU marks of the pipeline over `timeline_frames` frames (see core.timeline)."""
        from fgclip_ros.core.gpu.timeline import FrameTimeline

        fast.timeline = FrameTimeline(self.device)
        try:
            for _ in range(self.config.timeline_frames):
                fast.process(self.frame, boxes, text)
        finally:
            recorded, fast.timeline = fast.timeline, None
        medians = recorded.medians()
        LOG.info("timeline N=%d: %s", len(boxes), ", ".join(f"{k} {v:.3f}" for k, v in medians.items()))
        return {name: round(value, 4) for name, value in medians.items()}

    # -- CPU: (b) encoder torch / onnxruntime, (c) pipeline, bulk
    def onnx_encoder(self, heads: ReprojectionHeads, folder: Path, image_dtype: str = "fp32"):
        """ONNX Runtime on the fp32 export in `folder` (exported if missing); int8 image graph on request."""
        from fgclip_ros.core.encoders import OnnxEncoder
        from fgclip_ros.export.onnx import export_model
        from fgclip_ros.export.quantize import quantize_graph

        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.models.name)
        image_onnx, text_onnx = folder / f"{safe}-image-fp32.onnx", folder / f"{safe}-text-fp32.onnx"
        if not (image_onnx.is_file() and text_onnx.is_file()):
            LOG.info("exporting %s to %s (fp32) for ONNX Runtime", self.models.name, folder)
            export_model(
                self.models.model,
                heads,
                self.models.tokenizer,
                self.models.preprocess,
                folder,
                safe,
                dtypes=("fp32",),
                progress=self.config.progress,
            )
        if image_dtype == "int8":
            int8_onnx = folder / f"{safe}-image-int8.onnx"
            if not int8_onnx.is_file():
                quantize_graph(image_onnx, int8_onnx)
            image_onnx = int8_onnx
        return OnnxEncoder(
            image_onnx,
            text_onnx,
            self.models.preprocess,
            self.models.tokenizer,
            providers=["CPUExecutionProvider"],
            projected=True,
            logit_scale=float(self.models.model.logit_scale.detach().exp()),
            intra_op_threads=self.config.ort_threads,
            graph_optimization=self.config.ort_level,
        )

    def run_cpu(self, heads: ReprojectionHeads) -> None:
        from fgclip_ros.core.crops import crop_batch_cpu

        config = self.config
        encoders = []
        if "torch" in config.backends:
            encoders.append(
                (f"torch fp32 cpu ({torch.get_num_threads()} threads)", self.torch_encoder("fp32"), heads)
            )
        wanted = config.backends
        onnx_dtypes = [dtype for name, dtype in (("onnx", "fp32"), ("int8", "int8")) if name in wanted]
        if onnx_dtypes:
            folder = Path(config.onnx_dir or tempfile.mkdtemp(prefix="fgclip_bench_"))
            threads = config.ort_threads or "default"
            for dtype in onnx_dtypes:
                label = f"onnxruntime CPU {dtype} ({threads} threads, {config.ort_level})"
                encoders.append((label, self.onnx_encoder(heads, folder, dtype), None))
            if not config.onnx_dir:
                # The sessions hold the graphs in memory; a temporary export is not kept on disk.
                shutil.rmtree(folder, ignore_errors=True)
        if "naive" in config.modes:
            naive_encoder = encoders[0][1] if "torch" in config.backends else self.torch_encoder("fp32")
            naive_text = self.text_embeddings(naive_encoder, heads)
        sizes = sorted(set(config.boxes) | (set(config.bulk) if "bulk" in config.modes else set()))
        engines = [self.engine(encoder, encoder_heads) for _, encoder, encoder_heads in encoders]
        for count in sizes:
            boxes = synthetic_boxes(count, seed=config.seed)
            pixels, _ = crop_batch_cpu(self.frame, boxes, self.models.preprocess)
            section = "bulk" if count not in config.boxes else None
            # The backends run interleaved, so their ratio holds even on a busy machine.
            if "encoder" in config.modes or section:
                fns = [lambda e=e, h=h: _encode(e, h, pixels) for _, e, h in encoders]
                for (label, _, _), timing in zip(encoders, self.timer.measure_interleaved(fns), strict=True):
                    self.add(section or "encoder", label, count, timing)
            if "pipeline" in config.modes or section:
                fns = [lambda en=en: en.process(self.frame, boxes) for en in engines]
                labels = [
                    (section or "pipeline", f"Pipeline (PerceptionEngine.process) {label}")
                    for label, _, _ in encoders
                ]
                if "naive" in config.modes and not section:
                    # The naive baseline runs in the same rotation (same model, heads and queries).
                    fns.append(self.naive_frame(naive_encoder, heads, naive_text, boxes))
                    labels.append(("naive", self.naive_label()))
                for (where, label), timing in zip(labels, self.timer.measure_interleaved(fns), strict=True):
                    self.add(where, label, count, timing)
                if config.profile_dir and not section:
                    for (label, _, _), engine in zip(encoders, engines, strict=True):
                        profile_frames(
                            lambda en=engine: en.process(self.frame, boxes),
                            self.device,
                            f"N{count} {label}",
                            Path(config.profile_dir),
                            frames=3,
                            trace=count == _TRACE_BOXES,
                        )

    def run(self) -> BenchResult:
        from tqdm import tqdm

        config = self.config
        heads = self.models.heads
        total = self._count_rows()
        disable = None if config.progress is None else not config.progress
        with tqdm(total=total, desc="fgclip-bench", unit="run", disable=disable) as bar:
            self._progress = bar
            if self.device.type == "cuda":
                if "naive" in config.modes:
                    self.run_naive(heads)
                self.run_gpu_section(heads)
            else:
                self.run_cpu(heads)
        return BenchResult(
            meta=self.meta(), rows=self.rows, summary=summarise(self.rows, config), timelines=self.timelines
        )

    def _count_rows(self) -> int:
        config = self.config
        boxes, bulk = len(config.boxes), (len(config.bulk) if "bulk" in config.modes else 0)
        per_size = ("encoder" in config.modes) + ("pipeline" in config.modes)
        if self.device.type == "cuda":
            return (
                (boxes if "naive" in config.modes else 0)
                + 1
                # encoder: eager + graph; pipeline: fast + two-step + stage
                + boxes * (per_size + ("encoder" in config.modes) + 2 * ("pipeline" in config.modes))
                + bulk * 2
            )
        return (boxes if "naive" in config.modes else 0) + len(config.backends) * (
            boxes * per_size + bulk * 2
        )

    def meta(self) -> dict:
        import onnxruntime

        meta = {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "model": self.models.name,
            "device": str(self.device),
            "dtype": self.config.dtype,
            "frame": [FRAME_W, FRAME_H],
            "queries": self.config.queries,
            "torch": str(torch.__version__),
            "onnxruntime": str(onnxruntime.__version__),
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.config).items()},
        }
        if self.device.type == "cuda":
            meta["gpu"] = torch.cuda.get_device_name(self.device)
        return meta


class _TowerGraphs:
    """The image tower + head alone as bucketed CUDA graphs: the targets' "encoder alone with CUDA graph"."""

    def __init__(self, fast, tower=None, buckets: tuple[int, ...] | None = None):
        from fgclip_ros.core.gpu.cuda_graphs import BucketGraphs

        size = fast.preprocess.size
        buckets = buckets or fast.buckets
        self._input = torch.zeros((max(buckets), 3, size, size), dtype=torch.float32, device=fast.device)
        inputs = lambda bucket: (self._input[:bucket],)  # noqa: E731 - one static buffer, sliced per bucket
        self._graphs = BucketGraphs(tower or fast.run_tower, inputs, buckets, fast.device, what="tower alone")
        self._graphs.capture()

    def bucket_for(self, count: int) -> int | None:
        return self._graphs.bucket_for(count)

    def __call__(self, raw_crops: torch.Tensor) -> torch.Tensor:
        count = raw_crops.shape[0]
        self._input[:count].copy_(raw_crops)
        return self._graphs.replay(self.bucket_for(count))[:count]


def _two_step(fast, tower: _TowerGraphs, frame: np.ndarray, boxes: np.ndarray, text: torch.Tensor):
    """The GPU path before its crops moved into the graph: eager crops, then the tower graph."""
    from fgclip_ros.core.matcher import match_on_device, unpack_match

    crops, _ = fast.crop(frame, boxes)
    packed = match_on_device(tower(crops) @ text.T, fast.logit_scale)
    return unpack_match(fast.copy_to_host(packed), int(text.shape[0]))


def _encode(encoder, heads: ReprojectionHeads | None, pixels) -> torch.Tensor:
    """Image tower + head + L2 norm (heads None: the encoder's graph holds them)."""
    with torch.inference_mode():
        return project(encoder.encode_images(pixels), heads, "visual")


def _find(rows: list[Row], section: str, boxes: int, contains: str) -> Row | None:
    for row in rows:
        if row.section == section and row.boxes == boxes and contains in row.variant:
            return row
    return None


def _add_ratios(entry: dict, ratios) -> None:
    """Each (key, slower, faster, digits) whose two rows were measured: entry[key] = the medians' ratio."""
    for key, numerator, denominator, digits in ratios:
        if numerator and denominator:
            entry[key] = round(numerator.median_ms / denominator.median_ms, digits)


def summarise(rows: list[Row], config: BenchConfig) -> dict:
    """The ratios the issue's targets are stated in, for every N measured."""
    summary: dict = {}
    for count in config.boxes:
        naive = _find(rows, "naive", count, "")
        entry = {}
        if config.device.startswith("cuda"):
            pipeline = _find(rows, "pipeline", count, "GpuFrameEncoder")
            two_step = _find(rows, "pipeline", count, "two-step")
            graph = _find(rows, "encoder", count, "cuda-graph")
            eager = _find(rows, "encoder", count, "eager")
            compiled = _find(rows, "encoder", count, "torch.compile")
            if pipeline:
                entry["pipeline_ms"] = pipeline.median_ms
            _add_ratios(entry, (
                ("speedup_vs_naive", naive, pipeline, 2),
                ("pipeline_over_encoder_graph", pipeline, graph, 3),
                ("compiled_tower_speedup", graph, compiled, 3),
                ("two_step_over_pipeline", two_step, pipeline, 3),
                ("graph_speedup_over_eager", eager, graph, 3),
            ))  # fmt: skip
        else:
            torch_enc = _find(rows, "encoder", count, "torch")
            ort_enc = _find(rows, "encoder", count, "onnxruntime CPU fp32")
            int8_enc = _find(rows, "encoder", count, "onnxruntime CPU int8")
            torch_pipe = _find(rows, "pipeline", count, "torch")
            ort_pipe = _find(rows, "pipeline", count, "onnxruntime CPU fp32")
            int8_pipe = _find(rows, "pipeline", count, "onnxruntime CPU int8")
            measured = [r for r in (torch_pipe, ort_pipe, int8_pipe) if r]
            best = min(measured, key=lambda r: r.median_ms, default=None)
            _add_ratios(entry, (
                ("int8_speedup_encoder", ort_enc, int8_enc, 3),
                ("int8_speedup_pipeline", ort_pipe, int8_pipe, 3),
                ("ort_speedup_encoder", torch_enc, ort_enc, 3),
                ("ort_speedup_pipeline", torch_pipe, ort_pipe, 3),
                ("speedup_vs_naive", naive, best, 2),
            ))  # fmt: skip
        if entry:
            summary[f"N={count}"] = entry
    for count in config.bulk:
        entry = {}
        pipe = _find(rows, "bulk", count, "GpuFrameEncoder")
        enc = _find(rows, "bulk", count, "eager")
        if pipe and enc:
            entry = {
                "pipeline_crops_per_s": pipe.crops_per_s,
                "encoder_crops_per_s": enc.crops_per_s,
                "pipeline_fraction_of_encoder": round(pipe.crops_per_s / enc.crops_per_s, 3),
            }
        else:
            entry = {
                row.variant: row.crops_per_s for row in rows if row.section == "bulk" and row.boxes == count
            }
        if entry:
            summary[f"bulk={count}"] = entry
    return summary


def run_bench(config: BenchConfig) -> BenchResult:
    """Run the configured measurements; see the module docstring."""
    config = replace(config, device=resolve_device(config.device))
    return Benchmark(config).run()


# ---------------------------------------------------------------------------------------------- output
def format_table(result: BenchResult) -> str:
    """A plain-text table of the rows, then the summary ratios."""
    columns = ("median ms", "p99 ms", "crops/s")
    header = (
        f"{'section':<9} {'variant':<52} {'N':>5} " + " ".join(f"{c:>10}" for c in columns) + f" {'runs':>5}"
    )
    lines = [
        f"fgclip-bench: {result.meta['model']} on {result.meta.get('gpu', result.meta['device'])}, "
        f"{result.meta['queries']} queries, frame {result.meta['frame'][0]}x{result.meta['frame'][1]}",
        header,
        "-" * len(header),
    ]
    for row in result.rows:
        lines.append(
            f"{row.section:<9} {row.variant[:52]:<52} {row.boxes:>5} {row.median_ms:>10.3f} "
            f"{row.p99_ms:>10.3f} {row.crops_per_s:>10.1f} {row.iters:>5}"
        )
    for key, entry in result.summary.items():
        lines.append(f"{key}: " + ", ".join(f"{k} {v}" for k, v in entry.items()))
    for key, marks in result.timelines.items():
        lines.append(f"timeline {key} (ms since the frame began): " + ", ".join(
            f"{name} {value:.3f}" for name, value in marks.items()
        ))
    return "\n".join(lines)


def save_png(result: BenchResult, path: Path) -> None:
    """ms/frame per box count for each measured variant (log scale), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    series: dict[str, list[tuple[int, float]]] = {}
    for row in result.rows:
        if row.section in ("naive", "encoder", "pipeline"):
            series.setdefault(f"{row.section}: {row.variant}", []).append((row.boxes, row.median_ms))
    for label, points in series.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("boxes per frame")
    ax.set_ylabel("ms per frame (median)")
    ax.set_title(f"{result.meta['model']} on {result.meta.get('gpu', result.meta['device'])}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
