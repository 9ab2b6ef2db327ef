"""Build manifests from audio trees and check existing ones against the files they list.

    python -m encodec_train.data.manifest_cli build --root DIR --domain speech --dataset NAME --out M.jsonl
    python -m encodec_train.data.manifest_cli validate M.jsonl [--decode]

Files are opened in a process pool. `build` and `validate` read each header (duration, rate,
channels) and the last `TAIL_FRAMES` frames, which catches a file whose end is lost (a
truncated FLAC or MP3 keeps a header that promises the whole length); `validate --decode`
decodes every frame. Files that are missing, empty, unreadable, truncated or undecodable are
skipped and reported with the reason instead of failing the whole build.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Literal, TextIO

import numpy as np
import soundfile

from encodec_train.data.manifest import (
    ARROW_SUFFIX,
    DOMAINS,
    Manifest,
    ManifestEntry,
    ManifestError,
    total_hours,
    write_manifest,
)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aif", ".aiff")
"""File types `find_audio` collects; all are read by libsndfile (MP3 since 1.1)."""

ARROW_MIN_ROWS = 100_000
"""From this many rows on, `build_manifest_from_sources` also writes the Arrow copy."""

DEFAULT_WORKERS = min(16, os.cpu_count() or 1)

PROBLEMS = ("missing", "empty", "unreadable", "truncated", "undecodable", "low_sample_rate")
"""Why a file is skipped: absent; zero bytes or zero frames; a header libsndfile rejects;
fewer frames at its end than its header promises; a decoding error inside the file although
its end reads (only a full decode finds these); a sample rate below the build's
`min_sample_rate` (the 48 kHz model trains on 48 kHz music only)."""

Check = Literal["header", "tail", "decode"]
"""How much of each file is read: the header; the header and the last `TAIL_FRAMES` frames;
every frame."""

FOUND_BY: dict[str, tuple[str, ...]] = {
    "header": PROBLEMS[:3],
    "tail": PROBLEMS[:4],
    "decode": PROBLEMS,
}
"""The problems each `Check` can find."""

TAIL_FRAMES = 1024
"""Frames read at the end of each file: within the last FLAC block (4096 frames) or the last
MP3 frames, so the decoder has to reach the file's real end."""

DECODE_BLOCK_FRAMES = 4096
"""Frames decoded at a time by the full check: bounded memory for hour-long files, and a
failure is placed to within this many frames (a failing read reports no partial count)."""


class NoAudioError(ValueError):
    """A build that would write an empty manifest: no audio file found, or none usable."""


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


def probe(path: str, check: Check = "header") -> Probe:
    """Read `path`'s header (duration, sample rate, channels) and as much audio as `check`
    asks; a problem found on the way is reported in the result."""
    if not os.path.isfile(path):
        return Probe(path, problem="missing", detail="no such file")
    if os.path.getsize(path) == 0:
        return Probe(path, problem="empty", detail="0 bytes")
    try:
        with soundfile.SoundFile(path) as f:
            if f.frames <= 0 or f.samplerate <= 0:
                return Probe(path, problem="empty", detail=f"header has {f.frames} frames")
            header = Probe(path, f.frames / f.samplerate, f.samplerate, f.channels)
            problem = None
            if check == "tail":
                problem = _tail_problem(f)
            elif check == "decode":
                problem = _decode_problem(f)
    except (soundfile.LibsndfileError, RuntimeError) as e:
        return Probe(path, problem="unreadable", detail=str(e))
    if problem is None:
        return header
    return dataclasses.replace(header, problem=problem[0], detail=problem[1])


def _tail_problem(f: soundfile.SoundFile) -> tuple[str, str] | None:
    """("truncated", why) when the last frames the header promises do not read, else None."""
    count = min(TAIL_FRAMES, f.frames)
    try:
        f.seek(f.frames - count)
        read = len(f.read(count, dtype="float32"))
    except (soundfile.LibsndfileError, RuntimeError) as e:
        return "truncated", f"the header gives {f.frames} frames; the last {count} do not read: {e}"
    if read < count:
        return "truncated", f"the header gives {f.frames} frames; {read} of the last {count} read"
    return None


def _decode_problem(f: soundfile.SoundFile) -> tuple[str, str] | None:
    """Decode every frame of `f`: None when all the header promises decode; else
    ("truncated", why) when the end does not read either, or ("undecodable", why)."""
    block = np.empty((DECODE_BLOCK_FRAMES, f.channels), dtype=np.float32)
    decoded, error = 0, ""
    try:
        while read := f.buffer_read_into(block, "float32"):
            decoded += read
    except (soundfile.LibsndfileError, RuntimeError) as e:
        error = f" ({e})"
    if decoded >= f.frames:
        return None
    # A new handle: the failed decoder may refuse to seek.
    with soundfile.SoundFile(f.name) as again:
        if _tail_problem(again):
            return "truncated", f"{decoded} of the {f.frames} frames in its header decode{error}"
    return (
        "undecodable",
        f"decoding fails after {decoded} of {f.frames} frames{error}; its end reads",
    )


class Progress:
    """`done/total` files with a bar and their rate on `stream`: one line redrawn in place on
    a terminal (4 times a second at most), a new line every 10 s in a log file.

    Args:
        total: files to process.
        label: what is done to them, e.g. "decoding".
        stream: where the bar goes (stderr keeps stdout for the report).
    """

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = self.shown = time.monotonic()
        self.terminal = self.stream.isatty()

    def advance(self) -> None:
        """Count one file done; redraw when due, and always at the last one."""
        self.done += 1
        now = time.monotonic()
        if self.done == self.total or now - self.shown >= (0.25 if self.terminal else 10):
            self.shown = now
            filled = 30 * self.done // max(self.total, 1)
            rate = self.done / max(now - self.start, 1e-6)
            bar = "#" * filled + "." * (30 - filled)
            end = "\r" if self.terminal and self.done < self.total else "\n"
            self.stream.write(
                f"{self.label} [{bar}] {self.done}/{self.total} files, {rate:.0f} files/s{end}"
            )
            self.stream.flush()


def probe_all(
    paths: Sequence[str],
    num_workers: int = DEFAULT_WORKERS,
    check: Check = "header",
    progress: Progress | None = None,
) -> list[Probe]:
    """`probe` every path, in order, with up to `num_workers` processes."""
    workers = min(num_workers, len(paths))
    work = functools.partial(probe, check=check)
    # Large chunks keep inter-process traffic low and several per worker balance the load; a
    # full decode takes long per file, so smaller ones keep the workers even and the bar moving.
    chunksize = max(1, len(paths) // (workers * 8)) if workers > 1 else 1
    if check == "decode":
        chunksize = min(chunksize, 16)
    with Pool(workers) if workers > 1 else nullcontext() as pool:
        results = pool.imap(work, paths, chunksize) if pool else map(work, paths)
        probes = []
        for result in results:
            probes.append(result)
            if progress:
                progress.advance()
    return probes


def find_audio(root: str | Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """All files below `root` whose extension is in `extensions` (any case), sorted."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"audio folder {root} does not exist: check the path")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is a file: give the folder that holds the audio")
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


def build_options(args: argparse.Namespace) -> dict:
    """Keyword arguments for the build functions from `add_build_arguments`' options."""
    return {
        "num_workers": args.workers,
        "relative": args.relative,
        "arrow": args.arrow,
        "min_sample_rate": args.min_sample_rate,
    }


USER_ERRORS = (OSError, ManifestError, NoAudioError)
"""Errors about the user's paths and files: the CLI prints their one-line message, no
traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m encodec_train.data.manifest_cli`; returns the exit status:
    0, 1 when `validate` found problems, 2 for an unusable path or corpus."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="manifest of every audio file below a folder")
    add_build_arguments(build)
    build.add_argument("--domain", required=True, choices=DOMAINS)
    build.add_argument("--dataset", required=True, help="dataset name written in each row")
    build.add_argument("--ext", nargs="+", default=AUDIO_EXTENSIONS, help="file extensions")
    build.add_argument(
        "--no-tail-check",
        dest="tail_check",
        action="store_false",
        help="read headers only, not each file's last frames (faster, misses truncated files)",
    )
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
                tail_check=args.tail_check,
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
