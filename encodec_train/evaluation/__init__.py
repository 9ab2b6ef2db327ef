"""Evaluation of codecs as the paper reports them: metrics per bandwidth and test category,
an ffmpeg (Opus) baseline, Markdown reports with rate-distortion plots, and MUSHRA kits."""
