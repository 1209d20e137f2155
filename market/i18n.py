"""What the API says to people, in English or Simplified Chinese; what programs read stays.

The error envelope's ``message`` and its field messages are translated when the response is
made (``market.errors.error_response``), by the catalog in ``market/translations`` (Flask-Babel,
gettext). The English text is the message id, so code keeps raising English messages and a
message without a translation is sent in English. ``code``s are never translated.

The language comes from ``Accept-Language``: the first language the client prefers that we
have, ``zh`` in any form (zh, zh-CN, zh-Hans, zh-TW...) meaning Simplified Chinese; English
otherwise.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from flask import Flask, has_request_context, request
from flask_babel import Babel, force_locale, get_locale, gettext, refresh

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
DEFAULT_LOCALE = "en"
# Babel spells zh-CN with its script, and so is the catalog's folder named.
CHINESE = "zh_Hans_CN"

# marshmallow's messages with values in them, as message ids; a message is matched against
# each in turn (the longest first, so "between ... and ..." is never read as "at least ...").
TEMPLATES = sorted(
    (
        "Must be one of: %(choices)s.",
        "Must be greater than or equal to %(min)s and less than or equal to %(max)s.",
        "Must be greater than %(min)s and less than %(max)s.",
        "Must be greater than or equal to %(min)s.",
        "Must be greater than %(min)s.",
        "Must be less than or equal to %(max)s.",
        "Must be less than %(max)s.",
        "Must be at least %(min)s.",
        "Must be at most %(max)s.",
        "Shorter than minimum length %(min)s.",
        "Longer than maximum length %(max)s.",
        "Length must be between %(min)s and %(max)s.",
        "Length must be %(equal)s.",
    ),
    key=len,
    reverse=True,
)


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"%\((\w+)\)s", template)
    regex = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>.+?)"
        for index, part in enumerate(parts)
    )
    return re.compile(f"^{regex}$")


PATTERNS = [(_pattern(template), template) for template in TEMPLATES]


def select_locale() -> str:
    """``zh_CN`` for a client preferring Chinese, else English; outside a request (the CLI),
    the terminal's language."""
    if not has_request_context():
        return terminal_locale()
    for tag, _quality in request.accept_languages:  # best first
        primary = tag.replace("_", "-").split("-")[0].lower()
        if primary == "zh":
            return CHINESE
        if primary == "en":
            return DEFAULT_LOCALE
    return DEFAULT_LOCALE


def response_language() -> str:
    """The ``Content-Language`` of this request's messages (``zh-CN`` or ``en``)."""
    if not has_request_context():
        return "en"
    return "zh-CN" if _locale() == CHINESE else "en"


def translate(text: str) -> str:
    """``text`` in the request's language (itself when there is no translation)."""
    if not has_request_context() or _locale() == DEFAULT_LOCALE:
        return text
    translated = gettext(text)
    if translated != text:
        return translated
    for pattern, template in PATTERNS:
        match = pattern.match(text)
        if match:
            values = match.groupdict()
            localized = gettext(template, **values)
            return text if localized == template % values else localized
    return text


def terminal_locale() -> str:
    """The language of the person at the terminal, from the POSIX locale variables in their
    order of precedence (``LC_ALL``, ``LC_MESSAGES``, ``LANG``): Chinese for ``zh*``."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name)
        if value:
            return CHINESE if value.lower().startswith("zh") else DEFAULT_LOCALE
    return DEFAULT_LOCALE


def say(text: str, **values: Any) -> str:
    """A CLI command's prose in the terminal's language: ``text`` is the English message id,
    with ``%(name)s`` placeholders filled from ``values``. Data lines (tab-separated rows,
    ``key=value`` counts) stay as they are, for scripts."""
    with force_locale(terminal_locale()):
        return str(gettext(text, **values))


def translate_messages(value: Any) -> Any:
    """Field messages (nested dicts and lists of strings) in the request's language."""
    if isinstance(value, str):
        return translate(value)
    if isinstance(value, dict):
        return {key: translate_messages(item) for key, item in value.items()}
    if isinstance(value, list):
        return [translate_messages(item) for item in value]
    return value


def _locale() -> str:
    return str(get_locale() or DEFAULT_LOCALE)


def init_i18n(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    Babel(app, locale_selector=select_locale)
    # Flask-Babel caches the locale on the app context, which can outlive one request (an
    # app context pushed around several requests, as in tests): choose again per request.
    app.before_request(refresh)
