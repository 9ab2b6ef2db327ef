"""`--help` of the commands run as `python -m encodec_train.<module>`: the usage line names
that command (not the script file or pytest), and the summary is the docstring's whole first
paragraph (not its first line cut mid-sentence); the same summary rule for the scripts in
benchmarks/ and recipes/."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from encodec_train import encode_dataset, stream
from encodec_train.data import manifest_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "module, summary",
    [
        (stream, "chunk by chunk, as a live encoder and decoder would."),
        (encode_dataset, "(what the entropy model and language models on the codes train on)."),
        (manifest_cli, "check existing ones against the files they list."),
    ],
)
def test_help_names_the_command_and_its_whole_summary(module, summary, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0
    assert out.startswith(f"usage: python -m {module.__name__} ")
    assert summary in out


@pytest.mark.parametrize(
    "script, summary",
    [
        ("benchmarks/inference.py", "and the compute time of each 20 ms streaming chunk."),
        ("benchmarks/evaluation_metrics.py", "in one process with one thread."),
        ("recipes/jamendo.py", "the tracks a metadata TSV of the MTG-Jamendo repository lists."),
        ("recipes/test_sets.py", "the paper's four test categories cut from them."),
    ],
)
def test_script_help_holds_its_whole_summary(script, summary, monkeypatch, capsys):
    path = ROOT / script
    monkeypatch.syspath_prepend(str(path.parent))  # as `python <script>` puts it first
    monkeypatch.setattr(sys, "argv", [path.name, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(path), run_name="__main__")
    out = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0
    assert out.startswith(f"usage: {path.name} ")
    assert summary in out
