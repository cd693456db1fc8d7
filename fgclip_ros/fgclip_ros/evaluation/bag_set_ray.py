# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Run a bag set on Ray: one actor per worker holds the model, each bag is one task on an idle actor.

The driver sends only bag paths and keys; each actor reads its bag from storage every node sees
(a shared file system) and writes the bag's result folder there itself, so nothing larger than a
bag's summary entry comes back. Actors report frames read through a `ray.util.queue.Queue`, in
batches, for the driver's one progress bar. An actor that dies (out of memory, a crash in native
code) fails the bag it held, and a new actor takes its place for the rest.
"""

import logging
import math
import time

from fgclip_ros.core.errors import FgclipError
from fgclip_ros.evaluation.bag_set import BagEvaluator, BagTask, EvalJob, RunProgress, bag_entry

LOG = logging.getLogger("fgclip_ros.evaluate.bags")
PROGRESS_FLUSH_S = 0.25  # how often an actor sends its frame count
LOCAL_OBJECT_STORE_BYTES = 128 * 1024 * 1024  # only entries pass through it


class _Worker:
    """The Ray actor: a BagEvaluator, and frame counts sent back in batches."""

    def __init__(self, job: EvalJob, threads: int, queue):
        self.evaluator = BagEvaluator(job, threads=threads)
        self.queue = queue

    def ready(self) -> str:
        return self.evaluator.pipeline.name

    def evaluate(self, task: BagTask) -> dict:
        pending, last = 0, time.monotonic()

        def on_image():
            nonlocal pending, last
            pending += 1
            if time.monotonic() - last >= PROGRESS_FLUSH_S:
                self.queue.put_nowait((task.index, pending))
                pending, last = 0, time.monotonic()

        entry = self.evaluator.evaluate(task, on_image)
        if pending:
            self.queue.put_nowait((task.index, pending))
        return entry


def start_ray(address: str | None, workers: int, threads: int, gpus: int) -> None:
    """Join the cluster at `address`, or start a local runtime sized for `workers` (quiet, no dashboard)."""
    import ray

    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        ray.init(
            num_cpus=workers * threads,
            num_gpus=gpus,
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            log_to_driver=False,
            configure_logging=False,
        )


def run_on_ray(
    job: EvalJob,
    tasks: list[BagTask],
    progress: RunProgress,
    workers: int,
    threads: int,
    gpus_per_worker: float = 0.0,
    address: str | None = None,
) -> list[dict]:
    """Evaluate `tasks` on `workers` actors, each asking for `threads` CPUs and `gpus_per_worker` GPUs.

    With CUDA, `gpus_per_worker` is 1 (a GPU each) or a fraction when there are more workers than GPUs.
    """
    import ray
    from ray.util.queue import Queue

    if not tasks:
        return []
    started_here = not ray.is_initialized()
    if started_here:
        start_ray(address, workers, threads, gpus=math.ceil(workers * gpus_per_worker))
    try:
        queue = Queue(actor_options={"num_cpus": 0})
        actor_class = ray.remote(num_cpus=threads, num_gpus=gpus_per_worker)(_Worker)

        def new_actor():
            return actor_class.remote(job, threads, queue)

        actors = [new_actor() for _ in range(min(workers, len(tasks)))]
        try:
            ray.get([a.ready.remote() for a in actors])
        except ray.exceptions.RayError as err:
            raise FgclipError(f"the workers could not load model {job.model.model}: {_cause(err)}") from None
        return _dispatch(tasks, actors, new_actor, queue, progress)
    finally:
        if started_here:
            ray.shutdown()


def _dispatch(tasks, actors, new_actor, queue, progress: RunProgress) -> list[dict]:
    import ray

    waiting = list(reversed(tasks))
    running = {}  # object ref -> (actor, task)
    entries = {}
    idle = list(actors)
    while waiting or running:
        while idle and waiting:
            actor, task = idle.pop(), waiting.pop()
            running[actor.evaluate.remote(task)] = (actor, task)
        done, _ = ray.wait(list(running), num_returns=1, timeout=PROGRESS_FLUSH_S)
        _drain(queue, progress)
        for ref in done:
            actor, task = running.pop(ref)
            try:
                entry = ray.get(ref)
                idle.append(actor)
            except ray.exceptions.RayError as err:
                entry = bag_entry(task, None, [], 0.0, f"worker failed: {_cause(err)}")
                idle.append(new_actor())
            entries[task.index] = entry
            progress.bag_done(task, entry)
    _drain(queue, progress)
    return [entries[t.index] for t in tasks]


def _drain(queue, progress: RunProgress) -> None:
    size = queue.qsize()
    if size:
        for index, count in queue.get_nowait_batch(size):
            progress.frames(index, count)


def _cause(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__
