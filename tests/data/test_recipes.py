"""Each corpus recipe, run on a tiny fake copy of its corpus, lists exactly the right files."""

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile
from fake_corpora import (
    PAPER_STRATEGIES,
    FakeCorpus,
    make_audioset,
    make_common_voice,
    make_dns_challenge,
    make_fsd50k,
    make_jamendo,
)

from encodec_train.data.manifest import Manifest
from encodec_train.data.manifest_cli import BuildReport
from encodec_train.data.reverb import Reverb

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture
def recipe(monkeypatch: pytest.MonkeyPatch):
    """Import a recipe module the way `python recipes/<name>.py` sees its siblings."""
    monkeypatch.syspath_prepend(str(RECIPES))

    def load(name: str) -> ModuleType:
        return importlib.import_module(name)

    return load


def assert_matches(report: BuildReport, corpus: FakeCorpus) -> None:
    """The manifest on disk holds exactly the corpus's rows; the report counts its problems."""
    rows = {
        e.path: (e.duration, e.sample_rate, e.channels, e.domain, e.dataset)
        for e in Manifest.load(report.manifest)
    }
    assert sorted(rows) == sorted(corpus.rows)
    for path, expected in corpus.rows.items():
        assert rows[path][0] == pytest.approx(expected[0], abs=1e-6), path
        assert rows[path][1:] == expected[1:], path
    assert report.skipped_counts() == corpus.skipped


def test_dns_challenge(tmp_path: Path, recipe) -> None:
    corpus = make_dns_challenge(tmp_path / "dns")
    # --root may be datasets_fullband itself or the folder holding it.
    report = recipe("dns_challenge").build(
        tmp_path / "dns", tmp_path / "dns_challenge.jsonl", num_workers=2
    )
    assert_matches(report, corpus)
    with pytest.raises(FileNotFoundError, match="no clean_fullband or noise_fullband"):
        recipe("dns_challenge").sources(tmp_path)


def test_common_voice_tsv(tmp_path: Path, recipe) -> None:
    corpus = make_common_voice(tmp_path / "cv")
    common_voice = recipe("common_voice")
    assert_matches(common_voice.build(tmp_path / "cv", tmp_path / "cv.jsonl"), corpus)

    # One locale folder as root, another split.
    report = common_voice.build(tmp_path / "cv" / "en", tmp_path / "en.jsonl", split="train")
    assert [Path(e.path).name for e in report.entries] == ["common_voice_en_1000.mp3"]


def test_common_voice_through_datasets_snapshot(tmp_path: Path, recipe, monkeypatch) -> None:
    # A downloaded hub snapshot: parquet files whose audio column holds the MP3 bytes.
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    corpus = make_common_voice(tmp_path / "cv")
    names = ["common_voice_en_1000.mp3", "common_voice_en_1001.mp3", "common_voice_fr_1000.mp3"]
    blobs = [(tmp_path / "cv" / n[13:15] / "clips" / n).read_bytes() for n in names]
    features = datasets.Features(
        {
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "sentence": datasets.Value("string"),
        }
    )
    table = datasets.Dataset.from_dict(
        {
            "audio": [{"bytes": b, "path": n} for b, n in zip(blobs, names, strict=True)],
            "sentence": ["a", "b", "c"],
        },
        features=features,
    ).cast_column("audio", datasets.Audio(decode=False))
    snapshot = tmp_path / "snapshot"
    (snapshot / "data").mkdir(parents=True)
    table.to_parquet(str(snapshot / "data" / "train-00000-of-00001.parquet"))

    report = recipe("common_voice").build(
        snapshot, tmp_path / "hf.jsonl", split="train", datasets=True
    )
    exported = [Path(e.path) for e in report.entries]
    assert [p.name for p in exported] == [f"{i:08d}_{n}" for i, n in enumerate(names)]
    assert all(p.parent == snapshot / "train" for p in exported)
    expected = [corpus.rows[str(tmp_path / "cv" / n[13:15] / "clips" / n)] for n in names]
    for entry, (duration, *header) in zip(report.entries, expected, strict=True):
        assert entry.duration == pytest.approx(duration)
        assert [entry.sample_rate, entry.channels, entry.domain, entry.dataset] == header


def test_common_voice_through_audiofolder(tmp_path: Path, recipe, monkeypatch) -> None:
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("torchcodec", reason="datasets>=4 needs torchcodec for audiofolder")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    corpus = make_common_voice(tmp_path / "cv")
    clips = tmp_path / "cv" / "fr" / "clips"
    report = recipe("common_voice").build(
        clips, tmp_path / "af.jsonl", split="train", datasets=True
    )
    assert sorted(e.path for e in report.entries) == sorted(
        p for p in corpus.rows if p.startswith(str(clips))
    )


def test_an_audiofolder_without_torchcodec_says_what_to_do(tmp_path, recipe, monkeypatch):
    # datasets>=4 wraps torchcodec's ImportError in a DatasetGenerationError.
    datasets = pytest.importorskip("datasets")
    try:
        import torchcodec  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("torchcodec is installed: datasets can index the folder")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    make_common_voice(tmp_path / "cv")
    clips = tmp_path / "cv" / "fr" / "clips"
    with pytest.raises(RuntimeError, match="needs torchcodec .* use recipes/folder.py"):
        recipe("common_voice").build(clips, tmp_path / "af.jsonl", split="train", datasets=True)


def test_audioset(tmp_path: Path, recipe) -> None:
    corpus = make_audioset(tmp_path / "as")
    audioset = recipe("audioset")
    assert_matches(audioset.build(tmp_path / "as", tmp_path / "as.jsonl"), corpus)
    report = audioset.build(tmp_path / "as", tmp_path / "eval.jsonl", subsets=["eval"])
    assert [Path(e.path).name for e in report.entries] == ["Y--4gqARaEJE.wav"]
    with pytest.raises(ValueError, match="unknown AudioSet subset"):
        audioset.sources(tmp_path / "as", ["training"])


def test_fsd50k(tmp_path: Path, recipe) -> None:
    corpus = make_fsd50k(tmp_path / "fsd")
    fsd50k = recipe("fsd50k")
    assert_matches(fsd50k.build(tmp_path / "fsd", tmp_path / "fsd.jsonl", num_workers=2), corpus)
    # Through the command line: only the eval split.
    common = recipe("common")
    argv = ["--root", str(tmp_path / "fsd"), "--out", str(tmp_path / "e.jsonl"), "--splits", "eval"]
    assert common.run_recipe(fsd50k.build, "", fsd50k.add_arguments, argv) == 0
    assert [Path(e.path).name for e in Manifest.load(tmp_path / "e.jsonl")] == ["37199.wav"]


def test_jamendo(tmp_path: Path, recipe) -> None:
    corpus = make_jamendo(tmp_path / "jamendo")
    report = recipe("jamendo").build(tmp_path / "jamendo", tmp_path / "j.jsonl")
    assert_matches(report, corpus)


def test_metadata_without_a_needed_column_names_the_file(tmp_path: Path, recipe) -> None:
    make_fsd50k(tmp_path)
    (tmp_path / "FSD50K.ground_truth" / "dev.csv").write_text("fname,labels\n1,Bark\n")
    with pytest.raises(ValueError, match=r"dev\.csv: missing column\(s\) split"):
        recipe("fsd50k").sources(tmp_path)


def test_folder_recipe_script(tmp_path: Path) -> None:
    corpus = FakeCorpus(tmp_path / "sounds")
    corpus.audio("a/x.wav", 0.5, 22050, "general", "mine")
    corpus.audio("b.flac", 0.25, 48000, "general", "mine", channels=2)
    corpus.corrupt("c.wav")
    out = tmp_path / "manifests" / "mine.jsonl"
    args = ["--domain", "general", "--dataset", "mine", "--out", str(out), "--relative"]
    result = subprocess.run(
        [sys.executable, str(RECIPES / "folder.py"), "--root", str(corpus.root), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote 2 rows" in result.stdout and "1 unreadable" in result.stdout
    assert out.read_text().count('"path": "../sounds/') == 2
    rows = {e.path: (e.duration, e.sample_rate, e.channels) for e in Manifest.load(out)}
    assert rows == {p: r[:3] for p, r in corpus.rows.items()}


def test_a_recipe_given_a_missing_folder_prints_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nothere"
    result = subprocess.run(
        [
            sys.executable,
            str(RECIPES / "jamendo.py"),
            "--root",
            str(missing),
            "--out",
            str(tmp_path / "j.jsonl"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(missing) in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_dns_challenge_impulse_responses(tmp_path: Path, recipe) -> None:
    make_dns_challenge(tmp_path / "dns")
    rirs = tmp_path / "dns" / "datasets_fullband" / "impulse_responses"
    rng = np.random.default_rng(0)
    written = {}
    for name, rt60 in [("SLR26/mediumroom/Room002-00001.wav", 0.4), ("SLR28/real_rir.wav", 0.9)]:
        t = np.arange(round(1.5 * rt60 * 16000)) / 16000
        response = np.exp(-t * 3 * np.log(10) / rt60) * rng.standard_normal(len(t))
        (rirs / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(rirs / name, 0.5 * response, 16000)
        written[name] = rt60
    soundfile.write(rirs / "SLR28/isotropic_noise_1.wav", rng.standard_normal(16000) * 0.1, 16000)
    out = tmp_path / "manifests" / "dns_impulse_responses.jsonl"
    recipe("dns_challenge").build(
        tmp_path / "dns", tmp_path / "manifests" / "dns.jsonl", impulse_responses=out
    )
    rows = {Path(r["path"]).name: r["rt60"] for r in map(json.loads, out.read_text().splitlines())}
    assert "isotropic_noise_1.wav" not in rows
    for name, rt60 in written.items():
        assert rows[Path(name).name] == pytest.approx(rt60, rel=0.05)
    # Relative to the manifest's folder, resolvable from there.
    reverb = Reverb.load(out, 24000, 0.2, (0.3, 1.3))
    assert {Path(p).name for p in reverb.paths} >= {"Room002-00001.wav", "real_rir.wav"}


def test_dns_noise_files_are_indexed_but_left_out_of_the_paper_mixture(recipe) -> None:
    """The paper's general audio is AudioSet and FSD50K: the data config excludes the dataset
    name the DNS recipe gives its noise files, from every strategy that could draw them."""
    domain, noise_dataset = recipe("dns_challenge").FOLDERS["noise_fullband"]
    assert domain == "general"
    could_draw_noise = [s for s in PAPER_STRATEGIES if list(s.include_domains or []) != ["music"]]
    assert [s.name for s in could_draw_noise] == ["s2", "s3", "s4"]
    for strategy in could_draw_noise:
        assert noise_dataset in strategy.exclude_datasets, strategy.name


def test_recipes_take_every_build_option(tmp_path: Path, recipe) -> None:
    """A recipe's command line hands the shared build options to its build, `--no-tail-check`
    included, and only the recipe's own options besides."""
    common = recipe("common")
    received = []

    def build(**options):
        received.append(options)
        return BuildReport(tmp_path / "m.jsonl", [])

    out = tmp_path / "m.jsonl"
    out.write_text("")
    argv = ["--root", str(tmp_path), "--out", str(out), "--workers", "3", "--no-tail-check"]
    common.run_recipe(build, "", None, argv)
    assert received == [
        {
            "root": tmp_path, "out": out, "num_workers": 3, "relative": False, "arrow": None,
            "min_sample_rate": 0, "tail_check": False,
        }
    ]  # fmt: skip
    common.run_recipe(build, "", None, argv[:-1])
    assert received[1]["tail_check"] is True
