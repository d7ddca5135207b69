"""Label and field selectors of list and watch requests, parsed and matched as Kubernetes does."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clustersim.apiserver.errors import bad_request

JsonObject = dict[str, Any]

_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # =, !=, in, notin, exists, !, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("gt", "lt") and present and value is not None:
            try:
                number = int(value)
            except ValueError:
                return False
            bound = int(self.values[0])
            return number > bound if self.operator == "gt" else number < bound
        return False


LabelSelector = tuple[Requirement, ...]


def _split_requirements(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _check_key(key: str, text: str) -> None:
    if not _LABEL_KEY.match(key) or len(key.split("/")[-1]) > 63:
        raise bad_request(
            f"unable to parse requirement: values[0][{key}]: Invalid value: \"{key}\": "
            f"name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            f"start and end with an alphanumeric character (found in selector \"{text}\")")


def _check_value(value: str, key: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise bad_request(
            f"unable to parse requirement: values[0][{key}]: Invalid value: \"{value}\": "
            f"a valid label must be an empty string or consist of alphanumeric characters, "
            f"'-', '_' or '.', and must start and end with an alphanumeric character")


_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k`; an invalid selector is a 400."""
    if not text:
        return ()
    requirements = []
    for part in _split_requirements(text):
        set_match = _SET_RE.match(part)
        if set_match:
            key, operator, body = set_match.groups()
            values = tuple(sorted(v.strip() for v in body.split(",") if v.strip()))
            _check_key(key, text)
            for value in values:
                _check_value(value, key)
            requirements.append(Requirement(key, operator, values))
            continue
        if part.startswith("!"):
            key = part[1:].strip()
            _check_key(key, text)
            requirements.append(Requirement(key, "!"))
            continue
        for token, operator in (("==", "="), ("!=", "!="), ("=", "="), (">", "gt"), ("<", "lt")):
            if token in part:
                key, value = (s.strip() for s in part.split(token, 1))
                _check_key(key, text)
                if operator in ("gt", "lt"):
                    if not value.lstrip("-").isdigit():
                        raise bad_request(f"unable to parse requirement: for 'Gt', 'Lt' "
                                          f"operators, the value must be an integer: {value}")
                else:
                    _check_value(value, key)
                requirements.append(Requirement(key, operator, (value,)))
                break
        else:
            _check_key(part, text)
            requirements.append(Requirement(part, "exists"))
    return tuple(requirements)


def label_selector_from_object(selector: JsonObject | None) -> LabelSelector | None:
    """A metav1.LabelSelector (matchLabels/matchExpressions); None selects nothing."""
    if selector is None:
        return None
    requirements = [Requirement(k, "=", (str(v),))
                    for k, v in (selector.get("matchLabels") or {}).items()]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expression in selector.get("matchExpressions") or []:
        operator = operators.get(str(expression.get("operator")))
        if operator is None:
            return None
        requirements.append(Requirement(str(expression.get("key")), operator,
                                        tuple(expression.get("values") or ())))
    return tuple(requirements)


def matches_labels(selector: LabelSelector, obj: JsonObject) -> bool:
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(requirement.matches(labels) for requirement in selector)


# ---------------------------------------------------------------------------------------------
# field selectors


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    value: str
    negated: bool


FieldSelector = tuple[FieldRequirement, ...]

_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
SUPPORTED_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
            "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
            "status.nominatedNodeName"),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion",
              "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
              "reportingComponent", "source", "type"),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Node": ("spec.unschedulable",),
    "ReplicaSet": ("status.replicas",),
}


def parse_field_selector(text: str | None, kind: str) -> FieldSelector:
    if not text:
        return ()
    allowed = _COMMON_FIELDS + SUPPORTED_FIELDS.get(kind, ())
    result = []
    for part in _split_requirements(text):
        for token in ("!=", "==", "="):
            if token in part:
                field, value = (s.strip() for s in part.split(token, 1))
                negated = token == "!="
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        if field not in allowed:
            raise bad_request(f'field label not supported: {field}')
        result.append(FieldRequirement(field, value, negated))
    return tuple(result)


def _field_value(obj: JsonObject, dotted: str) -> str:
    node: Any = obj
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def matches_fields(selector: FieldSelector, obj: JsonObject) -> bool:
    for requirement in selector:
        equal = _field_value(obj, requirement.field) == requirement.value
        if equal == requirement.negated:
            return False
    return True


Matcher = Callable[[JsonObject], bool]


def matcher(labels: LabelSelector, fields: FieldSelector) -> Matcher:
    if not labels and not fields:
        return lambda obj: True
    return lambda obj: matches_labels(labels, obj) and matches_fields(fields, obj)
