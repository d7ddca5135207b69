"""Kubernetes resource quantities ("32", "500m", "512Gi", "1e3"): exact values and canonical form.

`parse_quantity` gives the exact value (the agent compares requests against allocatable with it).
`canonical_quantity` gives the string a real API server stores and returns for a quantity
(`resource.Quantity`'s canonical form): `32` -> "32", `0.5` -> "500m", "1.5" -> "1500m",
"1000" -> "1k", "1536Mi" and "1.5Gi" -> "1536Mi", "1e3" -> "1e3".
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_DECIMAL_SUFFIXES: dict[str, int] = {
    "n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18,
}
_BINARY_SUFFIXES: dict[str, int] = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_BY_EXPONENT = {exponent: suffix for suffix, exponent in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_POWER = {0: "", **{power: suffix for suffix, power in _BINARY_SUFFIXES.items()}}

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<exponent>[eE][+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$"
)
QUANTITY_PATTERN_MESSAGE = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
# resource.Quantity caps values at the largest int64 and keeps nano precision (rounding up)
_MAX = Fraction(2**63 - 1)
_NANO = Fraction(1, 10**9)

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity."""


def _text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise QuantityError(f"{QUANTITY_PATTERN_MESSAGE}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise QuantityError(f"{QUANTITY_PATTERN_MESSAGE}, got {value!r}")
    # a JSON number is read as the quantity its digits spell, as Go's UnmarshalJSON does
    return value.strip() if isinstance(value, str) else repr(value)


def parse_with_format(value: object) -> tuple[Fraction, str]:
    """The exact value of a quantity and its format (DecimalSI, BinarySI, DecimalExponent)."""
    text = _text(value)
    match = _QUANTITY.match(text)
    if match is None:
        raise QuantityError(f"{QUANTITY_PATTERN_MESSAGE}, got {value!r}")
    number = Fraction(match.group("number"))
    exponent = match.group("exponent")
    if exponent:
        return number * Fraction(10) ** int(exponent[1:]), DECIMAL_EXPONENT
    suffix = match.group("suffix") or ""
    if suffix in _BINARY_SUFFIXES:
        return number * 1024 ** _BINARY_SUFFIXES[suffix], BINARY_SI
    return number * Fraction(10) ** _DECIMAL_SUFFIXES[suffix], DECIMAL_SI


def parse_quantity(value: str | int | float) -> Fraction:
    """The exact value of a quantity; raises QuantityError for malformed input."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Fraction(value)
    return parse_with_format(value)[0]


def _remove_factors(value: int, base: int) -> tuple[int, int]:
    times = 0
    while value and value % base == 0:
        value //= base
        times += 1
    return value, times


def canonical_quantity(value: object) -> str:
    """The canonical string of a quantity, as the API server stores it."""
    amount, quantity_format = parse_with_format(value)
    negative = amount < 0
    magnitude = min(-amount if negative else amount, _MAX)
    # precision below one nano is rounded up, so a tiny request never becomes zero
    nanos = math.ceil(magnitude / _NANO)
    if nanos == 0:
        return "0"
    sign = "-" if negative else ""
    if quantity_format == BINARY_SI:
        whole = Fraction(nanos) * _NANO
        if whole >= 1024 and whole.denominator == 1:
            mantissa, power = _remove_factors(int(whole), 1024)
            return f"{sign}{mantissa}{_BINARY_BY_POWER[power]}"
        quantity_format = DECIMAL_SI
    mantissa, times = _remove_factors(nanos, 10)
    exponent = times - 9
    while exponent % 3:
        mantissa *= 10
        exponent -= 1
    if quantity_format == DECIMAL_EXPONENT:
        return f"{sign}{mantissa}" + (f"e{exponent}" if exponent else "")
    return f"{sign}{mantissa}{_DECIMAL_BY_EXPONENT[exponent]}"
