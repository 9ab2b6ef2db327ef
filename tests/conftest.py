"""Shared test settings."""

import torch

# The tests run many small ops; on a busy 2-core machine two OpenMP threads wait for each other
# at every op (a tiny-model pass took 3 s instead of 16 ms), so one thread is faster and steadier.
torch.set_num_threads(1)
