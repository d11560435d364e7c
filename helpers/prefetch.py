"""Batches drawn on a background thread while the GPU computes, in the order a plain loop would draw them.

Training draws each meta-batch on the CPU from a seeded generator (the same episodes on every device, and a
checkpoint resumes the stream). On a GPU that draw, and a copy from ordinary (pageable) memory, which waits for the
GPU to finish what it was given, would each stall the card once per iteration. Here a thread draws ahead into
pinned memory, so the copy to the GPU overlaps the computation, and hands each batch over with the generator's
state right after it was drawn: the state a checkpoint taken after that iteration must hold.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import fields, replace
from typing import Any, Callable, Iterator

import torch


def _pinned(batch: Any) -> Any:
    """The batch (a dataclass such as TaskBatch) with every tensor copied into pinned memory."""
    return replace(batch, **{f.name: getattr(batch, f.name).contiguous().pin_memory() for f in fields(batch)
                             if isinstance(getattr(batch, f.name), torch.Tensor)})


class Prefetcher:
    """Iterate (batch, generator state after drawing it); `depth` batches are drawn ahead. Close it when done."""

    def __init__(self, sample_batch: Callable[[torch.Generator], Any], generator: torch.Generator, count: int,
                 *, pin_memory: bool, depth: int = 4) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._draw, args=(sample_batch, generator, count, pin_memory),
                                        daemon=True, name="batch-prefetcher")
        self._thread.start()

    def _draw(self, sample_batch, generator, count, pin_memory) -> None:
        try:
            for _ in range(count):
                batch = sample_batch(generator)
                item = (_pinned(batch) if pin_memory else batch, generator.get_state())
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            self._queue.put((error, None))

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[Any, torch.Tensor]:
        item, state = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item, state

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
