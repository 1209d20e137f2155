"""Password hashing with argon2id (argon2-cffi's defaults follow RFC 9106).

Every deployment uses the RFC 9106 defaults. Test apps (``TESTING``) switch to argon2id's
cheapest parameters, the way test suites swap in a fast hasher: the code paths are the same,
only the work factor differs (each hash records its own parameters, so both verify).
"""

from __future__ import annotations

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

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
