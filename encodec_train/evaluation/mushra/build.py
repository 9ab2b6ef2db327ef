"""A webMUSHRA test (its YAML config and loudness-matched WAVs) for items of a test manifest
and the systems to compare: our checkpoints at a bandwidth, ffmpeg codecs at a bitrate, or
folders of audio already decoded by anything else."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF
import yaml
from torch import Tensor

from encodec_train.data.manifest import Manifest
from encodec_train.evaluation.baselines import FfmpegCodec
from encodec_train.evaluation.mushra import ANCHOR, REFERENCE
from encodec_train.evaluation.runner import read_clip
from encodec_train.evaluation.systems import (
    CodecSystem,
    Coded,
    System,
    convert,
    find_checkpoints,
    load_codec,
    match_length,
)

ANCHOR_HZ = 3500


class FolderSystem:
    """Decoded audio from elsewhere: `<folder>/<item file name>` (any rate and channels,
    converted to the item's; cropped or padded to its length)."""

    def __init__(self, label: str, folder: str | Path) -> None:
        self.label = label
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"system {label}: folder {self.folder} does not exist")

    def decode(self, name: str, audio: Tensor, sample_rate: int) -> Coded:
        path = self.folder / name
        if not path.is_file():
            raise FileNotFoundError(f"system {self.label}: no {path} for item {name}")
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        found = torch.from_numpy(data.T.copy())
        found = convert(found, rate, found.shape[0], sample_rate, audio.shape[0])
        return Coded(match_length(found, audio.shape[-1]), float("nan"))


def parse_system(spec: str) -> tuple[str, System | FolderSystem]:
    """A condition from the command line: `NAME=FOLDER` (audio decoded elsewhere),
    `opus@KBPS` (ffmpeg's libopus, constant bitrate) or `CHECKPOINT@KBPS` (a run, our
    checkpoint, an official `.th` or a Hugging Face directory)."""
    if "=" in spec:
        name, folder = spec.split("=", 1)
        return name, FolderSystem(name, folder)
    if "@" not in spec:
        raise ValueError(f"system {spec!r}: use NAME=FOLDER, opus@KBPS or CHECKPOINT@KBPS")
    source, kbps = spec.rsplit("@", 1)
    if source == "opus":
        return f"opus_{float(kbps):g}kbps", FfmpegCodec().at(float(kbps))
    (label, path), *more = find_checkpoints(source)
    if more:
        raise ValueError(f"system {spec!r}: {source} holds several runs; name one")
    return f"{label}_{float(kbps):g}kbps", CodecSystem(load_codec(path), float(kbps), label)


def low_anchor(audio: Tensor, sample_rate: int) -> Tensor:
    """The reference low-passed at 3.5 kHz (the paper's low anchor): resampled to 7 kHz and
    back, torchaudio's windowed-sinc filter, so nothing above 3.5 kHz remains."""
    low = AF.resample(audio, sample_rate, 2 * ANCHOR_HZ)
    return match_length(AF.resample(low, 2 * ANCHOR_HZ, sample_rate), audio.shape[-1])


def loudness_matched(clips: dict[str, Tensor], sample_rate: int, lufs: float) -> dict[str, Tensor]:
    """Every clip at `lufs` integrated loudness (ITU-R BS.1770, torchaudio), then all scaled
    by one factor if any would clip, so they stay matched."""
    matched = {}
    for name, audio in clips.items():
        loudness = float(AF.loudness(audio, sample_rate))
        matched[name] = audio * 10 ** ((lufs - loudness) / 20)
    peak = max(float(a.abs().max()) for a in matched.values())
    scale = min(1.0, 0.99 / peak)
    return {name: audio * scale for name, audio in matched.items()}


def build_test(
    manifest: str | Path,
    systems: Sequence[str],
    out_dir: str | Path,
    items: int | None = None,
    seed: int = 0,
    lufs: float = -23.0,
    name: str = "encodec_mushra",
) -> Path:
    """Write `out_dir/configs/<name>.yaml` (a webMUSHRA config) and its audio under
    `out_dir/configs/resources/<name>/<item>/`: per item the reference, one WAV per system
    and the low anchor, loudness-matched. Items (`items` of the manifest, drawn with `seed`;
    None: all) come in a seeded random order, each with its conditions in a seeded random
    order; webMUSHRA shuffles the item pages again for each participant (a `random` page
    group), adds the hidden reference and shuffles the conditions on screen.
    `systems.json` beside the config records the command's systems. Returns the config."""
    out = Path(out_dir)
    conditions = dict(parse_system(spec) for spec in systems)
    entries = list(Manifest.load(manifest))
    rng = random.Random(seed)
    chosen = rng.sample(entries, items) if items is not None else list(entries)
    rng.shuffle(chosen)
    audio_root = Path("configs") / "resources" / name
    pages = []
    for entry in chosen:
        reference, rate = read_clip(entry)
        item = Path(entry.path).stem
        clips = {REFERENCE: reference, ANCHOR: low_anchor(reference, rate)}
        for label, system in conditions.items():
            if isinstance(system, FolderSystem):
                clips[label] = system.decode(Path(entry.path).name, reference, rate).audio
            else:
                clips[label] = system(reference, rate).audio
        stimuli = {}
        for label, audio in loudness_matched(clips, rate, lufs).items():
            relative = audio_root / item / f"{label}.wav"
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            sf.write(out / relative, audio.T.numpy(), rate, subtype="PCM_16")
            stimuli[label] = str(relative)
        order = [c for c in stimuli if c != REFERENCE]
        rng.shuffle(order)
        pages.append(
            {
                "type": "mushra",
                "id": item,
                "name": f"Item {len(pages) + 1}",
                "content": "Rate each condition against the reference.",
                "showWaveform": True,
                "enableLooping": True,
                "reference": stimuli[REFERENCE],
                "createAnchor35": False,
                "createAnchor70": False,
                "stimuli": {c: stimuli[c] for c in order},
            }
        )
    config = {
        "testname": name,
        "testId": name,
        "bufferSize": 2048,
        "stopOnErrors": True,
        "showButtonPreviousPage": True,
        "remoteService": "service/write.php",
        "pages": [
            {
                "type": "generic",
                "id": "welcome",
                "name": "Welcome",
                "content": "Rate how close each condition sounds to the reference (0-100).",
            },
            ["random", *pages],  # webMUSHRA shuffles these pages for each participant
            {
                "type": "finish",
                "name": "Thank you",
                "content": "Thank you for taking part.",
                "showResults": False,
                "writeResults": True,
            },
        ],
    }
    path = out / "configs" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    (out / "configs" / "systems.json").write_text(json.dumps(list(systems), indent=2))
    return path
