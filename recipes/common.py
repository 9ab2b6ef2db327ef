"""What the corpus recipes share: reading metadata tables, Hugging Face sources, the CLI.

Recipes import this as `common` (Python puts `recipes/` on the path when it runs
`python recipes/<name>.py`; add `recipes/` to `sys.path` to import them from elsewhere).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from encodec_train.data.manifest_cli import (
    BUILD_OPTIONS,
    USER_ERRORS,
    AudioSource,
    BuildReport,
    add_build_arguments,
    build_options,
)


def read_table(
    path: Path,
    columns: Sequence[str],
    *,
    delimiter: str = ",",
    fieldnames: Sequence[str] | None = None,
    comment: str | None = None,
) -> list[dict[str, str]]:
    """Rows of a CSV/TSV metadata file as dicts, checking that `columns` are present.

    Args:
        path: the table.
        columns: columns the recipe needs; a missing one raises an error naming the file.
        delimiter: field separator.
        fieldnames: column names for tables without a header line (AudioSet's CSVs).
        comment: lines starting with this are skipped.
    """
    if not path.is_file():
        raise FileNotFoundError(f"metadata table {path} does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        lines = (line for line in f if not (comment and line.startswith(comment)))
        reader = csv.DictReader(
            lines, fieldnames=fieldnames, delimiter=delimiter, skipinitialspace=True
        )
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; has {reader.fieldnames}"
            )
        return list(reader)


def huggingface_sources(
    name: str,
    split: str,
    domain: str,
    dataset: str,
    export_dir: Path,
    config: str | None = None,
    audio_column: str = "audio",
) -> list[AudioSource]:
    """Audio files of a Hugging Face dataset: a hub name, or a local folder that
    `datasets.load_dataset` reads (an audiofolder, or a downloaded snapshot of parquet files).

    Rows whose audio is a local file are used in place; audio stored as bytes (hub parquet)
    is written once to `export_dir/<split>/` so that the manifest can point at files.
    """
    import datasets

    try:
        table = datasets.load_dataset(name, config, split=split)
    except (ImportError, datasets.exceptions.DatasetGenerationError) as e:
        # datasets>=4 raises torchcodec's ImportError wrapped in a DatasetGenerationError.
        missing = e if isinstance(e, ImportError) else e.__cause__
        if not isinstance(missing, ImportError):
            raise
        raise RuntimeError(
            f"datasets could not read {name}: {missing} (datasets>=4 needs torchcodec to index "
            "audio folders; install it, or use recipes/folder.py on the folder instead)"
        ) from e
    if audio_column not in table.column_names:
        raise KeyError(f"{name} ({split}) has no column {audio_column!r}: {table.column_names}")
    table = table.cast_column(audio_column, datasets.Audio(decode=False))
    folder = export_dir / split
    sources = []
    for index, row in enumerate(table.select_columns([audio_column])):
        audio = row[audio_column]
        path = Path(audio["path"]) if audio["path"] else None
        if audio["bytes"] is not None and not (path and path.is_file()):
            path = folder / f"{index:08d}_{path.name if path else 'audio'}"
            if not path.is_file():
                folder.mkdir(parents=True, exist_ok=True)
                path.write_bytes(audio["bytes"])
        sources.append(AudioSource(path or Path(f"{name}:{split}:{index}"), domain, dataset))
    return sources


def run_recipe(
    build: Callable[..., BuildReport],
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse `add_build_arguments`' options plus the recipe's own options,
    call `build(root, out, **options)`, print its report, return the exit status."""
    parser = argparse.ArgumentParser(description=description)
    add_build_arguments(parser)
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    own = {k: v for k, v in vars(args).items() if k not in BUILD_OPTIONS}
    try:
        report = build(**own, **build_options(args))
    except USER_ERRORS as error:  # a bad path or an empty folder: one line, not a traceback
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0
