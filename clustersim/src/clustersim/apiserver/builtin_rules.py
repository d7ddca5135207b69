"""Defaulting and validation of built-in kinds, as the real API server's strategies do them.

Only the rules the stack can meet are here: object name formats, pod and pod-template defaults,
workload selectors, immutable fields (workload selectors, StatefulSet spec, pod spec, ConfigMap
and Secret `immutable`), Secret `stringData`, Service ports and namespace defaults.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections.abc import Callable
from typing import Any

from clustersim.apiserver import names
from clustersim.apiserver.errors import (
    FieldError,
    forbidden,
    invalid_value,
    required_value,
    too_long,
    unsupported_value,
)
from clustersim.apiserver.selectors import label_selector_from_object, matches_labels

JsonObject = dict[str, Any]

NameRule = Callable[[str], list[str]]

NAME_RULES: dict[str, NameRule] = {
    "Namespace": names.dns1123_label,
    "Service": names.dns1035_label,
    "Role": names.path_segment,
    "ClusterRole": names.path_segment,
    "RoleBinding": names.path_segment,
    "ClusterRoleBinding": names.path_segment,
    "ServiceAccount": names.dns1123_subdomain,
}

ANNOTATIONS_LIMIT = 262144
DATA_LIMIT = 1048576

POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)"
)


def name_rule(kind: str) -> NameRule:
    return NAME_RULES.get(kind, names.dns1123_subdomain)


# ---------------------------------------------------------------------------------------------
# metadata


def validate_metadata(obj: JsonObject, kind: str, name_rule_override: NameRule | None = None,
                      ) -> list[FieldError]:
    metadata = obj.get("metadata") or {}
    errors: list[FieldError] = []
    name = metadata.get("name")
    if not name:
        errors.append(required_value("metadata.name", "name or generateName is required"))
    elif isinstance(name, str):
        rule = name_rule_override or name_rule(kind)
        errors.extend(names.field_errors("metadata.name", name, rule(name)))
    labels = metadata.get("labels") or {}
    for key, value in labels.items():
        errors.extend(names.field_errors("metadata.labels", key, names.qualified_name(key)))
        if not isinstance(value, str):
            errors.append(invalid_value(f"metadata.labels.{key}", value, "must be a string"))
        else:
            errors.extend(names.field_errors("metadata.labels", value, names.label_value(value)))
    annotations = metadata.get("annotations") or {}
    total = 0
    for key, value in annotations.items():
        errors.extend(names.field_errors("metadata.annotations", key, names.qualified_name(key)))
        total += len(key) + len(str(value))
    if total > ANNOTATIONS_LIMIT:
        errors.append(FieldError("metadata.annotations", "FieldValueTooLong",
                                 f"Too long: must have at most {ANNOTATIONS_LIMIT} bytes"))
    for index, reference in enumerate(metadata.get("ownerReferences") or []):
        path = f"metadata.ownerReferences[{index}]"
        for required in ("apiVersion", "kind", "name", "uid"):
            if not reference.get(required):
                errors.append(required_value(f"{path}.{required}"))
    return errors


# ---------------------------------------------------------------------------------------------
# pods and pod templates


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _default_container(container: JsonObject) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    if isinstance(container.get("image"), str):
        container.setdefault("imagePullPolicy", _image_pull_policy(container["image"]))
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")


def default_pod_spec(spec: JsonObject) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            if isinstance(container, dict):
                _default_container(container)
    for volume in spec.get("volumes") or []:
        if not isinstance(volume, dict):
            continue
        for source in ("configMap", "secret"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 420)
        if isinstance(volume.get("hostPath"), dict):
            volume["hostPath"].setdefault("type", "")


def _qos_class(spec: JsonObject) -> str:
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    requests_any = False
    guaranteed = bool(containers)
    for container in containers:
        resources = container.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        if requests or limits:
            requests_any = True
        for resource in ("cpu", "memory"):
            if resource not in limits or str(requests.get(resource, limits[resource])) != str(
                    limits[resource]):
                guaranteed = False
    if not requests_any:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


_DEFAULT_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": 300},
)


def default_pod(pod: JsonObject, creating: bool) -> None:
    spec = pod.setdefault("spec", {})
    default_pod_spec(spec)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    if creating:
        tolerations = spec.setdefault("tolerations", [])
        for toleration in _DEFAULT_TOLERATIONS:
            if not any(isinstance(t, dict) and t.get("key") == toleration["key"]
                       for t in tolerations):
                tolerations.append(dict(toleration))
        pod["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}


def _validate_containers(spec: JsonObject, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    containers = spec.get("containers")
    if not containers:
        errors.append(required_value(f"{path}.containers"))
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(group) or []):
            cpath = f"{path}.{group}[{index}]"
            if not isinstance(container, dict):
                errors.append(invalid_value(cpath, container, "must be an object"))
                continue
            name = container.get("name")
            if not name:
                errors.append(required_value(f"{cpath}.name"))
            else:
                errors.extend(names.field_errors(f"{cpath}.name", name, names.dns1123_label(name)))
                if name in seen:
                    errors.append(FieldError(f"{cpath}.name", "FieldValueDuplicate",
                                             f'Duplicate value: "{name}"'))
                seen.add(name)
            if not container.get("image"):
                errors.append(required_value(f"{cpath}.image"))
            for pindex, port in enumerate(container.get("ports") or []):
                number = port.get("containerPort") if isinstance(port, dict) else None
                if not isinstance(number, int) or not 0 < number < 65536:
                    errors.append(invalid_value(f"{cpath}.ports[{pindex}].containerPort", number,
                                                "must be between 1 and 65535, inclusive"))
    restart = spec.get("restartPolicy")
    if restart not in (None, "Always", "OnFailure", "Never"):
        errors.append(unsupported_value(f"{path}.restartPolicy", restart,
                                        ["Always", "OnFailure", "Never"]))
    return errors


def _pod_spec_mutable_view(spec: JsonObject) -> JsonObject:
    view = copy.deepcopy(spec)
    for group in ("containers", "initContainers"):
        for container in view.get(group) or []:
            if isinstance(container, dict):
                container.pop("image", None)
    for field in ("activeDeadlineSeconds", "terminationGracePeriodSeconds", "tolerations"):
        view.pop(field, None)
    return view


def validate_pod(pod: JsonObject, old: JsonObject | None) -> list[FieldError]:
    spec = pod.get("spec") or {}
    errors = _validate_containers(spec, "spec")
    if old is not None:
        old_spec = old.get("spec") or {}
        if _pod_spec_mutable_view(spec) != _pod_spec_mutable_view(old_spec):
            errors.append(forbidden("spec", POD_UPDATE_FORBIDDEN))
    return errors


# ---------------------------------------------------------------------------------------------
# workloads


def _selector_text(selector: Any) -> str:
    return "v1.LabelSelector" + json.dumps(selector, sort_keys=True, separators=(",", ":"))


def _validate_workload(obj: JsonObject, old: JsonObject | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errors: list[FieldError] = []
    selector = spec.get("selector")
    if not selector:
        errors.append(required_value("spec.selector"))
    else:
        parsed = label_selector_from_object(selector)
        if not (selector.get("matchLabels") or selector.get("matchExpressions")):
            errors.append(invalid_value("spec.selector", _selector_text(selector),
                                        "empty selector is invalid for deployment"))
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if parsed is None or not matches_labels(parsed, {"metadata": {"labels": template_labels}}):
            errors.append(invalid_value(
                "spec.template.metadata.labels",
                "map[string]string" + json.dumps(template_labels, separators=(",", ":")),
                "`selector` does not match template `labels`"))
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        errors.append(invalid_value("spec.replicas", replicas,
                                    "must be greater than or equal to 0"))
    template_spec = (spec.get("template") or {}).get("spec")
    if template_spec is None:
        errors.append(required_value("spec.template.spec.containers"))
    else:
        errors.extend(_validate_containers(template_spec, "spec.template.spec"))
    if old is not None:
        old_selector = (old.get("spec") or {}).get("selector")
        if old_selector != selector:
            errors.append(invalid_value("spec.selector", _selector_text(selector),
                                        "field is immutable"))
    return errors


_STATEFULSET_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def _validate_statefulset(obj: JsonObject, old: JsonObject | None) -> list[FieldError]:
    errors = _validate_workload(obj, old)
    if old is not None and not any(e.field == "spec.selector" for e in errors):
        spec = {k: v for k, v in (obj.get("spec") or {}).items() if k not in _STATEFULSET_MUTABLE}
        old_spec = {k: v for k, v in (old.get("spec") or {}).items()
                    if k not in _STATEFULSET_MUTABLE}
        if spec != old_spec:
            errors.append(forbidden(
                "spec", "updates to statefulset spec for fields other than 'replicas', "
                "'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy'"
                " and 'minReadySeconds' are forbidden"))
    return errors


def _default_template(obj: JsonObject) -> None:
    template = (obj.get("spec") or {}).get("template")
    if isinstance(template, dict):
        template_spec = template.get("spec")
        if isinstance(template_spec, dict):
            default_pod_spec(template_spec)


def _default_deployment(obj: JsonObject) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(obj)


def _default_statefulset(obj: JsonObject) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("persistentVolumeClaimRetentionPolicy",
                    {"whenDeleted": "Retain", "whenScaled": "Retain"})
    _default_template(obj)


def _default_replicaset(obj: JsonObject) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)
    _default_template(obj)


# ---------------------------------------------------------------------------------------------
# services


def _default_service(obj: JsonObject) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    if spec["type"] == "ExternalName":
        return
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])


def _validate_service(obj: JsonObject, old: JsonObject | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errors: list[FieldError] = []
    service_type = spec.get("type")
    allowed_types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    if service_type not in allowed_types:
        errors.append(unsupported_value("spec.type", service_type, allowed_types))
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    if not ports and service_type != "ExternalName" and not headless:
        errors.append(required_value("spec.ports"))
    seen_names: set[str] = set()
    for index, port in enumerate(ports):
        path = f"spec.ports[{index}]"
        number = port.get("port")
        if not isinstance(number, int) or not 0 < number < 65536:
            errors.append(invalid_value(f"{path}.port", number,
                                        "must be between 1 and 65535, inclusive"))
        name = port.get("name")
        if len(ports) > 1 and not name:
            errors.append(required_value(f"{path}.name"))
        if name:
            errors.extend(names.field_errors(f"{path}.name", name, names.dns1123_label(name)))
            if name in seen_names:
                errors.append(FieldError(f"{path}.name", "FieldValueDuplicate",
                                         f'Duplicate value: "{name}"'))
            seen_names.add(name)
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if old_ip and spec.get("clusterIP") != old_ip:
            errors.append(invalid_value("spec.clusterIPs[0]",
                                        f'[]string{{"{spec.get("clusterIP")}"}}',
                                        "may not change once set"))
    return errors


# ---------------------------------------------------------------------------------------------
# config and secrets


def _merge_string_data(obj: JsonObject) -> None:
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _validate_data(obj: JsonObject, old: JsonObject | None, is_secret: bool,
                   ) -> list[FieldError]:
    errors: list[FieldError] = []
    total = 0
    for field in ("data", "binaryData"):
        for key, value in (obj.get(field) or {}).items():
            errors.extend(names.field_errors(f"{field}[{key}]", key, names.config_key(key)))
            if is_secret or field == "binaryData":
                try:
                    total += len(base64.b64decode(str(value), validate=True))
                except (binascii.Error, ValueError):
                    errors.append(invalid_value(f"{field}[{key}]", "<value omitted>",
                                                "illegal base64 data"))
            else:
                total += len(str(value))
    if total > DATA_LIMIT:
        errors.append(too_long("data", DATA_LIMIT))
    if old is not None and old.get("immutable"):
        if not obj.get("immutable"):
            errors.append(forbidden("immutable", "field is immutable when `immutable` is set"))
        for field in ("data", "binaryData"):
            if (obj.get(field) or {}) != (old.get(field) or {}):
                errors.append(forbidden(field, "field is immutable when `immutable` is set"))
    if is_secret and old is not None and obj.get("type") != old.get("type"):
        errors.append(invalid_value("type", obj.get("type"), "field is immutable"))
    return errors


# ---------------------------------------------------------------------------------------------
# entry points


def _default_namespace(obj: JsonObject, creating: bool) -> None:
    if creating:
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    metadata = obj.setdefault("metadata", {})
    labels = metadata.setdefault("labels", {})
    labels["kubernetes.io/metadata.name"] = metadata.get("name", "")


def initial_status(kind: str, obj: JsonObject) -> JsonObject:
    """The status a new object starts with (before any controller writes one)."""
    if kind == "Service":
        return {"loadBalancer": {}}
    if kind == "StatefulSet":
        return {"replicas": 0, "availableReplicas": 0}
    if kind == "ReplicaSet":
        return {"replicas": 0}
    if kind == "CustomResourceDefinition":
        versions = (obj.get("spec") or {}).get("versions") or []
        stored = [v.get("name") for v in versions if isinstance(v, dict) and v.get("storage")]
        return {"acceptedNames": {"kind": "", "plural": ""}, "storedVersions": stored}
    return {}


def default_object(kind: str, obj: JsonObject, creating: bool) -> None:
    """Apply the built-in defaults of `kind` to `obj` in place."""
    if kind == "Pod":
        default_pod(obj, creating)
    elif kind == "Deployment":
        _default_deployment(obj)
    elif kind == "StatefulSet":
        _default_statefulset(obj)
    elif kind == "ReplicaSet":
        _default_replicaset(obj)
    elif kind == "Service":
        _default_service(obj)
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        _merge_string_data(obj)
    elif kind == "Namespace":
        _default_namespace(obj, creating)
        if creating:
            obj["status"] = {"phase": "Active"}


def validate_object(kind: str, obj: JsonObject, old: JsonObject | None) -> list[FieldError]:
    """Kind-specific validation errors of a built-in object."""
    if kind == "Pod":
        return validate_pod(obj, old)
    if kind in ("Deployment", "ReplicaSet"):
        return _validate_workload(obj, old)
    if kind == "StatefulSet":
        return _validate_statefulset(obj, old)
    if kind == "Service":
        return _validate_service(obj, old)
    if kind in ("ConfigMap", "Secret"):
        return _validate_data(obj, old, kind == "Secret")
    return []
