"""Constrained scalar types of the rollout spec: Kubernetes names, durations, quantities, versions.

Each type checks its own format where it is declared, so pydantic reports every malformed value of a
spec in one pass, each with its YAML path.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Helm's chart-name rule (best practices): lower case letters and digits, words joined by '-'.
CHART_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
# Helm refuses release names longer than this: they end up in labels and object names.
HELM_RELEASE_NAME_MAX = 53
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# Kubernetes resource.Quantity: a signed decimal number with an optional binary/decimal suffix.
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")
# Helm accepts SemVer with an optional patch ("1.28-alpha.89f30b2"), so do we.
_VERSION = re.compile(r"^v?\d+\.\d+(\.\d+)?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _dns1123_label(value: str) -> str:
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid DNS-1123 label (lower case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return value


def dns1123_subdomain(value: str) -> str:
    if len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a valid DNS-1123 subdomain (lower case letters, digits, '-' and "
            "'.', at most 253 characters)"
        )
    return value


def _dns1035_label(value: str) -> str:
    if len(value) > 63 or not DNS1035_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid DNS-1035 label (lower case letters, digits and '-', "
            "starting with a letter, ending with a letter or digit, at most 63 characters)"
        )
    return value


def _helm_release_name(value: str) -> str:
    if len(value) > HELM_RELEASE_NAME_MAX or not DNS1123_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid Helm release name (lower case letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {HELM_RELEASE_NAME_MAX} "
            "characters)"
        )
    return value


def chart_name_problem(value: str) -> str | None:
    """Why `value` is not a Helm chart name, or None when it is one."""
    if CHART_NAME.match(value):
        return None
    return (
        f"{value!r} is not a valid Helm chart name (lower case letters and digits, words "
        "separated by '-')"
    )


def _chart_name(value: str) -> str:
    problem = chart_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid environment variable name")
    return value


def _quantity(value: object) -> str:
    text = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _QUANTITY.match(text):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 32, 500m, 512Gi)")
    return text


def _version(value: str) -> str:
    if not _VERSION.match(value):
        raise ValueError(f"{value!r} is not a version such as v1.2.3, 0.7.0 or 1.28-alpha.1")
    return value


def _image(value: str) -> str:
    if not _IMAGE.match(value):
        raise ValueError(f"{value!r} is not a container image reference (registry/name:tag)")
    return value


def parse_duration(value: object) -> timedelta:
    """Parse Go-style durations ("90s", "10m", "1h30m", "500ms"), ISO 8601 "PT..." or seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 10m, 1h30m)")
    text = value.strip()
    if text.startswith(("PT", "P")):
        return _parse_iso_duration(text)
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 10m, 1h30m)")
    return timedelta(seconds=total)


def _parse_iso_duration(text: str) -> timedelta:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", text)
    if not match or text in ("P", "PT"):
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 10m, 1h30m)")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest Go-style spelling of a duration, so specs round-trip as written."""
    millis = round(value.total_seconds() * 1000)
    if millis % 1000:
        return f"{millis}ms"
    seconds = millis // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"must be a positive duration, got {format_duration(value)}")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError(f"must not be negative, got {value.total_seconds():g}s")
    return value


DNS1123Label = Annotated[str, AfterValidator(_dns1123_label)]
DNS1123Subdomain = Annotated[str, AfterValidator(dns1123_subdomain)]
DNS1035Label = Annotated[str, AfterValidator(_dns1035_label)]
HelmReleaseName = Annotated[str, AfterValidator(_helm_release_name)]
ChartName = Annotated[str, AfterValidator(_chart_name)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Quantity = Annotated[str, BeforeValidator(_quantity)]
Version = Annotated[str, AfterValidator(_version)]
ImageRef = Annotated[str, AfterValidator(_image)]
Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_positive),
    PlainSerializer(format_duration, return_type=str),
]
# A duration where 0 means "not at all" (e.g. budgets.capacityWait).
DurationOrZero = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_not_negative),
    PlainSerializer(format_duration, return_type=str),
]
