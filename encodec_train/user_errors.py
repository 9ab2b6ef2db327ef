"""Command lines: a user's mistake is one line on stderr, a bug keeps its traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_or_exit(action: Callable[[], T], errors: tuple[type[BaseException], ...]) -> T:
    """`action()`; one of `errors` (bad settings, missing or unreadable files) is printed as
    one `error: ...` line and the process exits with status 1."""
    try:
        return action()
    except errors as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
