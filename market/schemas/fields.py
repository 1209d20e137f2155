"""Fields shared by the API's schemas: exact decimals (money, rates) as JSON strings.

Money and rates travel as decimal strings ("12345.67", "0.01") in both directions: a JSON
number is a binary float to most clients, which may already have lost the cents (or turned
0.01 into 0.01000000000000000020816…), and NaN, Infinity or 1e309 are not amounts. Every
schema that takes money uses :class:`Money`, so the rule and its messages are the same in
the marketplace and the ledger.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import ValidationError, fields

# The largest single amount the platform records (CNY), well inside NUMERIC(18, 2).
MAX_AMOUNT = Decimal("9999999999.99")


class DecimalString(fields.Field[Decimal]):
    """An exact decimal given and answered as a JSON string with at most ``places`` decimals.

    Bounds: above ``minimum`` (or at least it, with ``exclusive_minimum=False``) and at most
    ``maximum``; ``None`` leaves that side open (response fields such as a ledger reversal's
    negative amount). Only plain digits with an optional point (and a sign, where negatives
    are allowed) are accepted: no exponent, spaces, separators or full-width digits.
    """

    def __init__(
        self,
        *,
        places: int,
        maximum: Decimal | int | None,
        minimum: Decimal | int | None = 0,
        exclusive_minimum: bool = True,
        noun: str = "number",
        example: str = "1.5",
        subject: str = "",
        inexact: str = "may be inexact",
        places_note: str = "",
        **kwargs: Any,
    ) -> None:
        self.places = places
        self.exponent = Decimal(1).scaleb(-places)
        self.minimum = None if minimum is None else Decimal(minimum)
        self.maximum = None if maximum is None else Decimal(maximum)
        self.exclusive_minimum = exclusive_minimum
        self.noun, self.example, self.inexact = noun, example, inexact
        self.places_note = places_note
        self.signed = self.minimum is None or self.minimum < 0
        sign = "-?" if self.signed else ""
        self.form = re.compile(rf"^{sign}[0-9]+(\.[0-9]{{1,{places}}})?$")
        bounds = " and ".join(part for part in (self._low(), self._high()) if part)
        metadata = {
            "description": f"{subject or 'A ' + noun} as an exact decimal string with at most "
            f'{places} decimals, e.g. "{example}"' + (f"; {bounds}." if bounds else "."),
            "type": "string",
            "pattern": self.form.pattern,
            "example": example,
            **kwargs.pop("metadata", {}),
        }
        super().__init__(metadata=metadata, **kwargs)

    def _low(self) -> str:
        if self.minimum is None:
            return ""
        return f"{'greater than' if self.exclusive_minimum else 'at least'} {self.minimum}"

    def _high(self) -> str:
        return "" if self.maximum is None else f"at most {self.maximum}"

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return str(Decimal(value).quantize(self.exponent))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if not isinstance(value, str):
            raise ValidationError(
                f'Send the {self.noun} as a JSON string, e.g. "{self.example}": JSON numbers are '
                f"binary floating point and {self.inexact}."
            )
        try:
            number = Decimal(value)
        except InvalidOperation as exc:
            raise ValidationError(
                f'Not a decimal {self.noun}; write it like "{self.example}".'
            ) from exc
        if not number.is_finite():
            raise ValidationError(f"NaN and Infinity are not {self.noun}s.")
        if self.minimum is not None and (
            number <= self.minimum if self.exclusive_minimum else number < self.minimum
        ):
            raise ValidationError(f"Must be {self._low()}.")
        if self.maximum is not None and number > self.maximum:
            raise ValidationError(f"Must be {self._high()}.")
        if number.as_tuple().exponent < -self.places:  # type: ignore[operator]
            raise ValidationError(f"At most {self.places} decimal places{self.places_note}.")
        if not self.form.match(value):
            allowed = "no exponent" if self.signed else "no sign, exponent"
            raise ValidationError(
                f"Write the {self.noun} as plain digits with an optional decimal point, "
                f'e.g. "{self.example}" ({allowed}, spaces or separators).'
            )
        try:
            return number.quantize(self.exponent)
        except InvalidOperation as exc:  # more digits than decimal arithmetic keeps
            raise ValidationError("Too many digits.") from exc


class Money(DecimalString):
    """CNY as an exact decimal string ("12345.67"): at most 2 decimals, by default greater than
    0 and at most :data:`MAX_AMOUNT`. JSON numbers are refused."""

    def __init__(
        self,
        *,
        maximum: Decimal | int | None = MAX_AMOUNT,
        minimum: Decimal | int | None = 0,
        exclusive_minimum: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            places=2,
            maximum=maximum,
            minimum=minimum,
            exclusive_minimum=exclusive_minimum,
            noun="amount",
            example="12345.67",
            subject="CNY",
            inexact="may lose cents",
            places_note=" (fen)",
            **kwargs,
        )


class Rate(DecimalString):
    """A rate as an exact decimal string with at most 6 decimals, greater than 0 and at most 1
    ("0.01" is 1 %). Not money: it has more places and no currency."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            places=6,
            maximum=1,
            noun="rate",
            example="0.01",
            subject="A rate (0.01 is 1 %)",
            **kwargs,
        )
