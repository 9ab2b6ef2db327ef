"""Tiny copies of the real corpora's layouts (file names, metadata columns) for recipe tests.

Each `make_*` writes a few short synthesised files plus the corpus's metadata under `root`,
and returns a `FakeCorpus`: the rows a correct recipe must produce (worked out here from
what was written, not by running any project code) and the problems it must report.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
from omegaconf import OmegaConf

from encodec_train import CONFIG_DIR
from encodec_train.data.mixing import MixingStrategy


@dataclass
class FakeCorpus:
    """What a recipe run on the fake corpus must find."""

    root: Path
    rows: dict[str, tuple[float, int, int, str, str]] = field(default_factory=dict)
    """Absolute path → (duration, sample_rate, channels, domain, dataset)."""
    skipped: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("missing", "empty", "unreadable", "truncated", "undecodable", "low_sample_rate"), 0
        )
    )

    def audio(
        self,
        relative: str,
        seconds: float,
        sample_rate: int,
        domain: str,
        dataset: str,
        channels: int = 1,
    ) -> Path:
        """Write a tone file the recipe must list (format from the extension)."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        frames = round(seconds * sample_rate)
        t = np.arange(frames) / sample_rate
        tone = 0.3 * np.sin(2 * np.pi * 440 * t)
        soundfile.write(path, np.repeat(tone[:, None], channels, axis=1), sample_rate)
        self.rows[str(path)] = (frames / sample_rate, sample_rate, channels, domain, dataset)
        return path

    def ignored(self, relative: str, seconds: float = 0.1, sample_rate: int = 16000) -> Path:
        """Write a readable audio file the recipe must leave out."""
        path = self.audio(relative, seconds, sample_rate, "speech", "ignored")
        del self.rows[str(path)]
        return path

    def corrupt(self, relative: str) -> Path:
        """Write a file with an audio name and garbage content: skipped as unreadable."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 8)
        self.skipped["unreadable"] += 1
        return path

    def empty(self, relative: str) -> Path:
        """Write a zero-byte file with an audio name: skipped as empty."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        self.skipped["empty"] += 1
        return path

    def missing(self, count: int = 1) -> None:
        """Note `count` files the metadata lists but the tree lacks."""
        self.skipped["missing"] += count


def write_table(path: Path, header: list[str], rows: list[list[str]], delimiter: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def make_dns_challenge(root: Path) -> FakeCorpus:
    """`datasets_fullband/` with clean speech (nested, several languages) and noise."""
    corpus = FakeCorpus(root)
    clean = "datasets_fullband/clean_fullband"
    noise = "datasets_fullband/noise_fullband"
    speech = ("speech", "dns4_speech")
    corpus.audio(f"{clean}/read_speech/book_00002_chp_0005_reader_11183_1.wav", 0.5, 48000, *speech)
    wiki = "CC_BY_SA_4.0_249hrs_339spk_German_Wikipedia_16bit"
    corpus.audio(f"{clean}/german_speech/{wiki}/clip_00012.wav", 0.25, 48000, *speech)
    corpus.audio(f"{clean}/vctk_wav48_silence_trimmed/p225/p225_001_mic1.wav", 0.3, 48000, *speech)
    corpus.audio(f"{clean}/emotional_speech/crema_d/1001_DFA_ANG_XX.wav", 0.2, 16000, *speech)
    corpus.empty(f"{clean}/read_speech/book_00002_chp_0005_reader_11183_2.wav")
    (root / clean / "README.txt").write_text("not audio")
    corpus.audio(
        f"{noise}/door_Freesound_validated_380809_0.wav", 0.4, 48000, "general", "dns4_noise"
    )
    corpus.audio(f"{noise}/-2jL8YmYS1k.wav", 0.2, 44100, "general", "dns4_noise", channels=2)
    corpus.corrupt(f"{noise}/Tv5cM1AQnyk.wav")
    corpus.ignored("datasets_fullband/dev_testset/noisy_testclips/clip_0.wav")
    corpus.ignored("datasets_fullband/impulse_responses/SLR26/smallroom/Room001-00001.wav")
    return corpus


CV_COLUMNS = [
    "client_id",
    "path",
    "sentence_id",
    "sentence",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "variant",
    "locale",
    "segment",
]


def cv_row(locale: str, clip: str) -> list[str]:
    """A TSV row as Common Voice writes it (hashed client id, votes, demographics)."""
    return [
        "f3a1" * 16,
        clip,
        "9c" * 32,
        "Hello there.",
        "",
        "2",
        "0",
        "twenties",
        "male_masculine",
        "",
        "",
        locale,
        "",
    ]


def make_common_voice(root: Path) -> FakeCorpus:
    """`cv-corpus-x/` with locales `en` and `fr`: clips/*.mp3 and validated/train TSVs."""
    corpus = FakeCorpus(root)
    validated = {"en": [], "fr": []}
    for locale, n, rate in (("en", 3, 48000), ("fr", 2, 32000)):
        for i in range(n):
            clip = f"common_voice_{locale}_{1000 + i}.mp3"
            corpus.audio(f"{locale}/clips/{clip}", 0.25 + 0.05 * i, rate, "speech", "common_voice")
            validated[locale].append(clip)
    corpus.corrupt("en/clips/common_voice_en_2000.mp3")
    validated["en"].append("common_voice_en_2000.mp3")
    validated["fr"].append("common_voice_fr_3000.mp3")  # listed, never downloaded
    corpus.missing()
    corpus.ignored("en/clips/common_voice_en_4000.mp3")  # in invalidated.tsv only
    for locale, clips in validated.items():
        write_table(
            root / locale / "validated.tsv", CV_COLUMNS, [cv_row(locale, c) for c in clips], "\t"
        )
        write_table(root / locale / "train.tsv", CV_COLUMNS, [cv_row(locale, clips[0])], "\t")
    write_table(
        root / "en" / "invalidated.tsv",
        CV_COLUMNS,
        [cv_row("en", "common_voice_en_4000.mp3")],
        "\t",
    )
    return corpus


AUDIOSET_HEADER = [
    "# Segments csv created Sun Mar  5 10:54:31 2017",
    "# num_ytids=3, num_segs=3, num_unique_labels=2, num_positive_labels=4",
    "# YTID, start_seconds, end_seconds, positive_labels",
]


def write_segments(path: Path, rows: list[tuple[str, float]]) -> None:
    """A segment list in AudioSet's format: comment header, ", "-separated, quoted labels."""
    lines = [
        f'{ytid}, {start:.3f}, {start + 10:.3f}, "/m/09x0r,/t/dd00088"' for ytid, start in rows
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(AUDIOSET_HEADER + lines) + "\n")


def make_audioset(root: Path) -> FakeCorpus:
    """Segment lists plus clips named as three popular downloaders name them."""
    corpus = FakeCorpus(root)
    write_segments(
        root / "balanced_train_segments.csv",
        [("--PJHxphWEs", 30), ("YxHq1YZk0-Q", 0), ("-0RWZT-miFs", 420)],
    )
    write_segments(root / "unbalanced_train_segments.csv", [("--aE2O5G5WE", 0), ("zzzzzzzzzzz", 5)])
    write_segments(root / "eval_segments.csv", [("--4gqARaEJE", 0)])
    corpus.audio(
        "audio/balanced_train_segments/Y--PJHxphWEs.wav", 0.5, 32000, "general", "audioset"
    )
    # An ID that itself starts with "Y", without the "Y" prefix.
    corpus.audio(
        "audio/balanced_train_segments/YxHq1YZk0-Q_0.000_10.000.flac",
        0.3,
        44100,
        "general",
        "audioset",
        channels=2,
    )
    corpus.corrupt("audio/balanced_train_segments/-0RWZT-miFs_420000.wav")
    corpus.audio(
        "audio/unbalanced_train_segments/part00/--aE2O5G5WE_0.000_10.000.wav",
        0.2,
        16000,
        "general",
        "audioset",
    )
    corpus.missing()  # zzzzzzzzzzz was never downloaded
    corpus.ignored("audio/eval_segments/Y--4gqARaEJE.wav")  # eval is held out
    corpus.ignored("audio/other/Yabcdefghijk.wav")  # in no list
    return corpus


def make_fsd50k(root: Path) -> FakeCorpus:
    """`FSD50K.dev_audio/`, `FSD50K.eval_audio/` and the ground-truth CSVs."""
    corpus = FakeCorpus(root)
    header = ["fname", "labels", "mids", "split"]
    dev = [
        [
            "64760",
            "Electric_guitar,Guitar,Plucked_string_instrument,Musical_instrument,Music",
            "/m/02sgy,/m/0342h,/m/0fx80y,/m/04szw,/m/04rlf",
            "train",
        ],
        [
            "16399",
            "Drawer_open_or_close,Cupboard_open_or_close,Domestic_sounds_and_home_sounds",
            "/m/0fqfqc,/m/0642b4,/t/dd00071",
            "train",
        ],
        ["16401", "Drawer_open_or_close", "/m/0fqfqc", "val"],
        ["99999", "Bark,Dog,Animal", "/m/05tny_,/m/0bt9lr,/m/0jbk", "train"],
        ["12345", "Bark,Dog,Animal", "/m/05tny_,/m/0bt9lr,/m/0jbk", "val"],
    ]
    write_table(root / "FSD50K.ground_truth" / "dev.csv", header, dev, ",")
    write_table(
        root / "FSD50K.ground_truth" / "eval.csv", header[:3], [["37199", "Music", "/m/04rlf"]], ","
    )
    corpus.audio("FSD50K.dev_audio/64760.wav", 0.4, 44100, "general", "fsd50k")
    corpus.audio("FSD50K.dev_audio/16399.wav", 0.2, 44100, "general", "fsd50k")
    corpus.audio("FSD50K.dev_audio/16401.wav", 0.3, 44100, "general", "fsd50k")
    corpus.corrupt("FSD50K.dev_audio/99999.wav")
    corpus.missing()  # 12345 is listed but absent
    corpus.ignored("FSD50K.eval_audio/37199.wav", sample_rate=44100)  # eval held out
    return corpus


def make_jamendo(root: Path) -> FakeCorpus:
    """An audio tree `NN/<id>.mp3` and an `autotagging.tsv` with run-on tag fields."""
    corpus = FakeCorpus(root)
    header = ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS"]
    rows = [
        [
            "track_0000214",
            "artist_000014",
            "album_000031",
            "14/214.mp3",
            "124.6",
            "genre---punkrock",
        ],
        [
            "track_1376256",
            "artist_490499",
            "album_161779",
            "56/1376256.mp3",
            "166.0",
            "mood/theme---corporate",
            "mood/theme---commercial",
        ],
        [
            "track_0000948",
            "artist_000087",
            "album_000149",
            "48/948.mp3",
            "212.7",
            "genre---ambient",
            "instrument---synthesizer",
            "mood/theme---background",
        ],
        [
            "track_0786434",
            "artist_368880",
            "album_092222",
            "34/786434.mp3",
            "460.8",
            "mood/theme---deep",
        ],
        [
            "track_1048679",
            "artist_352172",
            "album_123561",
            "79/1048679.mp3",
            "131.2",
            "mood/theme---dream",
        ],
    ]
    write_table(root / "autotagging.tsv", header, rows, "\t")
    corpus.audio("14/214.mp3", 0.5, 44100, "music", "jamendo", channels=2)
    corpus.audio(
        "56/1376256.low.mp3", 0.3, 44100, "music", "jamendo", channels=2
    )  # low-quality download
    corpus.audio("48/948.mp3", 0.25, 48000, "music", "jamendo")
    corpus.corrupt("34/786434.mp3")
    corpus.missing()  # 79/1048679.mp3
    corpus.ignored("00/1000000.mp3", sample_rate=44100)  # not in this TSV
    return corpus


def paper_strategies() -> tuple[MixingStrategy, ...]:
    """The s1-s4 strategies as the config holds them (their one home)."""
    data = OmegaConf.load(CONFIG_DIR / "data" / "mixture_24khz.yaml")
    return tuple(MixingStrategy(**s) for s in OmegaConf.to_container(data.strategies))


PAPER_STRATEGIES = paper_strategies()
