"""Held-out validation during training: its numbers are the metric functions' on the test
files, it logs codebook usage per level, and it does not move any random stream."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from encodec_train.evaluation.metrics import MetricNotApplicable, compute
from encodec_train.evaluation.runner import read_clip
from encodec_train.evaluation.systems import CodecSystem
from encodec_train.model import EncodecModel
from encodec_train.model.quantizer import perplexity
from encodec_train.training.validation import HeldOutValidation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from run_helpers import demo_config  # noqa: E402

from encodec_train.training.builder import fit  # noqa: E402


class Module:
    """What the callback uses of the LightningModule."""

    logger = None

    def __init__(self, generator: EncodecModel) -> None:
        self.generator = generator

    def evaluation_generator(self) -> EncodecModel:
        return self.generator


def test_validation_values_are_the_metrics_of_the_decoded_test_files(tmp_path, speech, music):
    rows = []
    for name, audio, rate, domain in (
        ("clean_speech_000", speech, 16000, "speech"),
        ("music_000", music[:, ::2], 24000, "music"),
        ("silence_000", torch.zeros_like(speech), 16000, "general"),  # no metric applies
    ):
        sf.write(tmp_path / f"{name}.wav", audio[0, :rate].numpy(), rate, subtype="FLOAT")
        row = dict(path=f"{name}.wav", duration=1.0, sample_rate=rate, channels=1, domain=domain)
        rows.append(json.dumps({**row, "dataset": name[:-4]}) + "\n")
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("".join(rows))
    torch.manual_seed(0)
    model = EncodecModel(
        target_bandwidths=[1.5, 3.0], n_filters=8, dimension=64, lstm_layers=1, codebook_size=32
    )
    callback = HeldOutValidation(
        every_n_steps=1,
        manifest=str(manifest),
        demo_corpus=None,
        perceptual_every=2,
        perceptual_metrics=["pesq"],
        examples=1,
        output_dir=tmp_path / "validation",
    )
    state = torch.random.get_rng_state()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    first = callback.validate(Module(model), step=10)
    assert torch.equal(torch.random.get_rng_state(), state)  # no random stream moved
    for name, value in model.state_dict().items():  # the codebooks did not learn
        assert torch.equal(value, weights[name]), name
    second = callback.validate(Module(model), step=20)

    model.eval()  # as the callback codes the files
    entries = list(callback.entries())
    counts = torch.zeros(model.quantizer.n_q, 32)
    for bandwidth in (1.5, 3.0):
        expected = {"mel_distance": [], "si_snr": [], "pesq": []}
        for entry in entries:
            reference, rate = read_clip(entry)
            coded = CodecSystem(model, bandwidth, "x")(reference, rate)
            for name in expected:
                try:
                    expected[name].append(compute(name, reference, coded.audio, rate, entry.domain))
                except MetricNotApplicable:
                    pass
            if bandwidth == 3.0:
                for level, codes in enumerate(coded.codes):
                    counts[level] += torch.bincount(codes, minlength=32)
        for name, values in expected.items():
            key = f"heldout/{name}@{bandwidth:g}kbps"
            mean = sum(values) / len(values)
            if name == "pesq":  # every second validation only
                assert key not in first and second[key] == pytest.approx(mean, rel=1e-9)
            else:
                assert first[key] == pytest.approx(mean, rel=1e-9)
        assert first[f"heldout/si_snr_silent@{bandwidth:g}kbps"] == 1  # silence_000
    for level in range(model.quantizer.n_q):
        usage = float((counts[level] > 0).float().mean())
        assert first[f"heldout/codebook_usage/level_{level}"] == pytest.approx(usage)
        assert first[f"heldout/codebook_perplexity/level_{level}"] == pytest.approx(
            float(perplexity(counts[level]))
        )
    folder = tmp_path / "validation" / "step_0000010"
    assert (folder / "clean_speech_000_3kbps.wav").is_file()
    assert (folder / "clean_speech_000_mel.png").stat().st_size > 0


def _losses(run_dir: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    rows = list(csv.DictReader(next((run_dir / "logs").glob("version_*/metrics.csv")).open()))
    train = [{k: v for k, v in r.items() if k.startswith("train/loss_") and v} for r in rows]
    heldout = [r for r in rows if r.get("heldout/si_snr@1.5kbps")]
    return [t for t in train if t], heldout


@pytest.mark.slow
def test_training_with_validation_every_step_trains_exactly_as_without(tmp_path):
    corpus = tmp_path / "corpus"
    every = "callbacks.held_out_validation.every_n_steps"
    fit(demo_config(tmp_path / "with", "trainer.max_steps=3", f"{every}=1", corpus=corpus))
    fit(demo_config(tmp_path / "without", "trainer.max_steps=3", f"{every}=0", corpus=corpus))
    with_validation, heldout = _losses(tmp_path / "with" / "run")
    without, none = _losses(tmp_path / "without" / "run")
    assert len(heldout) == 3 and none == []
    assert "heldout/codebook_usage/level_0" in heldout[0]
    assert with_validation == without and len(without) == 3
