"""Reading audio files before training uses them: is each one whole, and what does its
header say? Files are opened in a process pool; a file that is missing, empty, unreadable,
truncated or undecodable is reported with the reason, never raised.

The checks go from cheap to thorough (`Check`): the header; the header and the last
`TAIL_FRAMES` frames, which catches a file whose end is lost (a truncated FLAC or MP3 keeps
a header that promises the whole length); every frame.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Literal, TextIO

import numpy as np
import soundfile

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aif", ".aiff")
"""File types `find_audio` collects; all are read by libsndfile (MP3 since 1.1)."""

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
