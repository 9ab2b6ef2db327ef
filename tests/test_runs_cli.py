"""`python -m encodec_train.runs --metrics`: names as logged (`valid/mel`), and a name no run
logged is said on stderr instead of leaving the table silently without it."""

from __future__ import annotations

from encodec_train.runs import main
from encodec_train.training.run_status import write_status


def test_a_metric_no_run_logged_is_named_with_those_that_were(tmp_path, capsys):
    run = tmp_path / "point"
    run.mkdir()
    (run / "run_id").write_text("0123456789ab\n")
    write_status(
        run,
        {
            "state": "finished",
            "step": 20,
            "validation": {"valid/mel@1.5kbps": 2.511, "valid/si_snr@1.5kbps": -40.9},
            "held_out": {"heldout/si_snr@1.5kbps": -3.25},
        },
    )
    assert main([str(tmp_path), "--metrics", "mel", "valid/mel", "heldout/si_snr"]) == 0
    out, err = capsys.readouterr()
    header, row = out.splitlines()
    assert header.split()[4:] == ["heldout/si_snr@1.5", "valid/mel@1.5", "wandb"]
    assert row.split()[-2:] == ["-3.25", "2.511"]
    assert err == (
        f"--metrics mel: no run under {tmp_path} logged it; logged: heldout/si_snr, valid/mel, "
        "valid/si_snr\n"
    )
    assert main([str(tmp_path)]) == 0  # the default metrics: nothing said of those not logged
    assert capsys.readouterr().err == ""
