"""Kubernetes resource quantities as exact numbers, for the capacity plan.

Where it sits: used by k8s/capacity.py to add up pod requests and node allocatable.
Quantities are parsed into `Fraction`s (exact: "500m" + "500m" == "1") and formatted back into the
shortest readable Kubernetes spelling.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from fractions import Fraction

_QUANTITY = re.compile(
    r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
# Resources that read best in binary units (bytes); everything else prints as a plain number.
_BYTE_RESOURCES = ("memory", "ephemeral-storage", "hugepages-")

Resources = dict[str, Fraction]


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value: object) -> Fraction:
    return _parse_text(str(value).strip())


# Parsed and formatted quantities are kept: a capacity plan reads every node's and pod's
# resources, and the same few strings ("8", "2Ti", "500m") parsed into Fractions again each time
# were a fifth of a warm rollout's planning CPU. Both are pure; Fractions are immutable.
@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> Fraction:
    match = _QUANTITY.match(text)
    if not match:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity (e.g. 32, 500m, 512Gi)")
    number = Fraction(match.group(1))
    suffix = match.group(2) or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * Fraction(10) ** int(suffix[1:])


def parse_resources(values: Mapping[str, object] | None) -> Resources:
    return {name: parse_quantity(value) for name, value in (values or {}).items()}


def add(total: Resources, more: Mapping[str, Fraction], times: int = 1) -> None:
    for name, amount in more.items():
        total[name] = total.get(name, Fraction(0)) + amount * times


def subtract(left: Mapping[str, Fraction], right: Mapping[str, Fraction]) -> Resources:
    names = set(left) | set(right)
    return {n: left.get(n, Fraction(0)) - right.get(n, Fraction(0)) for n in names}


def fits(request: Mapping[str, Fraction], free: Mapping[str, Fraction]) -> list[str]:
    """The resources `request` asks more of than `free` has (empty: it fits)."""
    return sorted(n for n, amount in request.items() if amount > 0 and amount > free.get(n, 0))


def total(items: Iterable[Mapping[str, Fraction]]) -> Resources:
    result: Resources = {}
    for item in items:
        add(result, item)
    return result


@functools.lru_cache(maxsize=4096)
def format_quantity(name: str, amount: Fraction) -> str:
    """A readable quantity: binary units for bytes, millis for fractional CPU, else a number."""
    if name.startswith(_BYTE_RESOURCES) and amount != 0 and amount.denominator == 1:
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            unit = _BINARY[suffix]
            if abs(amount) >= unit and amount % unit == 0:
                return f"{amount // unit}{suffix}"
        return str(amount)
    if amount.denominator == 1:
        return str(amount.numerator)
    millis = amount * 1000
    if millis.denominator == 1:
        return f"{millis.numerator}m"
    return f"{float(amount):g}"


def format_resources(values: Mapping[str, Fraction]) -> dict[str, str]:
    return {name: format_quantity(name, values[name]) for name in sorted(values)}
