"""Shared test settings: few threads, so tests run alike on a 2-core machine."""

import torch

torch.set_num_threads(2)
