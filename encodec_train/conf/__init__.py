"""The Hydra configs, a package so that Hydra finds them as `pkg://encodec_train.conf` when the
`encodec-train` console script (not `python -m`) starts a run."""
