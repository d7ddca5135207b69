"""Endpoints and EndpointSlice controller: Services with a selector get their backing pods.

Target ports resolve by number or by container port name per pod. Ready pods are `addresses`;
others `notReadyAddresses` (or ready anyway with publishNotReadyAddresses, as headless LWS
services use). Slices are `<service>-<hash>` with the `kubernetes.io/service-name` label; objects
are only written when their content changes.
"""

from __future__ import annotations

from typing import Any

from clustersim.agent.context import AgentContext
from clustersim.agent.controllers.common import is_ready
from clustersim.agent.kubeclient import ENDPOINTS, ENDPOINTSLICES, ApiError
from clustersim.agent.meta import (
    KubeObject,
    is_terminating,
    key_of,
    labels_of,
    name_of,
    namespace_of,
    owner_reference,
    split_key,
    stable_hash,
    uid_of,
)
from clustersim.agent.selectors import map_selector_matches
from clustersim.agent.workqueue import Controller

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice-controller.k8s.io"


def _target_port(service_port: KubeObject, pod: KubeObject) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    text = str(target)
    if text.isdigit():
        return int(text)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == text:
                return int(port["containerPort"])
    return None


def _pod_ref(pod: KubeObject) -> KubeObject:
    return {"kind": "Pod", "namespace": namespace_of(pod), "name": name_of(pod), "uid": uid_of(pod)}


class EndpointsController(Controller):
    name = "endpoint-controller"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__()
        self.ctx = ctx
        ctx.informers.services.add_handler(lambda _k, svc, _o: self.queue.add(key_of(svc)))
        ctx.informers.pods.add_handler(self._on_pod)
        ctx.informers.endpoints.add_handler(lambda _k, ep, _o: self.queue.add(key_of(ep)))

    def _on_pod(self, _: str, pod: KubeObject, old: KubeObject | None) -> None:
        namespace = namespace_of(pod)
        labels = labels_of(pod)
        old_labels = labels_of(old) if old else {}
        for service in self.ctx.informers.services.items(namespace):
            selector = (service.get("spec") or {}).get("selector")
            if map_selector_matches(selector, labels) or map_selector_matches(selector, old_labels):
                self.queue.add(key_of(service))

    def _backends(self, service: KubeObject) -> list[KubeObject]:
        selector = (service.get("spec") or {}).get("selector")
        return sorted(
            (
                pod
                for pod in self.ctx.informers.pods.items(namespace_of(service))
                if map_selector_matches(selector, labels_of(pod))
                and (pod.get("status") or {}).get("podIP")
                and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            ),
            key=name_of,
        )

    async def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        service = self.ctx.informers.services.get(namespace, name)
        if service is None or is_terminating(service):
            return None
        spec = service.get("spec") or {}
        if not spec.get("selector"):
            return None
        publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
        pods = self._backends(service)
        subsets: dict[str, dict[str, Any]] = {}
        slice_endpoints: list[KubeObject] = []
        slice_ports: list[KubeObject] = []
        for pod in pods:
            ports = []
            for service_port in spec.get("ports") or []:
                target = _target_port(service_port, pod)
                if target is None:
                    continue
                port: KubeObject = {"port": target, "protocol": service_port.get("protocol", "TCP")}
                if service_port.get("name"):
                    port["name"] = service_port["name"]
                if service_port.get("appProtocol"):
                    port["appProtocol"] = service_port["appProtocol"]
                ports.append(port)
            if spec.get("ports") and not ports:
                continue
            ready = (is_ready(pod) or publish_not_ready) and not is_terminating(pod)
            address: KubeObject = {
                "ip": pod["status"]["podIP"],
                "nodeName": (pod.get("spec") or {}).get("nodeName"),
                "targetRef": _pod_ref(pod),
            }
            hostname = (pod.get("spec") or {}).get("hostname")
            if hostname and (pod.get("spec") or {}).get("subdomain") == name:
                address["hostname"] = hostname
            subset_key = stable_hash(ports)
            subset = subsets.setdefault(subset_key, {"ports": ports, "ready": [], "unready": []})
            subset["ready" if ready else "unready"].append(address)
            endpoint: KubeObject = {
                "addresses": [pod["status"]["podIP"]],
                "conditions": {
                    "ready": ready,
                    "serving": is_ready(pod) or publish_not_ready,
                    "terminating": is_terminating(pod),
                },
                "nodeName": (pod.get("spec") or {}).get("nodeName"),
                "targetRef": _pod_ref(pod),
            }
            if "hostname" in address:
                endpoint["hostname"] = address["hostname"]
            slice_endpoints.append(endpoint)
            if not slice_ports:
                slice_ports = ports
        rendered_subsets = []
        for subset in subsets.values():
            entry: KubeObject = {"ports": subset["ports"]} if subset["ports"] else {}
            if subset["ready"]:
                entry["addresses"] = subset["ready"]
            if subset["unready"]:
                entry["notReadyAddresses"] = subset["unready"]
            rendered_subsets.append(entry)
        await self._write_endpoints(service, rendered_subsets)
        await self._write_slice(service, slice_endpoints, slice_ports)
        return None

    async def _write_endpoints(self, service: KubeObject, subsets: list[KubeObject]) -> None:
        namespace, name = namespace_of(service), name_of(service)
        current = self.ctx.informers.endpoints.get(namespace, name)
        labels = {**labels_of(service), "endpoints.kubernetes.io/managed-by": "endpoint-controller"}
        if current is None:
            body = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "subsets": subsets,
            }
            try:
                created = await self.ctx.client.create(ENDPOINTS, body, namespace)
            except ApiError as error:
                if not error.conflict:
                    raise
                return
            self.ctx.informers.endpoints.upsert(created)
            return
        if (current.get("subsets") or []) != subsets:
            updated = await self.ctx.client.merge_patch(
                ENDPOINTS, name, {"subsets": subsets or None}, namespace
            )
            self.ctx.informers.endpoints.upsert(updated)

    async def _write_slice(
        self, service: KubeObject, endpoints: list[KubeObject], ports: list[KubeObject]
    ) -> None:
        namespace, name = namespace_of(service), name_of(service)
        slice_name = f"{name}-{stable_hash(uid_of(service))[:5]}"
        current = self.ctx.informers.endpointslices.get(namespace, slice_name)
        if current is None:
            body = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": slice_name,
                    "namespace": namespace,
                    "labels": {
                        SERVICE_NAME_LABEL: name,
                        "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                    },
                    "ownerReferences": [owner_reference(service)],
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            }
            try:
                created = await self.ctx.client.create(ENDPOINTSLICES, body, namespace)
            except ApiError as error:
                if not error.conflict:
                    raise
                return
            self.ctx.informers.endpointslices.upsert(created)
            return
        if (current.get("endpoints") or []) != endpoints or (current.get("ports") or []) != ports:
            updated = await self.ctx.client.merge_patch(
                ENDPOINTSLICES, slice_name, {"endpoints": endpoints, "ports": ports}, namespace
            )
            self.ctx.informers.endpointslices.upsert(updated)
