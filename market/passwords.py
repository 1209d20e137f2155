"""Password hashing with argon2id (argon2-cffi's defaults follow RFC 9106), and strength rules.

Every deployment uses the RFC 9106 defaults. Test apps (``TESTING``) switch to argon2id's
cheapest parameters, the way test suites swap in a fast hasher: the code paths are the same,
only the work factor differs (each hash records its own parameters, so both verify).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

_hasher = PasswordHasher()
# Verified against when the account does not exist, so both paths cost the same time; one per
# parameter set, so it always costs what a real user's hash costs.
_DUMMY_SECRET = "timing-equaliser-not-a-password"  # noqa: S105
_dummy_hashes: dict[tuple[int, int, int], str] = {}


def use_fast_hashing(fast: bool) -> None:
    """Cheapest argon2id parameters (test apps only) or the RFC 9106 defaults."""
    global _hasher
    _hasher = PasswordHasher.from_parameters(profiles.CHEAPEST) if fast else PasswordHasher()


def _dummy_hash() -> str:
    key = (_hasher.time_cost, _hasher.memory_cost, _hasher.parallelism)
    if key not in _dummy_hashes:
        _dummy_hashes[key] = _hasher.hash(_DUMMY_SECRET)
    return _dummy_hashes[key]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-effort check; an unknown account is verified against a dummy hash."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


_dummy_hash()  # paid once at start-up, not by the first unknown account


# --- strength -----------------------------------------------------------------------------------

PASSWORD_MIN = 12
# argon2 accepts any length; the cap only bounds the hashing work one request can ask for.
PASSWORD_MAX = 256
MIN_STRENGTH = 3  # zxcvbn's score (0–4): 3 is "safely unguessable" for online attacks
# zxcvbn's work grows with the length; what follows this many characters adds no risk.
_ZXCVBN_CHARS = 100
_NOT_WORD = re.compile(r"[\W_]+")


def _squashed(text: str) -> str:
    """Lower case without spaces or punctuation: ``Zhang.Wei`` and ``zhang wei`` compare equal."""
    return _NOT_WORD.sub("", text.lower())


def password_problems(
    password: str, *, email: str | None = None, organization_names: Iterable[str | None] = ()
) -> list[str]:
    """Why ``password`` is not acceptable (empty when it is), one sentence per reason.

    Length bounds; not the email address or its name part; not the organisation's name; and a
    zxcvbn strength of at least :data:`MIN_STRENGTH`, which refuses repeats, keyboard walks,
    common passwords and dictionary words with obvious substitutions.
    """
    if len(password) < PASSWORD_MIN or len(password) > PASSWORD_MAX:
        return [f"Passwords have {PASSWORD_MIN} to {PASSWORD_MAX} characters."]
    if not password.strip():
        return ["A password cannot be only spaces."]
    problems = []
    squashed = _squashed(password)
    personal: list[str] = []
    if email:
        local_part = email.strip().lower().partition("@")[0]
        personal += [email, local_part]
        if len(_squashed(local_part)) >= 3 and _squashed(local_part) in squashed:
            problems.append("The password must not contain your email address or its name part.")
    for name in organization_names:
        if name and len(_squashed(name)) >= 3 and _squashed(name) in squashed:
            problems.append("The password must not contain your organisation's name.")
            break
    personal += [name for name in organization_names if name]
    result = zxcvbn(password[:_ZXCVBN_CHARS], user_inputs=personal)
    if result["score"] < MIN_STRENGTH:
        feedback = result["feedback"]
        hints = " ".join(filter(None, [feedback.get("warning"), *feedback.get("suggestions", [])]))
        problems.append(
            f"This password is too easy to guess (strength {result['score']} of 4, "
            f"{MIN_STRENGTH} needed)." + (f" {hints}" if hints else "")
        )
    return problems
