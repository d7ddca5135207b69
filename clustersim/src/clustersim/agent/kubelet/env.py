"""Container environment resolution, as the kubelet does before creating a container.

envFrom first, then env in order with `$(VAR)` expansion over what is already defined; fieldRef,
resourceFieldRef, secretKeyRef and configMapKeyRef resolved against the pod and the API. A missing
non-optional Secret/ConfigMap or key is a CreateContainerConfigError with the kubelet's message,
e.g. `secret "llm-d-hf-token" not found` or
`couldn't find key HF_TOKEN in Secret llm-d-wide-ep/llm-d-hf-token`.
"""

from __future__ import annotations

import base64
import functools
import re
from typing import Any

from clustersim.agent.fit import container_requests
from clustersim.agent.kubeclient import CONFIGMAPS, SECRETS, KubeClient, with_retries
from clustersim.agent.meta import KubeObject, annotations_of, labels_of, name_of, namespace_of
from clustersim.agent.quantity import format_amount

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_MAP_FIELD = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ContainerConfigError(Exception):
    """The container cannot be created: CreateContainerConfigError with this message."""


def expand(value: str, defined: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined names are replaced, `$$` escapes, others stay."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return defined.get(name, match.group(0))

    return _REFERENCE.sub(replace, value)


def field_value(pod: KubeObject, path: str, pod_ip: str, host_ip: str) -> str:
    match = _MAP_FIELD.match(path)
    if match:
        source = labels_of(pod) if match.group(1) == "labels" else annotations_of(pod)
        return source.get(match.group(2), "")
    spec = pod.get("spec") or {}
    values = {
        "metadata.name": name_of(pod),
        "metadata.namespace": namespace_of(pod),
        "metadata.uid": str((pod.get("metadata") or {}).get("uid") or ""),
        "spec.nodeName": str(spec.get("nodeName") or ""),
        "spec.serviceAccountName": str(spec.get("serviceAccountName") or "default"),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path not in values:
        raise ContainerConfigError(f'unsupported fieldPath "{path}"')
    return values[path]


def _resource_field(container: KubeObject, ref: dict[str, Any]) -> str:
    resource = str(ref.get("resource", ""))
    section, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    if section == "requests":
        amount = container_requests(container).get(name, 0)
    else:
        amount = container_requests({"resources": {"requests": resources.get("limits") or {}}}).get(
            name, 0
        )
    divisor = str(ref.get("divisor") or "1")
    if name == "cpu" and divisor == "1":
        return str(-(-amount // 1000))
    if name != "cpu" and amount % 1000 == 0:
        return str(amount // 1000)
    return format_amount(amount)


class _Sources:
    """Secrets and ConfigMaps read once per container start."""

    def __init__(self, client: KubeClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._cache: dict[tuple[str, str], KubeObject | None] = {}

    async def get(self, kind: str, name: str) -> KubeObject | None:
        key = (kind, name)
        if key not in self._cache:
            resource = SECRETS if kind == "Secret" else CONFIGMAPS
            self._cache[key] = await with_retries(
                functools.partial(self.client.get_or_none, resource, name, self.namespace)
            )
        return self._cache[key]

    async def data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        obj = await self.get(kind, name)
        if obj is None:
            if optional:
                return None
            raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
        values: dict[str, str] = {}
        if kind == "Secret":
            for key, encoded in (obj.get("data") or {}).items():
                values[key] = base64.b64decode(encoded).decode(errors="replace")
            values.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        else:
            values.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
        return values

    async def key(self, kind: str, name: str, key: str, optional: bool) -> str | None:
        values = await self.data(kind, name, optional)
        if values is None:
            return None
        if key not in values:
            if optional:
                return None
            raise ContainerConfigError(f"couldn't find key {key} in {kind} {self.namespace}/{name}")
        return values[key]


async def resolve_env(
    client: KubeClient, pod: KubeObject, container: KubeObject, pod_ip: str, host_ip: str
) -> dict[str, str]:
    """The container's environment, or ContainerConfigError."""
    sources = _Sources(client, namespace_of(pod))
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(field)
            if ref:
                values = await sources.data(kind, str(ref.get("name")), bool(ref.get("optional")))
                for key, value in (values or {}).items():
                    env[prefix + key] = value
    for entry in container.get("env") or []:
        name = str(entry.get("name"))
        if "value" in entry or "valueFrom" not in entry:
            env[name] = expand(str(entry.get("value") or ""), env)
            continue
        value_from = entry.get("valueFrom") or {}
        resolved: str | None
        if "fieldRef" in value_from:
            resolved = field_value(
                pod, str(value_from["fieldRef"].get("fieldPath")), pod_ip, host_ip
            )
        elif "resourceFieldRef" in value_from:
            resolved = _resource_field(container, value_from["resourceFieldRef"])
        elif "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            resolved = await sources.key(
                "Secret", str(ref.get("name")), str(ref.get("key")), bool(ref.get("optional"))
            )
        elif "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            resolved = await sources.key(
                "ConfigMap", str(ref.get("name")), str(ref.get("key")), bool(ref.get("optional"))
            )
        else:
            resolved = ""
        if resolved is not None:
            env[name] = resolved
    return env


async def check_volumes(client: KubeClient, pod: KubeObject) -> str | None:
    """The FailedMount message for the first missing ConfigMap/Secret volume, or None."""
    namespace = namespace_of(pod)
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        for field, resource, label in (
            ("configMap", CONFIGMAPS, "configmap"),
            ("secret", SECRETS, "secret"),
        ):
            ref = volume.get(field)
            if not ref or ref.get("optional"):
                continue
            name = str(ref.get("name") or ref.get("secretName") or "")
            read = functools.partial(client.get_or_none, resource, name, namespace)
            if await with_retries(read) is None:
                return (
                    f'MountVolume.SetUp failed for volume "{volume.get("name")}" : '
                    f'{label} "{name}" not found'
                )
    return None
