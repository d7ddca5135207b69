"""Gateway API controller playing Istio (controllerName istio.io/gateway-controller).

- GatewayClass with Istio's controllerName: Accepted ("Handled by Istio controller"). A class
  with another controller, or a Gateway whose class does not exist, is left alone, so it keeps
  the CRD's default status (Accepted/Programmed Unknown, reason Pending, "Waiting for
  controller"), as without a real controller.
- Gateway of an accepted class: an Istio-like Deployment and Service `<gateway>-istio` (labels
  gateway.networking.k8s.io/gateway-name, gateway.istio.io/managed), then status Accepted and
  Programmed with the Service's address, and per-listener status with attachedRoutes.
- HTTPRoute parents on our Gateways: Accepted, and ResolvedRefs (InvalidKind for a backend kind
  this gateway does not support, BackendNotFound for a missing Service or InferencePool).
- InferencePool (v1alpha2): status.parent per Gateway routing to it; InferenceModel: Accepted.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import yaml

from clustersim.agent.context import AgentContext
from clustersim.agent.kubeclient import (
    CONFIGMAPS,
    DEPLOYMENTS,
    GATEWAYCLASSES,
    GATEWAYS,
    HTTPROUTES,
    INFERENCEMODELS,
    INFERENCEPOOLS,
    SERVICES,
    ApiError,
    Resource,
)
from clustersim.agent.meta import (
    KubeObject,
    annotations_of,
    generation_of,
    is_terminating,
    key_of,
    labels_of,
    name_of,
    namespace_of,
    object_key,
    owner_reference,
    set_condition,
    split_key,
)
from clustersim.agent.workloads.gateway_proxy import GATEWAY_NAME_LABEL, MANAGED_LABEL
from clustersim.agent.workqueue import Controller

CONTROLLER_NAME = "istio.io/gateway-controller"
GATEWAY_GROUP = "gateway.networking.k8s.io"
POOL_GROUP = "inference.networking.x-k8s.io"
PROXY_IMAGE = "gcr.io/istio-testing/proxyv2:1.28-alpha.89f30b26ba71bf5e538083a4720d0bc2d8c06401"
MANAGED_VALUE = "istio.io-gateway-controller"


def _route_parents(route: KubeObject) -> list[tuple[str, str, KubeObject]]:
    """(namespace, gateway name, parentRef) for each Gateway parent of a route."""
    parents = []
    for ref in (route.get("spec") or {}).get("parentRefs") or []:
        if (
            ref.get("kind", "Gateway") == "Gateway"
            and ref.get("group", GATEWAY_GROUP) == GATEWAY_GROUP
        ):
            parents.append(
                (str(ref.get("namespace") or namespace_of(route)), str(ref["name"]), ref)
            )
    return parents


def _backend_refs(route: KubeObject) -> list[KubeObject]:
    refs: list[KubeObject] = []
    for rule in (route.get("spec") or {}).get("rules") or []:
        refs.extend(rule.get("backendRefs") or [])
    return refs


@functools.lru_cache(maxsize=256)
def _overlay(text: str) -> dict[str, Any]:
    """A parametersRef overlay, parsed once per distinct text (every reconcile reads it)."""
    try:
        parsed = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError:
        parsed = {}
    return parsed if isinstance(parsed, dict) else {}


class GatewayController(Controller):
    name = "istio-gateway-controller"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__()
        self.ctx = ctx
        informers = ctx.informers
        informers.gatewayclasses.add_handler(lambda _k, gc, _o: self._class_changed(gc))
        informers.gateways.add_handler(lambda _k, gw, _o: self._gateway_changed(gw))
        informers.httproutes.add_handler(lambda _k, r, o: self._route_changed(r, o))
        informers.pools.add_handler(lambda _k, p, _o: self._pool_changed(p))
        informers.models.add_handler(lambda _k, m, _o: self.queue.add(f"model:{key_of(m)}"))
        informers.services.add_handler(self._owned_changed)
        informers.deployments.add_handler(self._owned_changed)

    # ---- event fan-out -------------------------------------------------------------------

    def _class_changed(self, gateway_class: KubeObject) -> None:
        self.queue.add(f"class:{name_of(gateway_class)}")
        for gateway in self.ctx.informers.gateways.items():
            if (gateway.get("spec") or {}).get("gatewayClassName") == name_of(gateway_class):
                self._gateway_changed(gateway)

    def _gateway_changed(self, gateway: KubeObject) -> None:
        self.queue.add(f"gateway:{key_of(gateway)}")
        for route in self.ctx.informers.httproutes.items():
            if any(
                ns == namespace_of(gateway) and n == name_of(gateway)
                for ns, n, _ in _route_parents(route)
            ):
                self._route_changed(route, None)

    def _route_changed(self, route: KubeObject, old: KubeObject | None) -> None:
        self.queue.add(f"route:{key_of(route)}")
        for source in (route, old):
            if source is None:
                continue
            for namespace, name, _ in _route_parents(source):
                self.queue.add(f"gateway:{object_key(namespace, name)}")
            for ref in _backend_refs(source):
                if ref.get("kind") == "InferencePool":
                    namespace = str(ref.get("namespace") or namespace_of(source))
                    self.queue.add(f"pool:{object_key(namespace, str(ref.get('name')))}")

    def _pool_changed(self, pool: KubeObject) -> None:
        self.queue.add(f"pool:{key_of(pool)}")
        for route in self.ctx.informers.httproutes.items(namespace_of(pool)):
            if any(
                r.get("kind") == "InferencePool" and r.get("name") == name_of(pool)
                for r in _backend_refs(route)
            ):
                self.queue.add(f"route:{key_of(route)}")
        for model in self.ctx.informers.models.items(namespace_of(pool)):
            self.queue.add(f"model:{key_of(model)}")

    def _owned_changed(self, _: str, obj: KubeObject, __: KubeObject | None) -> None:
        gateway = labels_of(obj).get(GATEWAY_NAME_LABEL)
        if gateway and labels_of(obj).get(MANAGED_LABEL):
            self.queue.add(f"gateway:{object_key(namespace_of(obj), gateway)}")
        if obj.get("kind") == "Service":
            for route in self.ctx.informers.httproutes.items(namespace_of(obj)):
                if any(r.get("name") == name_of(obj) for r in _backend_refs(route)):
                    self.queue.add(f"route:{key_of(route)}")

    # ---- helpers -------------------------------------------------------------------------

    def _class_accepted(self, class_name: str) -> bool:
        gateway_class = self.ctx.informers.gatewayclasses.get("", class_name)
        return (
            gateway_class is not None
            and (gateway_class.get("spec") or {}).get("controllerName") == CONTROLLER_NAME
        )

    def _our_gateway(self, namespace: str, name: str) -> KubeObject | None:
        gateway = self.ctx.informers.gateways.get(namespace, name)
        if gateway is None or is_terminating(gateway):
            return None
        if not self._class_accepted(str((gateway.get("spec") or {}).get("gatewayClassName"))):
            return None
        return gateway

    async def _patch_status(self, resource: Resource, obj: KubeObject, status: KubeObject) -> None:
        current = obj.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        try:
            updated = await self.ctx.client.patch_status(
                resource, name_of(obj), status, namespace_of(obj) or None
            )
        except ApiError as error:
            if error.not_found:
                return
            raise
        informer = {
            GATEWAYCLASSES: self.ctx.informers.gatewayclasses,
            GATEWAYS: self.ctx.informers.gateways,
            HTTPROUTES: self.ctx.informers.httproutes,
            INFERENCEPOOLS: self.ctx.informers.pools,
            INFERENCEMODELS: self.ctx.informers.models,
        }[resource]
        informer.upsert(updated)

    async def reconcile(self, key: str) -> float | None:
        kind, _, rest = key.partition(":")
        namespace, name = split_key(rest)
        if kind == "class":
            await self._reconcile_class(name)
        elif kind == "gateway":
            await self._reconcile_gateway(namespace, name)
        elif kind == "route":
            await self._reconcile_route(namespace, name)
        elif kind == "pool":
            await self._reconcile_pool(namespace, name)
        elif kind == "model":
            await self._reconcile_model(namespace, name)
        return None

    # ---- GatewayClass --------------------------------------------------------------------

    async def _reconcile_class(self, name: str) -> None:
        gateway_class = self.ctx.informers.gatewayclasses.get("", name)
        if gateway_class is None or not self._class_accepted(name):
            return
        conditions = [dict(c) for c in (gateway_class.get("status") or {}).get("conditions") or []]
        set_condition(
            conditions,
            "Accepted",
            "True",
            "Accepted",
            "Handled by Istio controller",
            observed_generation=generation_of(gateway_class),
        )
        await self._patch_status(GATEWAYCLASSES, gateway_class, {"conditions": conditions})

    # ---- Gateway -------------------------------------------------------------------------

    async def _customization(self, gateway: KubeObject) -> tuple[dict[str, Any], dict[str, Any]]:
        """The `deployment` and `service` overlays of the parametersRef ConfigMap, if any."""
        ref = ((gateway.get("spec") or {}).get("infrastructure") or {}).get("parametersRef") or {}
        if ref.get("kind") != "ConfigMap" or ref.get("group", "") != "":
            return {}, {}
        configmap = await self.ctx.client.get_or_none(
            CONFIGMAPS, str(ref.get("name")), namespace_of(gateway)
        )
        data = (configmap or {}).get("data") or {}
        overlays = [copy.deepcopy(_overlay(str(data.get(key) or "")))
                    for key in ("deployment", "service")]
        return overlays[0], overlays[1]

    def _listener_ports(self, gateway: KubeObject) -> list[KubeObject]:
        return [
            {"name": str(listener.get("name")), "port": int(listener.get("port", 80))}
            for listener in (gateway.get("spec") or {}).get("listeners") or []
        ]

    async def _ensure_deployment(self, gateway: KubeObject, overlay: dict[str, Any]) -> None:
        namespace, name = namespace_of(gateway), f"{name_of(gateway)}-istio"
        if self.ctx.informers.deployments.get(namespace, name) is not None:
            return
        labels = {GATEWAY_NAME_LABEL: name_of(gateway), MANAGED_LABEL: MANAGED_VALUE}
        proxy_overlay: KubeObject = next(
            (
                c
                for c in (
                    ((overlay.get("spec") or {}).get("template") or {}).get("spec") or {}
                ).get("containers")
                or []
                if c.get("name") == "istio-proxy"
            ),
            {},
        )
        container: KubeObject = {
            "name": "istio-proxy",
            "image": PROXY_IMAGE,
            "args": proxy_overlay.get("args")
            or [
                "proxy",
                "router",
                "--domain",
                "$(POD_NAMESPACE).svc.cluster.local",
            ],
            "env": [
                {
                    "name": "POD_NAMESPACE",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                }
            ],
            "ports": [
                {"containerPort": 15021, "name": "status-port", "protocol": "TCP"},
                {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"},
            ]
            + [
                {"containerPort": p["port"], "protocol": "TCP"}
                for p in self._listener_ports(gateway)
            ],
            "readinessProbe": {
                "httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                "periodSeconds": 15,
                "failureThreshold": 4,
                "timeoutSeconds": 1,
            },
            "resources": copy.deepcopy(
                proxy_overlay.get("resources")
                or {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "2", "memory": "1Gi"},
                }
            ),
        }
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(labels),
                "ownerReferences": [owner_reference(gateway)],
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {GATEWAY_NAME_LABEL: name_of(gateway)}},
                "template": {
                    "metadata": {
                        "labels": {
                            **labels,
                            "service.istio.io/canonical-name": name,
                            "sidecar.istio.io/inject": "false",
                        },
                        "annotations": {"istio.io/rev": "default"},
                    },
                    "spec": {"containers": [container], "serviceAccountName": "default"},
                },
            },
        }
        try:
            created = await self.ctx.client.create(DEPLOYMENTS, body, namespace)
        except ApiError as error:
            if not error.conflict:
                raise
            return
        self.ctx.informers.deployments.upsert(created)

    async def _ensure_service(
        self, gateway: KubeObject, overlay: dict[str, Any]
    ) -> KubeObject | None:
        namespace, name = namespace_of(gateway), f"{name_of(gateway)}-istio"
        existing = self.ctx.informers.services.get(namespace, name)
        if existing is not None:
            return existing
        service_type = annotations_of(gateway).get("networking.istio.io/service-type") or str(
            (overlay.get("spec") or {}).get("type") or "LoadBalancer"
        )
        labels = {GATEWAY_NAME_LABEL: name_of(gateway), MANAGED_LABEL: MANAGED_VALUE}
        ports = [
            {
                "name": "status-port",
                "port": 15021,
                "targetPort": 15021,
                "protocol": "TCP",
                "appProtocol": "tcp",
            }
        ]
        ports += [
            {
                "name": p["name"],
                "port": p["port"],
                "targetPort": p["port"],
                "protocol": "TCP",
                "appProtocol": "http",
            }
            for p in self._listener_ports(gateway)
        ]
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": [owner_reference(gateway)],
            },
            "spec": {
                "type": service_type,
                "selector": {GATEWAY_NAME_LABEL: name_of(gateway)},
                "ports": ports,
            },
        }
        try:
            created = await self.ctx.client.create(SERVICES, body, namespace)
        except ApiError as error:
            if not error.conflict:
                raise
            return None
        self.ctx.informers.services.upsert(created)
        return created

    def _attached_routes(self, gateway: KubeObject, listener: str) -> int:
        count = 0
        for route in self.ctx.informers.httproutes.items():
            for namespace, name, ref in _route_parents(route):
                if namespace != namespace_of(gateway) or name != name_of(gateway):
                    continue
                if ref.get("sectionName") not in (None, listener):
                    continue
                count += 1
        return count

    async def _reconcile_gateway(self, namespace: str, name: str) -> None:
        gateway = self._our_gateway(namespace, name)
        if gateway is None:
            return
        deployment_overlay, service_overlay = await self._customization(gateway)
        await self._ensure_deployment(gateway, deployment_overlay)
        service = await self._ensure_service(gateway, service_overlay)
        generation = generation_of(gateway)
        status = dict(gateway.get("status") or {})
        conditions = [dict(c) for c in status.get("conditions") or []]
        set_condition(
            conditions,
            "Accepted",
            "True",
            "Accepted",
            "Resource accepted",
            observed_generation=generation,
        )
        cluster_ip = str(((service or {}).get("spec") or {}).get("clusterIP") or "")
        service_host = f"{name}-istio.{namespace}.svc.cluster.local"
        addresses: list[KubeObject] = []
        ports = ",".join(str(p["port"]) for p in self._listener_ports(gateway))
        if cluster_ip and cluster_ip != "None":
            addresses = [
                {"type": "IPAddress", "value": cluster_ip},
                {"type": "Hostname", "value": service_host},
            ]
            set_condition(
                conditions,
                "Programmed",
                "True",
                "Programmed",
                f"Resource programmed, assigned to service(s) {service_host}:{ports}",
                observed_generation=generation,
            )
        else:
            set_condition(
                conditions,
                "Programmed",
                "False",
                "AddressNotAssigned",
                f"Assigned to service(s) {service_host}:{ports}, but failed to assign "
                f"to all requested addresses: address pending for hostname "
                f'"{service_host}"',
                observed_generation=generation,
            )
        listeners = []
        for listener in (gateway.get("spec") or {}).get("listeners") or []:
            listener_name = str(listener.get("name"))
            previous = next(
                (
                    dict(entry)
                    for entry in status.get("listeners") or []
                    if entry.get("name") == listener_name
                ),
                {},
            )
            listener_conditions = [dict(c) for c in previous.get("conditions") or []]
            for kind, reason, value in (
                ("Accepted", "Accepted", "True"),
                ("Conflicted", "NoConflicts", "False"),
                ("Programmed", "Programmed", "True"),
                ("ResolvedRefs", "ResolvedRefs", "True"),
            ):
                set_condition(
                    listener_conditions,
                    kind,
                    value,
                    reason,
                    "No errors found",
                    observed_generation=generation,
                )
            listeners.append(
                {
                    "name": listener_name,
                    "supportedKinds": [
                        {"group": GATEWAY_GROUP, "kind": "HTTPRoute"},
                        {"group": GATEWAY_GROUP, "kind": "GRPCRoute"},
                    ],
                    "attachedRoutes": self._attached_routes(gateway, listener_name),
                    "conditions": listener_conditions,
                }
            )
        await self._patch_status(
            GATEWAYS,
            gateway,
            {"addresses": addresses, "conditions": conditions, "listeners": listeners},
        )

    # ---- HTTPRoute -----------------------------------------------------------------------

    def resolve_backend(self, route: KubeObject, ref: KubeObject) -> tuple[str, str] | None:
        """None when the backend is usable, else (reason, message) for ResolvedRefs=False."""
        group = str(ref.get("group") or "")
        kind = str(ref.get("kind") or "Service")
        name = str(ref.get("name"))
        namespace = str(ref.get("namespace") or namespace_of(route))
        if group == "" and kind == "Service":
            if self.ctx.informers.services.get(namespace, name) is None:
                return "BackendNotFound", f"backend({name}.{namespace}.svc.cluster.local) not found"
            return None
        if group == POOL_GROUP and kind == "InferencePool":
            if self.ctx.informers.pools.get(namespace, name) is None:
                return "BackendNotFound", f"backend({name}) not found"
            return None
        return "InvalidKind", f'referencing unsupported backendRef: group "{group}" kind "{kind}"'

    async def _reconcile_route(self, namespace: str, name: str) -> None:
        route = self.ctx.informers.httproutes.get(namespace, name)
        if route is None or is_terminating(route):
            return
        generation = generation_of(route)
        problems = [p for ref in _backend_refs(route) if (p := self.resolve_backend(route, ref))]
        previous = (route.get("status") or {}).get("parents") or []
        parents = [dict(p) for p in previous if p.get("controllerName") != CONTROLLER_NAME]
        for gateway_namespace, gateway_name, ref in _route_parents(route):
            if self._our_gateway(gateway_namespace, gateway_name) is None:
                continue
            parent_ref = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gateway_name}
            if ref.get("namespace"):
                parent_ref["namespace"] = gateway_namespace
            if ref.get("sectionName"):
                parent_ref["sectionName"] = ref["sectionName"]
            old: KubeObject = next(
                (
                    p
                    for p in previous
                    if p.get("parentRef") == parent_ref
                    and p.get("controllerName") == CONTROLLER_NAME
                ),
                {},
            )
            conditions = [dict(c) for c in old.get("conditions") or []]
            set_condition(
                conditions,
                "Accepted",
                "True",
                "Accepted",
                "Route was valid",
                observed_generation=generation,
            )
            if problems:
                reason, message = problems[0]
                set_condition(
                    conditions,
                    "ResolvedRefs",
                    "False",
                    reason,
                    message,
                    observed_generation=generation,
                )
            else:
                set_condition(
                    conditions,
                    "ResolvedRefs",
                    "True",
                    "ResolvedRefs",
                    "All references resolved",
                    observed_generation=generation,
                )
            parents.append(
                {
                    "parentRef": parent_ref,
                    "controllerName": CONTROLLER_NAME,
                    "conditions": conditions,
                }
            )
        if not parents and not previous:
            return
        await self._patch_status(HTTPROUTES, route, {"parents": parents})

    # ---- InferencePool and InferenceModel ------------------------------------------------

    def _pool_gateways(self, pool: KubeObject) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for route in self.ctx.informers.httproutes.items():
            refs = [
                r
                for r in _backend_refs(route)
                if r.get("kind") == "InferencePool"
                and r.get("name") == name_of(pool)
                and str(r.get("namespace") or namespace_of(route)) == namespace_of(pool)
            ]
            if not refs:
                continue
            for gateway_namespace, gateway_name, _ in _route_parents(route):
                parent = (gateway_namespace, gateway_name)
                if parent not in found and self._our_gateway(*parent) is not None:
                    found.append(parent)
        return found

    async def _reconcile_pool(self, namespace: str, name: str) -> None:
        pool = self.ctx.informers.pools.get(namespace, name)
        if pool is None or is_terminating(pool):
            return
        generation = generation_of(pool)
        extension = (pool.get("spec") or {}).get("extensionRef") or {}
        extension_name = str(extension.get("name") or "")
        extension_ok = self.ctx.informers.services.get(namespace, extension_name) is not None
        previous = (pool.get("status") or {}).get("parent") or []
        parents = []
        for gateway_namespace, gateway_name in self._pool_gateways(pool):
            parent_ref = {
                "group": GATEWAY_GROUP,
                "kind": "Gateway",
                "name": gateway_name,
                "namespace": gateway_namespace,
            }
            old: KubeObject = next((p for p in previous if p.get("parentRef") == parent_ref), {})
            conditions = [dict(c) for c in old.get("conditions") or []]
            set_condition(
                conditions,
                "Accepted",
                "True",
                "Accepted",
                "Referenced by an HTTPRoute accepted by the parentRef Gateway",
                observed_generation=generation,
            )
            if extension_ok:
                set_condition(
                    conditions,
                    "ResolvedRefs",
                    "True",
                    "ResolvedRefs",
                    "Resolved ExtensionRef",
                    observed_generation=generation,
                )
            else:
                set_condition(
                    conditions,
                    "ResolvedRefs",
                    "False",
                    "InvalidExtensionRef",
                    f'Service "{extension_name}" referenced by extensionRef not found',
                    observed_generation=generation,
                )
            parents.append({"parentRef": parent_ref, "conditions": conditions})
        if not parents:
            return
        await self._patch_status(INFERENCEPOOLS, pool, {"parent": parents})

    async def _reconcile_model(self, namespace: str, name: str) -> None:
        model = self.ctx.informers.models.get(namespace, name)
        if model is None or is_terminating(model):
            return
        pool_name = str(((model.get("spec") or {}).get("poolRef") or {}).get("name") or "")
        pool = self.ctx.informers.pools.get(namespace, pool_name)
        if pool is None or not self._pool_gateways(pool):
            return
        conditions = [
            dict(c)
            for c in (model.get("status") or {}).get("conditions") or []
            if c.get("reason") != "Pending"
        ]
        set_condition(
            conditions, "Accepted", "True", "Accepted", "", observed_generation=generation_of(model)
        )
        await self._patch_status(INFERENCEMODELS, model, {"conditions": conditions})
