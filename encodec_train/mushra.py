"""MUSHRA kits (docs/evaluation.md):

    python -m encodec_train.mushra build --manifest data_manifests/demo/test/test.jsonl \
        --system runs/demo@6 --system opus@6 --out mushra_kit
    python -m encodec_train.mushra analyze mushra.csv --out mushra_results
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from encodec_train.evaluation.mushra.analyze import Filtering, analyze
from encodec_train.evaluation.mushra.build import build_test


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encodec_train.mushra", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="write a webMUSHRA test")
    build.add_argument("--manifest", required=True, help="the test items (a test manifest)")
    build.add_argument(
        "--system",
        action="append",
        required=True,
        help="CHECKPOINT@KBPS (run dir, .ckpt, .th, Hugging Face dir), opus@KBPS or NAME=FOLDER",
    )
    build.add_argument("--out", required=True, help="folder for configs/ (copy into webMUSHRA)")
    build.add_argument("--items", type=int, help="items drawn from the manifest (default: all)")
    build.add_argument("--seed", type=int, default=0, help="item draw and trial order")
    build.add_argument("--lufs", type=float, default=-23.0, help="loudness of every stimulus")
    build.add_argument("--name", default="encodec_mushra", help="test name and config file")

    results = commands.add_parser("analyze", help="filter annotators, score the systems")
    results.add_argument("results", help="webMUSHRA's mushra.csv (or the same columns)")
    results.add_argument("--out", default=".", help="folder for mushra_scores.csv/.png")
    results.add_argument("--annotator-column", default="session_uuid")
    defaults = Filtering()
    results.add_argument("--reference-below", type=float, default=defaults.reference_below)
    results.add_argument("--reference-share", type=float, default=defaults.reference_share)
    results.add_argument("--anchor-above", type=float, default=defaults.anchor_above)
    results.add_argument("--anchor-share", type=float, default=defaults.anchor_share)

    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            config = build_test(
                args.manifest, args.system, args.out, args.items, args.seed, args.lufs, args.name
            )
            print(
                f"webMUSHRA config: {config}\ncopy what {config.parent}/ holds into webMUSHRA's "
                f"configs/ folder and open index.html?config={config.name}"
            )
        else:
            rules = Filtering(
                args.reference_below, args.reference_share, args.anchor_above, args.anchor_share
            )
            print(analyze(args.results, args.out, rules, annotator=args.annotator_column), end="")
    except (ValueError, OSError) as e:  # bad input: one line naming it
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
