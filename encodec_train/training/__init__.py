"""Training: LightningModules, callbacks, config checks and the run's record and resume."""

# The configs' interpolation functions (`${run_id:...}`, `${per_rank_batch:...}`) must be
# registered before any composed config is resolved.
from encodec_train.training import resolvers  # noqa: F401
