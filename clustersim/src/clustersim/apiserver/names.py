"""Name and label format rules (DNS-1123 subdomain/label, DNS-1035 label, label keys/values)."""

from __future__ import annotations

import re

from clustersim.apiserver.errors import FieldError, invalid_value

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"

SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    f"for validation is '{_DNS1123_SUBDOMAIN}')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    f"used for validation is '{_DNS1123_LABEL}')"
)
DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    f"'abc-123', regex used for validation is '{_DNS1035_LABEL}')"
)


def _full(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + pattern + "$")


_SUBDOMAIN_RE = _full(_DNS1123_SUBDOMAIN)
_LABEL_RE = _full(_DNS1123_LABEL)
_DNS1035_RE = _full(_DNS1035_LABEL)
_QUALIFIED_RE = _full(_QUALIFIED_NAME)
_LABEL_VALUE_RE = _full(_LABEL_VALUE)
_CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")


def dns1123_subdomain(value: str) -> list[str]:
    problems = []
    if len(value) > 253:
        problems.append("must be no more than 253 characters")
    if not _SUBDOMAIN_RE.match(value):
        problems.append(SUBDOMAIN_MESSAGE)
    return problems


def dns1123_label(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not _LABEL_RE.match(value):
        problems.append(LABEL_MESSAGE)
    return problems


def dns1035_label(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not _DNS1035_RE.match(value):
        problems.append(DNS1035_MESSAGE)
    return problems


def path_segment(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    for illegal in ("/", "%"):
        if illegal in value:
            return [f"may not contain '{illegal}'"]
    return []


def qualified_name(value: str) -> list[str]:
    """A label or annotation key: optional DNS subdomain prefix and a 63-character name."""
    prefix, _, name = value.rpartition("/")
    problems = []
    if "/" in value and not prefix:
        problems.append("prefix part must be non-empty")
    if prefix:
        problems.extend("prefix part " + p for p in dns1123_subdomain(prefix))
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_RE.match(name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            f"'123-abc', regex used for validation is '{_QUALIFIED_NAME}')")
    return problems


def label_value(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        problems.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character (e.g. "
            f"'MyValue',  or 'my_value',  or '12345', regex used for validation is "
            f"'{_LABEL_VALUE}')")
    return problems


def config_key(value: str) -> list[str]:
    problems = []
    if len(value) > 253:
        problems.append("must be no more than 253 characters")
    if not _CONFIG_KEY_RE.match(value):
        problems.append("a valid config key must consist of alphanumeric characters, '-', '_' "
                        "or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used "
                        "for validation is '[-._a-zA-Z0-9]+')")
    return problems


def field_errors(path: str, value: str, problems: list[str]) -> list[FieldError]:
    return [invalid_value(path, value, problem) for problem in problems]
