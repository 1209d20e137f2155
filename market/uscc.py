"""The unified social credit code (统一社会信用代码), GB 32100-2015."""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 0-9 A-Z without I O S V Z
WEIGHTS = [pow(3, i, 31) for i in range(17)]  # 3^(i-1) mod 31 for positions 1..17


class InvalidUSCC(ValueError):
    """The code breaks a named rule of GB 32100-2015."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def check_character(first17: str) -> str:
    total = sum(ALPHABET.index(ch) * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def validate(code: str) -> str:
    """Return the normalised code, or raise :class:`InvalidUSCC` naming the failed rule."""
    code = code.strip().upper()
    if len(code) != 18:
        raise InvalidUSCC("length", f"A USCC has 18 characters; this one has {len(code)}.")
    bad = sorted({ch for ch in code if ch not in ALPHABET})
    if bad:
        raise InvalidUSCC(
            "alphabet",
            f"A USCC uses 0-9 and A-Z except I, O, S, V and Z; found {', '.join(bad)}.",
        )
    if not code[2:8].isdigit():
        raise InvalidUSCC(
            "division_code", "Characters 3-8 must be the 6-digit GB/T 2260 division code."
        )
    expected = check_character(code[:17])
    if code[17] != expected:
        raise InvalidUSCC(
            "check_character", f"The check character should be {expected}, not {code[17]}."
        )
    return code


def complete(first17: str) -> str:
    """Append the check character (for generating fictional demo codes)."""
    return first17 + check_character(first17)
