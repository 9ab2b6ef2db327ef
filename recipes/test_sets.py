"""Held-out splits of corpus manifests, and the paper's four test categories cut from them.

    # 1. hold out 2% of the speakers / tracks: rewrites the training manifest without them
    python recipes/test_sets.py split data_manifests/dns_challenge.jsonl --pattern 'reader_(\\d+)'
    python recipes/test_sets.py split data_manifests/jamendo.jsonl
    python recipes/test_sets.py split data_manifests/my_music.jsonl
    # 2. 50 seeded 5-second segments per category from the held-out files
    python recipes/test_sets.py build --out data_manifests/test_24khz \
        --speech data_manifests/dns_challenge.heldout.jsonl \
        --noise data_manifests/fsd50k_eval.jsonl \
        --jamendo data_manifests/jamendo.heldout.jsonl \
        --music data_manifests/my_music.heldout.jsonl
    # the demo corpus's test set (what `python -m encodec_train.evaluate` uses by default)
    python recipes/test_sets.py demo
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from encodec_train.evaluation.testsets import (
    PAPER_CATEGORIES,
    SOURCE_DOMAINS,
    SegmentOptions,
    build_test_set,
    ensure_demo_test_set,
    split_held_out,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    split = commands.add_parser("split", help="hold out groups of a corpus manifest")
    split.add_argument("manifest", help="a corpus manifest (.jsonl) the training mixture reads")
    split.add_argument("--fraction", type=float, default=0.02, help="share of groups held out")
    split.add_argument(
        "--pattern",
        help="regex whose first group names a file's speaker/track (default: its folder)",
    )
    split.add_argument("--seed", type=int, default=0)

    build = commands.add_parser("build", help="cut the test categories from held-out files")
    build.add_argument("--out", required=True, help="folder for the segments and test.jsonl")
    for key, domain in SOURCE_DOMAINS.items():
        build.add_argument(f"--{key}", nargs="+", default=[], help=f"{domain} manifests")
    build.add_argument(
        "--categories",
        nargs="+",
        default=[c.name for c in PAPER_CATEGORIES],
        choices=[c.name for c in PAPER_CATEGORIES],
    )
    defaults = SegmentOptions()
    build.add_argument("--sample-rate", type=int, default=defaults.sample_rate)
    build.add_argument("--channels", type=int, default=defaults.channels)
    build.add_argument("--segment-seconds", type=float, default=defaults.segment_seconds)
    build.add_argument("--per-category", type=int, default=defaults.per_category)
    build.add_argument("--seed", type=int, default=defaults.seed)
    build.add_argument("--snr-db", type=float, nargs=2, default=list(defaults.snr_db))

    demo = commands.add_parser("demo", help="the demo corpus's test set")
    demo.add_argument("--root", default="data_manifests/demo", help="the demo corpus folder")

    args = parser.parse_args(argv)
    try:
        if args.command == "split":
            train, heldout, groups = split_held_out(
                args.manifest, args.fraction, args.pattern, args.seed
            )
            print(f"{groups} group(s) held out in {heldout}; {train} now lists the rest")
        elif args.command == "build":
            options = SegmentOptions(
                sample_rate=args.sample_rate,
                channels=args.channels,
                segment_seconds=args.segment_seconds,
                per_category=args.per_category,
                seed=args.seed,
                snr_db=tuple(args.snr_db),
            )
            categories = tuple(c for c in PAPER_CATEGORIES if c.name in args.categories)
            sources = {key: getattr(args, key) for key in SOURCE_DOMAINS}
            print(build_test_set(sources, args.out, options, categories))
        else:
            print(ensure_demo_test_set(args.root))
    except (ValueError, OSError) as e:  # bad input: one line naming it
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
