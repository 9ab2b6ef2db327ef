"""Named phases of the training step: profiler ranges always, wall-clock seconds on request.

The training step wraps each of its phases (generator forward, discriminator update, ...) in
`phases(name)`. Outside a benchmark that is only a `torch.profiler.record_function` range, so
traces show the phases; `benchmarks/training_step.py` turns recording on to time the real step
phase by phase, never a copy of it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.profiler import record_function


class StepPhases:
    """Profiler ranges around the phases of a step, and their seconds when recording.

    `seconds` maps each phase to the seconds it took in the steps since `record()`; on CUDA
    the device is synchronised at each boundary, and only while recording, so a training run
    never waits on the GPU for it.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] | None = None
        self._synchronize = False

    def record(self, device: torch.device) -> None:
        """Start (or restart) timing phases; synchronise `device` at boundaries when CUDA."""
        self.seconds = defaultdict(float)
        self._synchronize = device.type == "cuda"

    def stop(self) -> None:
        self.seconds = None

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        with record_function(name):
            if self.seconds is None:
                yield
                return
            self._sync()
            start = time.perf_counter()
            yield
            self._sync()
            self.seconds[name] += time.perf_counter() - start

    def _sync(self) -> None:
        if self._synchronize:
            torch.cuda.synchronize()
