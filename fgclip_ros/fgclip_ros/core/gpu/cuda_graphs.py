# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""One CUDA graph per batch-size bucket of a function over static input buffers.

A graph replays fixed kernels on fixed addresses, so a batch of K items runs in the graph of the
smallest bucket >= K: the caller writes its K rows into the bucket's static inputs, pads the rest
with any valid rows, replays, and reads the first K rows of the static output. Every op of an
image tower works per image, so padding rows cost time but never change the real rows.
"""

import logging
import time
from collections.abc import Callable, Sequence

import torch

LOG = logging.getLogger("fgclip_ros.cuda_graphs")

# Eager runs before each capture: cuBLAS/cuDNN pick and cache their algorithms and allocate their
# workspaces then, so nothing is allocated or chosen inside the capture.
WARMUP_RUNS = 3


def checked_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
    """Batch-size buckets sorted and deduplicated; ValueError unless all are positive."""
    checked = tuple(sorted(set(int(b) for b in buckets)))
    if not checked or checked[0] < 1:
        raise ValueError(f"buckets must be positive batch sizes, got {buckets}")
    return checked


class BucketGraphs:
    """`fn(*inputs(bucket))` captured once per bucket (largest first, all in one memory pool).

    `inputs(bucket)` returns that bucket's static input tensors (views of shared buffers are
    fine); they must hold valid data at capture, since the warm-up runs compute with them.
    """

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        inputs: Callable[[int], tuple[torch.Tensor, ...]],
        buckets: Sequence[int],
        device: torch.device,
        what: str = "batch",
    ):
        self.buckets = checked_buckets(buckets)
        self.device = torch.device(device)
        self._fn, self._inputs, self._what = fn, inputs, what
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._outputs: dict[int, torch.Tensor] = {}

    @property
    def captured(self) -> int:
        return len(self._graphs)

    def capture(self) -> None:
        """Warm up and capture every bucket (PyTorch's recipe: warm-up on a side stream); once."""
        if self._fn is None:
            raise RuntimeError("these graphs are captured already")
        start = time.perf_counter()
        pool = torch.cuda.graph_pool_handle()
        current = torch.cuda.current_stream(self.device)
        with torch.no_grad():
            for bucket in sorted(self.buckets, reverse=True):
                inputs = self._inputs(bucket)
                side = torch.cuda.Stream(self.device)
                side.wait_stream(current)
                with torch.cuda.stream(side):
                    for _ in range(WARMUP_RUNS):
                        self._fn(*inputs)
                current.wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    output = self._fn(*inputs)
                self._graphs[bucket], self._outputs[bucket] = graph, output
        torch.cuda.synchronize(self.device)
        # The function and input factory usually close over their owner: drop them, so that the
        # owner and these graphs do not form a cycle that keeps GPU memory until a gc pass.
        self._fn = self._inputs = None
        LOG.info(
            "captured CUDA graphs (%s) for batch sizes %s in %.1f s",
            self._what,
            ", ".join(map(str, self.buckets)),
            time.perf_counter() - start,
        )

    def bucket_for(self, count: int) -> int | None:
        """The bucket a batch of `count` runs in; None when it is larger than every bucket (run eagerly)."""
        for bucket in self.buckets:
            if bucket >= count:
                return bucket
        return None

    def replay(self, bucket: int) -> torch.Tensor:
        """Replay the bucket's graph on its static inputs as they are; its static output (reused later)."""
        self._graphs[bucket].replay()
        return self._outputs[bucket]
