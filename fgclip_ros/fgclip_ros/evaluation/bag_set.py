# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Evaluate a set of bags with one model: discovery, restart keys, per-bag results, the in-process run.

Each bag goes through `evaluate_bag` (the one evaluator) on a `BagEvaluator`, which holds the model:
built once per worker, never per bag. A finished bag's folder (`bag_report.write_report`'s files
plus result.json with the bag's key) is written under a temporary name and renamed into
OUT/bags/<bag id>/, so a run that stops leaves whole results or none. A bag's key is what its
result depends on: the bag's path, size and mtime, the model files' sha256, the queries and the
options; a rerun reuses a result whose key is unchanged. A bag that cannot be evaluated becomes an
entry with status "failed" and the reason; the others go on. `bag_set_ray` runs the same
`BagEvaluator` in Ray actors; `bag_set_report` merges the entries into one report.
"""

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fgclip_ros.core.errors import FgclipError
from fgclip_ros.evaluation.bag import EvalBagOptions, evaluate_bag
from fgclip_ros.evaluation.bag_report import json_default, write_report

LOG = logging.getLogger("fgclip_ros.evaluate.bags")
BAG_SUFFIXES = (".mcap", ".db3")
RESULT_FILE = "result.json"
OUTPUT_BAG = "output_bag"  # with write_bags: the bag's outputs, in its folder
PARTIAL_SUFFIX = ".partial"
# EvalBagOptions fields that change how a run looks, not what it computes.
_UNKEYED_OPTIONS = {"progress", "on_image", "write_bag", "write_bag_storage"}


# --- which bags ---------------------------------------------------------------------------------------
def _bags_under(folder: Path) -> list[Path]:
    """Bag folders (with metadata.yaml) and bare .mcap/.db3 files under `folder`, sorted, recursively."""
    if (folder / "metadata.yaml").is_file():
        return [folder]
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            found += _bags_under(entry)
        elif entry.suffix in BAG_SUFFIXES:
            found.append(entry)
    return found


def _bags_of(path: Path, listed_in: Path | None = None) -> list[Path]:
    where = f" (listed in {listed_in})" if listed_in else ""
    if path.is_dir():
        return _bags_under(path)
    if path.suffix in BAG_SUFFIXES and path.is_file():
        # A storage file inside a bag folder stands for the folder (its metadata names all its files).
        return [path.parent] if (path.parent / "metadata.yaml").is_file() else [path]
    if path.is_file() and listed_in is None:
        return _bags_listed(path)
    raise FgclipError(
        f"{path}{where} is not a bag: give bag folders, .mcap/.db3 files, folders holding bags, "
        "or a text file listing them"
    )


def _bags_listed(list_file: Path) -> list[Path]:
    """One bag (or folder of bags) per line, relative to the list file's folder; '#' comments."""
    found = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entry = Path(line).expanduser()
            found += _bags_of(entry if entry.is_absolute() else list_file.parent / entry, list_file)
    return found


def find_bags(inputs: list[str | Path]) -> list[Path]:
    """The bags `inputs` name, each once (absolute paths, in the order given, folders sorted)."""
    bags: dict[Path, None] = {}
    for given in inputs:
        path = Path(given).expanduser()
        if not path.exists():
            raise FgclipError(f"{path} does not exist")
        for bag in _bags_of(path):
            bags.setdefault(bag.resolve(), None)
    if not bags:
        raise FgclipError(
            f"no bags (folders with metadata.yaml, .mcap or .db3 files) in {', '.join(map(str, inputs))}"
        )
    return list(bags)


def bag_id(path: Path) -> str:
    """A folder name for the bag's results: its name, and a hash of its path to keep names apart."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", path.name) or "bag"
    return f"{name}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def bag_fingerprint(path: Path) -> dict:
    """Path, total size and newest mtime of the bag's files: changes when the bag is rewritten."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [f.stat() for f in files]
    return {
        "path": str(path),
        "size": sum(s.st_size for s in stats),
        "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
    }


def image_messages(path: Path, image_topic: str | None) -> int:
    """Image messages the bag holds (the progress bar's share of it); 0 when it cannot be told."""
    from fgclip_ros.bags import messages
    from fgclip_ros.bags.reader import BagReader

    try:
        with BagReader(path) as bag:
            topics = [image_topic] if image_topic else bag.topics_of_type(*messages.IMAGE_TYPES)
            return bag.topics[topics[0]].count if len(topics) == 1 and topics[0] in bag.topics else 0
    except Exception:  # noqa: BLE001 - the worker reports what is wrong with the bag
        return 0


# --- the model ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to build the Pipeline: `deployed_pipeline`'s arguments and the template."""

    model: str  # manifest name or path
    backend: str = "auto"
    device: str = "cpu"  # resolved (cpu, cuda, cuda:N)
    dtype: str = "fp32"
    context_scale: float = 1.0
    template: str | None = None  # None: the manifest's
    quantize: str = "auto"
    intra_op_threads: int = 1

    def build(self):
        from fgclip_ros.export.deploy import deployed_pipeline

        pipeline = deployed_pipeline(
            self.model,
            backend=self.backend,
            device=self.device,
            dtype=self.dtype,
            quantize=self.quantize,
            intra_op_threads=self.intra_op_threads,
            context_scale=self.context_scale,
        )
        if self.template is not None:
            try:
                pipeline.query_bank.set_template(self.template)
            except ValueError as exc:
                raise FgclipError(f"--template: {exc}") from None
        return pipeline

    def fingerprint(self) -> dict:
        """The settings and the sha256 of the manifest and every file it names (a missing file: error)."""
        from fgclip_ros.core.fetch import sha256_of
        from fgclip_ros.core.manifest import load_manifest

        manifest = load_manifest(self.model)
        files = {"manifest": sha256_of(manifest.source_path)}
        for role in ("model_config", "weights", "reprojection", "onnx_image", "onnx_text"):
            spec = getattr(manifest, role)
            if spec is None:
                continue
            if spec.sha256:
                files[role] = spec.sha256
            else:
                path = manifest.base_dir / spec.path
                if not path.is_file():
                    raise FgclipError(
                        f"{path}: {role} file of model {manifest.name} not found ({manifest.source_path})"
                    )
                files[role] = sha256_of(path)
        return {"name": manifest.name, "files": files, **dataclasses.asdict(self)}


# --- one bag ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BagTask:
    index: int  # position in the run's bag list
    path: Path
    bag_id: str
    key: dict  # what the result depends on; a stored result with the same key is reused
    frames: int = 0  # image messages, for the progress bar


@dataclass
class EvalJob:
    """Everything every bag of a run shares: the model, the options, the output folder."""

    model: ModelSpec
    options: EvalBagOptions
    out_dir: Path
    write_bags: bool = False  # also write each bag's outputs (as --write-bag) into its folder

    def bags_dir(self) -> Path:
        return self.out_dir / "bags"

    def tasks(self, bags: list[Path], model_fingerprint: dict) -> list[BagTask]:
        settings = {k: v for k, v in vars(self.options).items() if k not in _UNKEYED_OPTIONS}
        if self.write_bags:
            settings["write_bag_storage"] = self.options.write_bag_storage
        return [
            BagTask(
                i,
                path,
                bag_id(path),
                canonical({"bag": bag_fingerprint(path), "model": model_fingerprint, "options": settings}),
            )
            for i, path in enumerate(bags)
        ]

    def stored_result(self, task: BagTask) -> dict | None:
        """The bag's entry from a previous run when its key matches, else None."""
        try:
            stored = json.loads((self.bags_dir() / task.bag_id / RESULT_FILE).read_text())
        except (OSError, ValueError):
            return None
        return stored["entry"] if stored.get("key") == task.key else None


def canonical(value):
    """`value` as plain JSON data, so that two runs' keys compare equal exactly when their inputs do."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    return value


def bag_entry(
    task: BagTask, report: dict | None, process_ms: list[float], elapsed_s: float, reason: str | None = None
) -> dict:
    """The bag's line in the set's report (the per-bag report.json holds the rest)."""
    entry = {
        "bag_id": task.bag_id,
        "path": str(task.path),
        "status": "failed" if reason else "ok",
        "reason": reason,
        "reused": False,
        "worker": f"{socket.gethostname()}:{os.getpid()}",  # which process evaluated it
        "elapsed_s": elapsed_s,
        "storage": None,
        "counts": None,
        "accuracy": None,
        "ranking": None,
        "timing": None,
        "process_ms": process_ms,
        "report": None,
    }
    if report is not None:
        accuracy, ranking = report.get("accuracy"), report.get("ranking")
        entry.update(
            storage=report["bag"]["storage"],
            counts=report["counts"],
            accuracy=None
            if not accuracy
            else {k: accuracy[k] for k in ("top1_accuracy", "correct", "answerable", "no_match", "rejected")},
            ranking=None
            if not ranking
            else {
                k: ranking[k]
                for k in ("objects", "mean_rank", "median_rank", "top1", "mean_candidates", "histogram")
            },
            timing=report["timing"],
            report=f"bags/{task.bag_id}/summary.md",
        )
    return entry


class BagEvaluator:
    """A worker's model and the evaluation of one bag after another with it."""

    def __init__(self, job: EvalJob, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.job = job
        self.pipeline = job.model.build()

    def evaluate(self, task: BagTask, on_image: Callable[[], None] | None = None) -> dict:
        """Evaluate the bag, store its folder atomically and return its entry (failed: with the reason)."""
        start = time.perf_counter()
        final = self.job.bags_dir() / task.bag_id
        staging = final.with_name(f".{task.bag_id}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")
        staging.mkdir(parents=True)
        options = dataclasses.replace(
            self.job.options,
            progress=False,
            on_image=on_image,
            write_bag=staging / OUTPUT_BAG if self.job.write_bags else None,
        )
        try:
            evaluation = evaluate_bag(task.path, self.pipeline, options)
        except Exception as err:  # noqa: BLE001 - one bad bag must not stop the set
            shutil.rmtree(staging, ignore_errors=True)
            if not isinstance(err, FgclipError):
                LOG.debug("bag %s failed", task.path, exc_info=True)
            reason = str(err) if isinstance(err, FgclipError) else f"{type(err).__name__}: {err}"
            return bag_entry(task, None, [], time.perf_counter() - start, reason)
        if options.write_bag is not None:
            evaluation.report["written_bag"] = str(final / OUTPUT_BAG)  # where it is after the rename
        entry = bag_entry(task, evaluation.report, evaluation.process_ms, time.perf_counter() - start)
        write_report(evaluation, staging)
        result = {"key": task.key, "entry": entry}
        (staging / RESULT_FILE).write_text(json.dumps(result, default=json_default, allow_nan=False) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        return entry


def remove_partial_results(bags_dir: Path) -> None:
    """Folders that a stopped run left half written."""
    for folder in bags_dir.glob(f".*{PARTIAL_SUFFIX}"):
        shutil.rmtree(folder, ignore_errors=True)


# --- the in-process run -------------------------------------------------------------------------------
class RunProgress:
    """One bar over the frames of every bag still to evaluate; bags done and failed beside it."""

    def __init__(self, tasks: list[BagTask], reused: int, enabled: bool | None):
        from tqdm import tqdm

        self.total_bags = len(tasks) + reused
        self.done, self.failed = reused, 0
        self.seen = {t.index: 0 for t in tasks}
        self.bar = tqdm(
            total=sum(t.frames for t in tasks),
            desc="eval bags",
            unit="frame",
            disable=None if enabled is None else not enabled,
        )
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"bags {self.done}/{self.total_bags}, failed {self.failed}", refresh=False)

    def frames(self, index: int, count: int = 1) -> None:
        if index in self.seen:  # counts that arrive after the bag's end are in its remainder
            self.seen[index] += count
            self.bar.update(count)

    def bag_done(self, task: BagTask, entry: dict) -> None:
        # A bag that stopped early (failed, --max-frames) gives back the frames it did not read.
        self.bar.update(max(0, task.frames - self.seen.pop(task.index)))
        self.done += 1
        self.failed += entry["status"] == "failed"
        self._postfix()
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def run_in_process(
    job: EvalJob, tasks: list[BagTask], progress: RunProgress, threads: int | None = None
) -> list[dict]:
    """The reference run: one model in this process, the bags one after another."""
    if not tasks:
        return []
    evaluator = BagEvaluator(job, threads=threads)
    entries = []
    for task in tasks:
        entry = evaluator.evaluate(task, on_image=lambda index=task.index: progress.frames(index))
        progress.bag_done(task, entry)
        entries.append(entry)
    return entries
