"""Build manifests from audio trees and check existing ones against the files they list.

    python -m encodec_train.data.manifest_cli build --root DIR --domain speech --dataset NAME --out M.jsonl
    python -m encodec_train.data.manifest_cli validate M.jsonl [--decode]

`build` and `validate` read each header (duration, rate, channels) and the last
`TAIL_FRAMES` frames of every file (`audio_probe`, in a process pool); `validate --decode`
decodes every frame. Files that are missing, empty, unreadable, truncated or undecodable are
skipped and reported with the reason instead of failing the whole build.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from encodec_train.data.audio_probe import (
    AUDIO_EXTENSIONS,
    DEFAULT_WORKERS,
    FOUND_BY,
    PROBLEMS,
    Check,
    Probe,
    Progress,
    find_audio,
    probe_all,
)
from encodec_train.data.manifest import (
    ARROW_SUFFIX,
    DOMAINS,
    Manifest,
    ManifestEntry,
    ManifestError,
    total_hours,
    write_manifest,
)

ARROW_MIN_ROWS = 100_000
"""From this many rows on, `build_manifest_from_sources` also writes the Arrow copy."""


class NoAudioError(ValueError):
    """A build that would write an empty manifest: no audio file found, or none usable."""


@dataclass(frozen=True, slots=True)
class AudioSource:
    """A file a recipe wants in its manifest, with the domain and dataset it belongs to."""

    path: Path
    domain: str
    dataset: str


@dataclass
class BuildReport:
    """What a build wrote and what it skipped, with reasons."""

    manifest: Path
    entries: list[ManifestEntry]
    skipped: list[Probe] = field(default_factory=list)
    arrow: Path | None = None

    def skipped_counts(self) -> dict[str, int]:
        """Number of skipped files per problem in `PROBLEMS`."""
        counts = Counter(p.problem for p in self.skipped)
        return {problem: counts[problem] for problem in PROBLEMS}

    def summary(self) -> str:
        """A few lines for the terminal: rows, hours per domain, skipped files and why."""
        lines = [f"wrote {len(self.entries)} rows to {self.manifest}"]
        if self.arrow:
            lines.append(f"and an Arrow copy to {self.arrow}")
        hours = total_hours(Manifest.load(self.manifest))
        lines += [f"  {domain}: {h:.2f} h" for domain, h in hours.items() if h]
        counts = self.skipped_counts()
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} files: {_format_counts(counts)}")
            lines += [f"  {p.problem}: {p.path}: {p.detail}" for p in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"  ... and {len(self.skipped) - 20} more")
        return "\n".join(lines)


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {problem}" for problem, n in counts.items() if n)


def build_manifest_from_sources(
    sources: Iterable[AudioSource],
    out: str | Path,
    *,
    num_workers: int = DEFAULT_WORKERS,
    relative: bool = False,
    arrow: bool | None = None,
    skipped: Iterable[Probe] = (),
    tail_check: bool = True,
    min_sample_rate: int = 0,
) -> BuildReport:
    """Probe `sources`, write the readable ones to the manifest `out`, report the rest.

    Args:
        sources: files with their domain and dataset, in the order the rows should have.
        out: the `.jsonl` manifest to write.
        num_workers: processes that read the files.
        relative: write paths relative to `out`'s folder (portable when both move together).
        arrow: also write `<stem>.arrow/`; None decides by size (`ARROW_MIN_ROWS`).
        skipped: problems the caller found already (e.g. clips a metadata file lists but the
            tree lacks); they are kept in the report.
        tail_check: also read each file's last frames and leave out the truncated ones
            (`benchmarks/manifest_check.py` measures the cost); False reads headers only.
        min_sample_rate: leave out files recorded at a lower rate (reported as
            `low_sample_rate`); 0 keeps every rate.

    Raises:
        NoAudioError: no source is usable (nothing is written).
    """
    out = Path(out)
    sources = list(sources)
    check: Check = "tail" if tail_check else "header"
    probes = probe_all([str(s.path) for s in sources], num_workers, check)
    report = BuildReport(out, [], list(skipped))
    base = out.parent.resolve()
    for source, header in zip(sources, probes, strict=True):
        if header.problem:
            report.skipped.append(header)
            continue
        if header.sample_rate < min_sample_rate:
            detail = f"{header.sample_rate} Hz < {min_sample_rate} Hz"
            report.skipped.append(Probe(header.path, problem="low_sample_rate", detail=detail))
            continue
        path = Path(header.path).resolve()
        report.entries.append(
            ManifestEntry(
                path=os.path.relpath(path, base) if relative else str(path),
                duration=header.duration,
                sample_rate=header.sample_rate,
                channels=header.channels,
                domain=source.domain,
                dataset=source.dataset,
            )
        )
    if not report.entries:
        first = f"; the first: {report.skipped[0].path}: {report.skipped[0].detail}"
        raise NoAudioError(
            f"no usable audio for {out}: {len(sources)} candidate files, "
            f"{_format_counts(report.skipped_counts())}{first if report.skipped else ''}"
        )
    arrow = len(report.entries) >= ARROW_MIN_ROWS if arrow is None else arrow
    write_manifest(report.entries, out, arrow=arrow)
    report.arrow = out.with_suffix(ARROW_SUFFIX) if arrow else None
    return report


def build_manifest(
    root: str | Path,
    domain: str,
    dataset: str,
    out: str | Path,
    *,
    extensions: Iterable[str] = AUDIO_EXTENSIONS,
    num_workers: int = DEFAULT_WORKERS,
    relative: bool = False,
    arrow: bool | None = None,
    tail_check: bool = True,
    min_sample_rate: int = 0,
) -> BuildReport:
    """Manifest of every audio file below `root`, all in one `domain` and `dataset`."""
    if domain not in DOMAINS:
        raise ValueError(f"domain {domain!r} is not one of {', '.join(DOMAINS)}")
    extensions = tuple(extensions)
    files = find_audio(root, extensions)
    if not files:
        raise NoAudioError(
            f"no audio files ({', '.join(extensions)}) below {root}: give the folder that holds "
            "the audio, or the extensions its files have"
        )
    sources = [AudioSource(p, domain, dataset) for p in files]
    return build_manifest_from_sources(
        sources,
        out,
        num_workers=num_workers,
        relative=relative,
        arrow=arrow,
        tail_check=tail_check,
        min_sample_rate=min_sample_rate,
    )


@dataclass
class ValidationReport:
    """How a manifest's rows compare with the files on disk."""

    manifest: Path
    rows: int
    problems: list[Probe]
    mismatched: list[str]
    sample_rates: dict[int, int]
    hours: dict[str, float]
    check: Check = "tail"

    @property
    def ok(self) -> bool:
        """True when every listed file exists, passes the check and matches its row."""
        return not self.problems and not self.mismatched

    def summary(self) -> str:
        """The report as terminal lines."""
        counts = Counter(p.problem for p in self.problems)
        lines = [f"{self.manifest}: {self.rows} rows (files checked: {self.check})"]
        lines += [f"  {problem} files: {counts[problem]}" for problem in FOUND_BY[self.check]]
        lines += [f"    {p.problem}: {p.path}: {p.detail}" for p in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"    ... and {len(self.problems) - 20} more")
        lines.append(f"  rows that disagree with their file's header: {len(self.mismatched)}")
        lines += [f"    {m}" for m in self.mismatched[:20]]
        lines.append(
            "  sample rates: " + ", ".join(f"{sr} Hz: {n}" for sr, n in self.sample_rates.items())
        )
        lines += [f"  {domain}: {hours:.2f} h" for domain, hours in self.hours.items()]
        lines.append("OK" if self.ok else "PROBLEMS FOUND")
        return "\n".join(lines)


def validate_manifest(
    path: str | Path,
    num_workers: int = DEFAULT_WORKERS,
    check: Check = "tail",
    progress: bool = False,
) -> ValidationReport:
    """Load a manifest (raising on malformed rows) and check every file it lists.

    Args:
        path: `.jsonl` file or Arrow directory.
        num_workers: processes that read the files.
        check: how much of each file is read (`Check`); "decode" finds every file that does
            not decode to its end.
        progress: draw a progress bar on stderr.
    """
    manifest = Manifest.load(path)
    entries = list(manifest)
    bar = Progress(len(entries), f"{check} check") if progress else None
    probes = probe_all([e.path for e in entries], num_workers, check, bar)
    mismatched = [
        f"{e.path}: manifest says {e.sample_rate} Hz, {e.channels} ch, {e.duration:.3f} s; "
        f"file has {p.sample_rate} Hz, {p.channels} ch, {p.duration:.3f} s"
        for e, p in zip(entries, probes, strict=True)
        if not p.problem
        and (
            (e.sample_rate, e.channels) != (p.sample_rate, p.channels)
            # Headers round durations differently; a millisecond is not a mismatch.
            or abs(e.duration - p.duration) > 1e-3
        )
    ]
    rates, counts = np.unique(manifest.column("sample_rate"), return_counts=True)
    return ValidationReport(
        manifest=Path(path),
        rows=len(entries),
        problems=[p for p in probes if p.problem],
        mismatched=mismatched,
        sample_rates=dict(zip(rates.tolist(), counts.tolist(), strict=True)),
        hours=total_hours(manifest),
        check=check,
    )


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every manifest-writing command shares (this CLI's `build`, the recipes)."""
    parser.add_argument("--root", type=Path, required=True, help="corpus folder")
    parser.add_argument("--out", type=Path, required=True, help="manifest to write (.jsonl)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="file readers")
    parser.add_argument(
        "--relative", action="store_true", help="write paths relative to the manifest's folder"
    )
    parser.add_argument(
        "--arrow",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"also write <stem>.arrow/ (default: from {ARROW_MIN_ROWS} rows on)",
    )
    parser.add_argument(
        "--min-sample-rate",
        type=int,
        default=0,
        help="leave out files below this rate (e.g. 48000 for the 48 kHz model's music)",
    )
    parser.add_argument(
        "--no-tail-check",
        dest="tail_check",
        action="store_false",
        help="read headers only, not each file's last frames (faster, misses truncated files)",
    )


BUILD_OPTIONS = {
    "workers": "num_workers",
    "relative": "relative",
    "arrow": "arrow",
    "min_sample_rate": "min_sample_rate",
    "tail_check": "tail_check",
}
"""`add_build_arguments`' options → the build functions' keyword arguments."""


def build_options(args: argparse.Namespace) -> dict:
    """Keyword arguments for the build functions from `add_build_arguments`' options."""
    return {keyword: getattr(args, option) for option, keyword in BUILD_OPTIONS.items()}


USER_ERRORS = (OSError, ManifestError, NoAudioError)
"""Errors about the user's paths and files: the CLI prints their one-line message, no
traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m encodec_train.data.manifest_cli`; returns the exit status:
    0, 1 when `validate` found problems, 2 for an unusable path or corpus."""
    parser = argparse.ArgumentParser(
        prog="python -m encodec_train.data.manifest_cli", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="manifest of every audio file below a folder")
    add_build_arguments(build)
    build.add_argument("--domain", required=True, choices=DOMAINS)
    build.add_argument("--dataset", required=True, help="dataset name written in each row")
    build.add_argument("--ext", nargs="+", default=AUDIO_EXTENSIONS, help="file extensions")
    validate = commands.add_parser("validate", help="check a manifest against its files")
    validate.add_argument("manifest", type=Path, help=".jsonl file or .arrow directory")
    validate.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    validate.add_argument(
        "--decode",
        action="store_true",
        help="decode every file to its end (slow; progress on stderr) instead of its last frames",
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            report = build_manifest(
                args.root,
                args.domain,
                args.dataset,
                args.out,
                extensions=args.ext,
                **build_options(args),
            )
            print(report.summary())
            return 0
        check: Check = "decode" if args.decode else "tail"
        report = validate_manifest(args.manifest, args.workers, check, progress=args.decode)
    except USER_ERRORS as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
