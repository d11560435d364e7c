"""One meta-gradient captured as a CUDA graph and replayed: one launch instead of thousands.

A second-order meta-iteration of the paper's conv nets is thousands of small kernels (inner forward, backward,
double backward, per task and step). On a GPU each costs a launch from Python, and the card waits on those, not
on arithmetic. Captured once, the same kernels replay from one call, on the same buffers: the batch is copied
into the captured input tensors, and the gradients come back in the captured output tensors, overwritten by
the next replay (copy them to keep them). The parameters are read where they live, so an optimiser that
updates them in place (Adam does) is seen by the next replay.
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from typing import Any, Callable

import torch
from torch import Tensor

from .maml import Params

GradientFn = Callable[[Params, Any], tuple[Params, Tensor]]


def _batch_tensors(batch: Any) -> dict[str, Tensor]:
    if not is_dataclass(batch):
        raise TypeError(f"a graphed gradient takes a dataclass batch (a TaskBatch), got {type(batch).__name__}")
    return {f.name: getattr(batch, f.name) for f in fields(batch) if isinstance(getattr(batch, f.name), Tensor)}


class GraphedGradient:
    """`gradient_fn(params, batch)`, captured on the first call and replayed on every later one.

    Every batch must have the first one's shapes and dtypes (a training run's do); `params` must be the same
    tensors each call. `warmup` eager calls on a side stream come first, as torch.cuda.graphs asks (they
    initialise cuDNN and cuBLAS handles and the autograd engine's streams outside the capture).
    """

    def __init__(self, gradient_fn: GradientFn, warmup: int = 2) -> None:
        self.gradient_fn, self.warmup = gradient_fn, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_batch: Any = None
        self.static_out: tuple[Params, Tensor] | None = None
        self._params: Params | None = None

    def __call__(self, params: Params, batch: Any) -> tuple[Params, Tensor]:
        incoming = _batch_tensors(batch)
        if self.graph is None:
            self._capture(params, batch, incoming)
        else:
            if any(p is not q for p, q in zip(params.values(), self._params.values())) or params.keys() != \
                    self._params.keys():
                raise ValueError("a graphed gradient reads the parameters it was captured with; pass the same ones")
            static = _batch_tensors(self.static_batch)
            for name, tensor in incoming.items():
                if tensor.shape != static[name].shape or tensor.dtype != static[name].dtype:
                    raise ValueError(f"batch field {name!r} is {tuple(tensor.shape)} {tensor.dtype}; the graph "
                                     f"was captured for {tuple(static[name].shape)} {static[name].dtype}")
                static[name].copy_(tensor, non_blocking=True)
        self.graph.replay()
        return self.static_out

    def _capture(self, params: Params, batch: Any, incoming: dict[str, Tensor]) -> None:
        device = next(iter(params.values())).device
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need parameters on a CUDA device, not {device}")
        self._params = dict(params)
        self.static_batch = replace(batch, **{name: t.to(device, copy=True) for name, t in incoming.items()})
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.gradient_fn(params, self.static_batch)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread-local: the batch prefetcher may pin memory on its own thread meanwhile (helpers.prefetch)
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.static_out = self.gradient_fn(params, self.static_batch)
