"""`--help` of the commands run as `python -m encodec_train.<module>`: the usage line names
that command (not the script file or pytest), and the summary is the docstring's whole first
paragraph (not its first line cut mid-sentence)."""

from __future__ import annotations

import pytest

from encodec_train import encode_dataset, stream


@pytest.mark.parametrize(
    "module, summary",
    [
        (stream, "chunk by chunk, as a live encoder and decoder would."),
        (encode_dataset, "(what the entropy model and language models on the codes train on)."),
    ],
)
def test_help_names_the_command_and_its_whole_summary(module, summary, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0
    assert out.startswith(f"usage: python -m {module.__name__} ")
    assert summary in out
