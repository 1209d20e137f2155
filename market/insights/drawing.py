"""One drawing at a time, quietly: what every server-side picture (gap map, KPI charts) runs in.

Matplotlib's settings (``rc_context``) and Python's warning filters are process-wide, and the
web server draws in several threads: without a lock, one request's ``rc_context`` or
``catch_warnings`` ends in the middle of another's drawing (its fonts change; a "glyph missing"
warning escapes, which the tests turn into an error). Matplotlib measures CJK text with a font
that lacks the glyphs and says so; the SVG keeps the text as text and the browser draws it with
a CJK font, so those warnings are noise here.

Matplotlib is imported by the first drawing, not with the app: most processes (workers, the
command line, most web requests) never draw, and the import costs about half a second.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from types import ModuleType
from typing import Any

_LOCK = threading.Lock()


@cache
def _matplotlib() -> ModuleType:
    import matplotlib  # on first use: see the docstring

    matplotlib.use("Agg")  # before anything imports pyplot: no display, ever
    return matplotlib


@contextmanager
def drawing(rc: dict[str, Any]) -> Iterator[None]:
    """Draw under ``rc`` settings, alone, without font warnings."""
    logger = logging.getLogger("matplotlib.font_manager")
    with _LOCK:
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            with _matplotlib().rc_context(rc), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                yield
        finally:
            logger.setLevel(level)
