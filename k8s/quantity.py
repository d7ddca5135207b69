"""Kubernetes resource quantities as exact whole numbers of nano-units, for the capacity plan.

Where it sits: used by k8s/capacity.py and k8s/reservations.py to add up pod requests and node
allocatable. A quantity is parsed into an `int` count of nano-units (10**-9 of the resource's
unit: "500m" CPU is 500_000_000, "1Gi" is 2**30 * 10**9), which is Kubernetes' own finest
precision (a finer quantity is rounded up to 1n, as the API server does). Sums stay exact
("500m" + "500m" == "1"), and whole-number arithmetic is what keeps planning cheap on a large
cluster: a plan adds and compares every node's and pod's resources, and with `Fraction`s that
arithmetic was most of the planning CPU (and a tenth of the worker's at 50 concurrent
rollouts). Amounts are formatted back into the shortest readable Kubernetes spelling.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from fractions import Fraction

# Nano-units per unit: 1 GPU, 1 CPU, 1 byte and 1 pod are each NANO.
NANO = 10**9

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

# Per resource name, an amount in nano-units.
Resources = dict[str, int]


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value: object) -> int:
    """`value` ("8", "500m", "512Gi") in nano-units."""
    return _parse_text(str(value).strip())


def units(amount: int) -> int:
    """Whole units in `amount` nano-units (rounded down): the GPU counts a plan reports."""
    return amount // NANO


# Parsed and formatted quantities are kept: a capacity plan reads every node's and pod's
# resources, and the same few strings ("8", "2Ti", "500m") parsed again each time were a fifth
# of a warm rollout's planning CPU. Both are pure.
@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> int:
    match = _QUANTITY.match(text)
    if not match:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity (e.g. 32, 500m, 512Gi)")
    number = Fraction(match.group(1))
    suffix = match.group(2) or ""
    if suffix in _BINARY:
        exact = number * _BINARY[suffix]
    elif suffix in _DECIMAL:
        exact = number * _DECIMAL[suffix]
    else:
        exact = number * Fraction(10) ** int(suffix[1:])
    return math.ceil(exact * NANO)


def parse_resources(values: Mapping[str, object] | None) -> Resources:
    return {name: parse_quantity(value) for name, value in (values or {}).items()}


def add(total: Resources, more: Mapping[str, int], times: int = 1) -> None:
    for name, amount in more.items():
        total[name] = total.get(name, 0) + amount * times


def subtract(left: Mapping[str, int], right: Mapping[str, int]) -> Resources:
    result = dict(left)
    for name, amount in right.items():
        result[name] = result.get(name, 0) - amount
    return result


def fits(request: Mapping[str, int], free: Mapping[str, int]) -> list[str]:
    """The resources `request` asks more of than `free` has (empty: it fits)."""
    return sorted(n for n, amount in request.items() if amount > 0 and amount > free.get(n, 0))


def total(items: Iterable[Mapping[str, int]]) -> Resources:
    result: Resources = {}
    for item in items:
        add(result, item)
    return result


@functools.lru_cache(maxsize=4096)
def format_quantity(name: str, amount: int) -> str:
    """A readable quantity: binary units for bytes, millis for fractional CPU, else a number."""
    value = Fraction(amount, NANO)
    if name.startswith(_BYTE_RESOURCES) and value != 0 and value.denominator == 1:
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            unit = _BINARY[suffix]
            if abs(value) >= unit and value % unit == 0:
                return f"{value // unit}{suffix}"
        return str(value)
    if value.denominator == 1:
        return str(value.numerator)
    millis = value * 1000
    if millis.denominator == 1:
        return f"{millis.numerator}m"
    return f"{float(value):g}"


def format_resources(values: Mapping[str, int]) -> dict[str, str]:
    return {name: format_quantity(name, values[name]) for name in sorted(values)}
