"""Kubernetes resource quantities ("32", "500m", "512Gi", "1e3") as exact integer milli-units.

The scheduler and the node profiles compare requests against allocatable with these numbers, so a
pod asking for `cpu: 32` and a node offering `128` are compared exactly, as kube-scheduler does.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<exponent>[eE][+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$"
)

ResourceList = dict[str, int]
"""Resource name -> amount in milli-units (1 GPU = 1000, 1 byte = 1000)."""


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value: str | int | float) -> Fraction:
    """The exact value of a quantity; raises QuantityError for malformed input."""
    if isinstance(value, bool):
        raise QuantityError(f"quantities must be numbers or strings, not {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise QuantityError(
            f"quantities must match the regular expression "
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$', got {value!r}"
        )
    number = Fraction(match.group("number"))
    exponent = match.group("exponent")
    if exponent:
        return number * Fraction(10) ** int(exponent[1:])
    return number * _SUFFIXES[match.group("suffix") or ""]


def to_milli(value: str | int | float) -> int:
    """A quantity in milli-units, rounded up as Kubernetes rounds requests."""
    return math.ceil(parse_quantity(value) * 1000)


def parse_resource_list(resources: dict[str, object] | None) -> ResourceList:
    """A `requests`/`limits`/`capacity` map in milli-units; malformed entries raise."""
    result: ResourceList = {}
    for name, amount in (resources or {}).items():
        if not isinstance(amount, (str, int, float)):
            raise QuantityError(f"resource {name} has a non-quantity value {amount!r}")
        result[name] = to_milli(amount)
    return result


def format_amount(milli: int) -> str:
    """A milli-unit amount as a short quantity string ("32", "500m") for messages and status."""
    if milli % 1000 == 0:
        return str(milli // 1000)
    return f"{milli}m"


def add_into(total: ResourceList, extra: ResourceList) -> None:
    """total += extra, per resource."""
    for name, amount in extra.items():
        total[name] = total.get(name, 0) + amount


def max_into(total: ResourceList, other: ResourceList) -> None:
    """total = max(total, other), per resource."""
    for name, amount in other.items():
        if amount > total.get(name, 0):
            total[name] = amount
