"""Build manifests from audio trees and check existing ones against the files they list.

    python -m encodec_train.data.manifest_cli build --root DIR --domain speech --dataset NAME --out M.jsonl
    python -m encodec_train.data.manifest_cli validate M.jsonl

Headers are read with `soundfile.info` (no decoding) in a process pool, so a corpus of a
million files is scanned in minutes. Files that are missing, empty or unreadable are skipped
and reported with the reason instead of failing the whole build.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile

from encodec_train.data.manifest import (
    ARROW_SUFFIX,
    DOMAINS,
    Manifest,
    ManifestEntry,
    total_hours,
    write_manifest,
)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aif", ".aiff")
"""File types `find_audio` collects; all are read by libsndfile (MP3 since 1.1)."""

ARROW_MIN_ROWS = 100_000
"""From this many rows on, `build_manifest_from_sources` also writes the Arrow copy."""

DEFAULT_WORKERS = min(16, os.cpu_count() or 1)

PROBLEMS = ("missing", "empty", "unreadable")
"""Why a file is skipped: absent, zero bytes or zero frames, or a header libsndfile rejects."""


@dataclass(frozen=True, slots=True)
class AudioSource:
    """A file a recipe wants in its manifest, with the domain and dataset it belongs to."""

    path: Path
    domain: str
    dataset: str


@dataclass(frozen=True, slots=True)  # slots: AudioSet can report ~10^6 missing clips
class Probe:
    """What a file's header says, or why the file cannot be used (`problem` in `PROBLEMS`)."""

    path: str
    duration: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    problem: str | None = None
    detail: str = ""


def probe(path: str) -> Probe:
    """Read `path`'s header (duration, sample rate, channels) without decoding audio."""
    if not os.path.isfile(path):
        return Probe(path, problem="missing", detail="no such file")
    if os.path.getsize(path) == 0:
        return Probe(path, problem="empty", detail="0 bytes")
    try:
        info = soundfile.info(path)
    except (soundfile.LibsndfileError, RuntimeError) as e:
        return Probe(path, problem="unreadable", detail=str(e))
    if info.frames <= 0 or info.samplerate <= 0:
        return Probe(path, problem="empty", detail=f"header has {info.frames} frames")
    return Probe(path, info.frames / info.samplerate, info.samplerate, info.channels)


def probe_all(paths: Sequence[str], num_workers: int = DEFAULT_WORKERS) -> list[Probe]:
    """`probe` every path, in order, with up to `num_workers` processes."""
    workers = min(num_workers, len(paths))
    if workers <= 1:
        return [probe(p) for p in paths]
    with Pool(workers) as pool:
        # Large chunks keep inter-process traffic low; several per worker balance the load.
        return pool.map(probe, paths, chunksize=max(1, len(paths) // (workers * 8)))


def find_audio(root: str | Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """All files below `root` whose extension is in `extensions` (any case), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder {root} does not exist")
    wanted = tuple(e.lower() for e in extensions)
    return sorted(
        Path(folder) / name
        for folder, _, names in os.walk(root, followlinks=True)
        for name in names
        if name.lower().endswith(wanted)
    )


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
) -> BuildReport:
    """Probe `sources`, write the readable ones to the manifest `out`, report the rest.

    Args:
        sources: files with their domain and dataset, in the order the rows should have.
        out: the `.jsonl` manifest to write.
        num_workers: processes that read headers.
        relative: write paths relative to `out`'s folder (portable when both move together).
        arrow: also write `<stem>.arrow/`; None decides by size (`ARROW_MIN_ROWS`).
        skipped: problems the caller found already (e.g. clips a metadata file lists but the
            tree lacks); they are kept in the report.
    """
    out = Path(out)
    sources = list(sources)
    probes = probe_all([str(s.path) for s in sources], num_workers)
    report = BuildReport(out, [], list(skipped))
    base = out.parent.resolve()
    for source, header in zip(sources, probes, strict=True):
        if header.problem:
            report.skipped.append(header)
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
        raise ValueError(
            f"no usable audio for {out}: {len(sources)} candidate files, "
            f"{_format_counts(report.skipped_counts()) or 'none found'}"
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
) -> BuildReport:
    """Manifest of every audio file below `root`, all in one `domain` and `dataset`."""
    if domain not in DOMAINS:
        raise ValueError(f"domain {domain!r} is not one of {', '.join(DOMAINS)}")
    sources = [AudioSource(p, domain, dataset) for p in find_audio(root, extensions)]
    return build_manifest_from_sources(
        sources, out, num_workers=num_workers, relative=relative, arrow=arrow
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

    @property
    def ok(self) -> bool:
        """True when every listed file exists, is readable and matches its row."""
        return not self.problems and not self.mismatched

    def summary(self) -> str:
        """The report as terminal lines."""
        counts = Counter(p.problem for p in self.problems)
        lines = [f"{self.manifest}: {self.rows} rows"]
        lines += [f"  {problem} files: {counts[problem]}" for problem in PROBLEMS]
        lines += [f"    {p.path}: {p.detail}" for p in self.problems[:20]]
        lines.append(f"  rows that disagree with their file's header: {len(self.mismatched)}")
        lines += [f"    {m}" for m in self.mismatched[:20]]
        lines.append(
            "  sample rates: " + ", ".join(f"{sr} Hz: {n}" for sr, n in self.sample_rates.items())
        )
        lines += [f"  {domain}: {hours:.2f} h" for domain, hours in self.hours.items()]
        lines.append("OK" if self.ok else "PROBLEMS FOUND")
        return "\n".join(lines)


def validate_manifest(path: str | Path, num_workers: int = DEFAULT_WORKERS) -> ValidationReport:
    """Load a manifest (raising on malformed rows) and probe every file it lists."""
    manifest = Manifest.load(path)
    entries = list(manifest)
    probes = probe_all([e.path for e in entries], num_workers)
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
    )


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every manifest-writing command shares (this CLI's `build`, the recipes)."""
    parser.add_argument("--root", type=Path, required=True, help="corpus folder")
    parser.add_argument("--out", type=Path, required=True, help="manifest to write (.jsonl)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="header readers")
    parser.add_argument(
        "--relative", action="store_true", help="write paths relative to the manifest's folder"
    )
    parser.add_argument(
        "--arrow",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"also write <stem>.arrow/ (default: from {ARROW_MIN_ROWS} rows on)",
    )


def build_options(args: argparse.Namespace) -> dict:
    """Keyword arguments for the build functions from `add_build_arguments`' options."""
    return {"num_workers": args.workers, "relative": args.relative, "arrow": args.arrow}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m encodec_train.data.manifest_cli`; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="manifest of every audio file below a folder")
    add_build_arguments(build)
    build.add_argument("--domain", required=True, choices=DOMAINS)
    build.add_argument("--dataset", required=True, help="dataset name written in each row")
    build.add_argument("--ext", nargs="+", default=AUDIO_EXTENSIONS, help="file extensions")
    validate = commands.add_parser("validate", help="check a manifest against its files")
    validate.add_argument("manifest", type=Path, help=".jsonl file or .arrow directory")
    validate.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    args = parser.parse_args(argv)

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
    report = validate_manifest(args.manifest, args.workers)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
