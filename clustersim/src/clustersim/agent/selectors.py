"""Label selectors, node selectors / required node affinity, and taint tolerations.

Shared by the scheduler (node fit), the workload controllers (which pods a ReplicaSet or
StatefulSet owns) and the Endpoints controller (which pods back a Service).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Labels = Mapping[str, str]


def _expression_matches(expression: Mapping[str, Any], labels: Labels) -> bool:
    key = str(expression.get("key", ""))
    operator = str(expression.get("operator", ""))
    values = [str(v) for v in expression.get("values") or []]
    present = key in labels
    if operator == "In":
        return present and labels[key] in values
    if operator == "NotIn":
        return not present or labels[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and values:
        try:
            actual, bound = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return actual > bound if operator == "Gt" else actual < bound
    return False


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Labels) -> bool:
    """metav1.LabelSelector semantics: None matches nothing, {} matches everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    return all(_expression_matches(e, labels) for e in selector.get("matchExpressions") or [])


def map_selector_matches(selector: Mapping[str, str] | None, labels: Labels) -> bool:
    """A plain map selector (Service.spec.selector, nodeSelector); empty or None matches nothing."""
    if not selector:
        return False
    return all(labels.get(k) == str(v) for k, v in selector.items())


def selector_string(match_labels: Mapping[str, str]) -> str:
    """`k1=v1,k2=v2` in key order, as `kubectl get -l` and status.hpaPodSelector spell it."""
    return ",".join(f"{k}={match_labels[k]}" for k in sorted(match_labels))


def _node_selector_term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    metadata = node.get("metadata") or {}
    labels: Labels = metadata.get("labels") or {}
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    if not all(_expression_matches(e, labels) for e in expressions):
        return False
    field_values = {"metadata.name": str(metadata.get("name", ""))}
    return all(_expression_matches(f, field_values) for f in fields)


def node_matches_pod_affinity(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeSelector plus requiredDuringSchedulingIgnoredDuringExecution, as NodeAffinity filters."""
    spec = pod.get("spec") or {}
    labels: Labels = (node.get("metadata") or {}).get("labels") or {}
    node_selector = spec.get("nodeSelector") or {}
    if node_selector and not map_selector_matches(node_selector, labels):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms: Sequence[Mapping[str, Any]] = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    return any(_node_selector_term_matches(t, node) for t in terms)


def toleration_tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return str(toleration.get("value") or "") == str(taint.get("value") or "")


def untolerated_taint(
    pod: Mapping[str, Any], node: Mapping[str, Any], effects: Sequence[str]
) -> Mapping[str, Any] | None:
    """The first taint with one of `effects` that the pod does not tolerate, if any."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in effects:
            continue
        if not any(toleration_tolerates(t, taint) for t in tolerations):
            found: Mapping[str, Any] = taint
            return found
    return None
