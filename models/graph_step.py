"""One training step (forward, loss, backward, optimiser step) replayed as a CUDA graph.

A tabular step is a few dozen tiny kernels: launched one by one from Python, the GPU waits
on the host for most of the step. Captured once as a CUDA graph, the whole step is one launch
(PyTorch's "whole network capture": https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs).

How it runs, per full-size batch:

1. the first ``warmup`` batches train eagerly on a side stream (the capture needs warmed-up
   kernels, autograd streams and an optimiser state that exists);
2. the next batch is copied into static input tensors and the step is captured (a capture
   records kernels without running them) and then replayed once;
3. every later batch is copied into the static inputs and the graph is replayed.

Each batch is one real optimiser step, in the same order as an eager loop. Dropout draws from
the CUDA generator, which graphs advance on every replay, so masks differ between steps as
they do eagerly. The optimiser must keep its step count on the device (``fused=True``);
weights and optimiser state are updated in place, so eager steps (a last, smaller batch) and
replays share them. Anything that fails to capture raises ``GraphCaptureError``: the caller
trains eagerly from then on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["GraphCaptureError", "GraphedStep"]

StepFn = Callable[[Sequence[torch.Tensor]], torch.Tensor]


class GraphCaptureError(RuntimeError):
    """The step could not be captured as a CUDA graph; train eagerly instead."""


class GraphedStep:
    """Replays ``step`` (forward, loss, backward, ``optimizer.step()``; returns the loss) as a
    CUDA graph for batches shaped like the first one it sees."""

    def __init__(self, step: StepFn, optimizer: torch.optim.Optimizer, *, warmup: int = 3) -> None:
        self.step = step
        self.optimizer = optimizer
        self.warmup = warmup
        self.shapes: tuple[torch.Size, ...] | None = None
        self._seen = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._inputs: tuple[torch.Tensor, ...] = ()
        self._loss: torch.Tensor | None = None

    def fits(self, batch: Sequence[torch.Tensor]) -> bool:
        """Whether ``batch`` has the shapes this step is (or will be) captured for."""
        shapes = tuple(t.shape for t in batch)
        if self.shapes is None:
            self.shapes = shapes
        return shapes == self.shapes

    @property
    def captured(self) -> bool:
        return self._graph is not None

    def __call__(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """One optimiser step on ``batch``; the returned loss is valid until the next call."""
        if self._graph is None:
            if self._seen < self.warmup:
                self._seen += 1
                return self._side_stream_step(batch)
            self._capture(batch)
        for static, value in zip(self._inputs, batch, strict=True):
            static.copy_(value, non_blocking=True)
        assert self._graph is not None and self._loss is not None
        self._graph.replay()
        return self._loss

    def _side_stream_step(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        side = torch.cuda.Stream()  # type: ignore[no-untyped-call]  # untyped in torch
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            loss = self.step(batch)
        torch.cuda.current_stream().wait_stream(side)
        return loss

    def _capture(self, batch: Sequence[torch.Tensor]) -> None:
        self._inputs = tuple(t.detach().clone() for t in batch)
        graph = torch.cuda.CUDAGraph()
        # Gradients are allocated by the captured backward (grads None before capture), so each
        # replay writes them afresh rather than adding to the last step's.
        self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                loss = self.step(self._inputs)
        except Exception as exc:  # any op that cannot be captured
            self._inputs = ()
            self.optimizer.zero_grad(set_to_none=True)
            raise GraphCaptureError(f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        self._graph, self._loss = graph, loss
