"""Progress bars for long commands: on stderr, and only when a person is watching."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click


@contextmanager
def progress_bar(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """An ``update(n)`` callable drawing a bar on stderr when it is a terminal.

    Without a terminal (a pipe, a log file, CI) nothing is drawn: click would still print the
    bare label, a stray line in the command's output.
    """
    if length <= 0 or not sys.stderr.isatty():
        yield lambda _done: None
        return
    with click.progressbar(
        length=length, label=label, file=click.get_text_stream("stderr"), show_pos=True
    ) as bar:
        yield bar.update
