"""Audio data: manifests, segment reading and resampling, s1-s4 mixing, the training stream.

`manifest` (files and their metadata) → `segments` (partial reads, resampling, channels) →
`mixing` (strategies, pools, normalisation, gains) → `dataset` (reproducible, resumable
batches) → `datamodule` (the LightningDataModule). `synth` writes the demo corpus.

Nothing is imported here, so that reading a manifest does not import Lightning.
"""
