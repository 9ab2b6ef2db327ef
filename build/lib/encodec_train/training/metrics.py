"""Running means of training metrics, kept on the device until they are logged."""

from __future__ import annotations

from collections.abc import Mapping

import torch


class MetricAccumulator:
    """Sums tensors per name and hands back their means; no host-device sync until `means`."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, metrics: Mapping[str, torch.Tensor], prefix: str = "") -> None:
        for name, value in metrics.items():
            key = prefix + name
            value = value.detach().float()
            self._sums[key] = self._sums[key] + value if key in self._sums else value
            self._counts[key] = self._counts.get(key, 0) + 1

    def means(self) -> dict[str, torch.Tensor]:
        """Means since the last call, then reset."""
        means = {key: total / self._counts[key] for key, total in self._sums.items()}
        self._sums, self._counts = {}, {}
        return means
