"""The LeaderWorkerSet v0.7.0 admission webhooks (defaulting and validation), built in. The pod
webhook's mutation is `clustersim.lws_pods`, applied by `objects.py` to Pod creates.

A real cluster runs these in the LWS controller's webhook server; clustersim applies them to
every `leaderworkerset.x-k8s.io` LeaderWorkerSet write so the same objects are accepted and
rejected, with the same defaults, as on a cluster with LWS v0.7.0 installed.
"""

from __future__ import annotations

import re
from typing import Any

from clustersim.apiserver import names
from clustersim.apiserver.errors import FieldError, invalid_value

JsonObject = dict[str, Any]

GROUP = "leaderworkerset.x-k8s.io"
KIND = "LeaderWorkerSet"
# a StatefulSet's pods carry `controller-revision-hash: <statefulset>-<hash>`, a label value
# of at most 63 characters; the worker StatefulSet is `<lws>-<group index>`
_REVISION_HASH_SUFFIX = 1 + 10
_LABEL_LIMIT = 63


def applies_to(group: str, kind: str) -> bool:
    return group == GROUP and kind == KIND


def default(lws: JsonObject) -> None:
    """Fill in the webhook defaults (on top of the CRD schema defaults)."""
    spec = lws.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    template = spec.setdefault("leaderWorkerTemplate", {})
    template.setdefault("size", 1)
    if not template.get("restartPolicy"):
        template["restartPolicy"] = "RecreateGroupOnPodRestart"
    if template["restartPolicy"] == "Default":
        template["restartPolicy"] = "None"
    strategy = spec.get("rolloutStrategy")
    if not isinstance(strategy, dict):
        strategy = spec["rolloutStrategy"] = {}
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.get("rollingUpdateConfiguration")
        if not isinstance(rolling, dict):
            rolling = strategy["rollingUpdateConfiguration"] = {}
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
        rolling.setdefault("partition", 0)
    if not spec.get("startupPolicy"):
        spec["startupPolicy"] = "LeaderCreated"
    if not isinstance(spec.get("networkConfig"), dict):
        spec["networkConfig"] = {"subdomainPolicy": "Shared"}
    sub_group = template.get("subGroupPolicy")
    if isinstance(sub_group, dict):
        sub_group.setdefault("subGroupPolicyType", "LeaderWorker")


_PERCENT = re.compile(r"^(\d+)%$")


def _int_or_percent(value: Any, path: str, errors: list[FieldError]) -> int | None:
    """The number in an int-or-percent value (None when it is malformed)."""
    if isinstance(value, bool):
        errors.append(invalid_value(path, value, "must be an integer or percentage (e.g '5%')"))
        return None
    if isinstance(value, int):
        if value < 0:
            errors.append(invalid_value(path, value, "must be greater than or equal to 0"))
        return value
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match is None:
            errors.append(invalid_value(path, value,
                                        "a valid percent string must be a numeric string "
                                        "followed by an ending '%' (e.g. '1%',  or '93%', regex "
                                        "used for validation is '[0-9]+%')"))
            return None
        percent = int(match.group(1))
        if percent > 100:
            errors.append(invalid_value(path, value, "must not be greater than 100%"))
        return percent
    errors.append(invalid_value(path, value, "must be an integer or percentage (e.g '5%')"))
    return None


def max_name_length(replicas: int) -> int:
    """Longest name whose generated StatefulSet revision labels still fit in 63 characters."""
    largest_group = str(max(replicas - 1, 0))
    return _LABEL_LIMIT - _REVISION_HASH_SUFFIX - 1 - len(largest_group)


def validate(lws: JsonObject, old: JsonObject | None) -> list[FieldError]:
    errors: list[FieldError] = []
    name = str(lws.get("metadata", {}).get("name") or "")
    spec = lws.get("spec") or {}
    replicas = spec.get("replicas", 1)
    problems = names.dns1035_label(name)
    errors.extend(names.field_errors("metadata.name", name, problems))
    if not problems and isinstance(replicas, int):
        limit = max_name_length(replicas)
        if len(name) > limit:
            errors.append(invalid_value(
                "metadata.name", name,
                f"must be no more than {limit} characters: LeaderWorkerSet names its worker "
                f"StatefulSets <name>-<group index> and their pods carry a "
                f"controller-revision-hash label of at most 63 characters"))
    if isinstance(replicas, int) and replicas < 0:
        errors.append(invalid_value("spec.replicas", replicas,
                                    "replicas must be equal or greater than 0"))
    template = spec.get("leaderWorkerTemplate") or {}
    size = template.get("size", 1)
    if isinstance(size, int) and size < 1:
        errors.append(invalid_value("spec.leaderWorkerTemplate.size", size,
                                    "size must be equal or greater than 1"))
    if isinstance(size, int) and isinstance(replicas, int) and replicas * size > 2**31 - 1:
        errors.append(invalid_value("spec.replicas", replicas,
                                    "the product of replicas and worker replicas must not "
                                    "exceed 2147483647"))
    _validate_rollout(spec, errors)
    _validate_sub_groups(template, size, errors)
    if old is not None:
        _validate_update(spec, old.get("spec") or {}, errors)
    return errors


def _validate_rollout(spec: JsonObject, errors: list[FieldError]) -> None:
    rolling = (spec.get("rolloutStrategy") or {}).get("rollingUpdateConfiguration")
    if not isinstance(rolling, dict):
        return
    path = "spec.rolloutStrategy.rollingUpdateConfiguration"
    unavailable = _int_or_percent(rolling.get("maxUnavailable", 1), f"{path}.maxUnavailable",
                                  errors)
    surge = _int_or_percent(rolling.get("maxSurge", 0), f"{path}.maxSurge", errors)
    if unavailable == 0 and surge == 0:
        errors.append(invalid_value(f"{path}.maxUnavailable", rolling.get("maxUnavailable"),
                                    "must not be 0 when `maxSurge` is 0"))
    partition = rolling.get("partition", 0)
    if isinstance(partition, int) and partition < 0:
        errors.append(invalid_value(f"{path}.partition", partition,
                                    "must be greater than or equal to 0"))


def _validate_sub_groups(template: JsonObject, size: Any, errors: list[FieldError]) -> None:
    policy = template.get("subGroupPolicy")
    if not isinstance(policy, dict) or "subGroupSize" not in policy:
        return
    path = "spec.leaderWorkerTemplate.subGroupPolicy.subGroupSize"
    sub_size = policy["subGroupSize"]
    if not isinstance(sub_size, int) or sub_size < 1:
        errors.append(invalid_value(path, sub_size, "subGroupSize must be equal or greater "
                                                    "than 1"))
        return
    if isinstance(size, int) and size % sub_size != 0 and (size - 1) % sub_size != 0:
        errors.append(invalid_value(path, sub_size,
                                    "size or size - 1 must be divisible by subGroupSize"))


def _validate_update(spec: JsonObject, old_spec: JsonObject, errors: list[FieldError]) -> None:
    new_policy = (spec.get("leaderWorkerTemplate") or {}).get("subGroupPolicy") or {}
    old_policy = (old_spec.get("leaderWorkerTemplate") or {}).get("subGroupPolicy") or {}
    if new_policy.get("subGroupSize") != old_policy.get("subGroupSize"):
        errors.append(invalid_value("spec.leaderWorkerTemplate.subGroupPolicy.subGroupSize",
                                    new_policy.get("subGroupSize"), "field is immutable"))
    old_network = old_spec.get("networkConfig") or {}
    new_network = spec.get("networkConfig") or {}
    if old_network.get("subdomainPolicy") is not None and \
            new_network.get("subdomainPolicy") is None:
        errors.append(invalid_value("spec.networkConfig.subdomainPolicy", None,
                                    "cannot change subdomainPolicy from a non-null value to "
                                    "null"))
