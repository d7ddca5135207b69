"""A thin, typed, async Kubernetes client over aiohttp: the agent's only way to the API server.

Objects stay plain JSON dicts. Writes are creates, JSON merge patches (status through the status
subresource), deletes and pod bindings; reads are lists and chunked watch streams.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import aiohttp

from clustersim.agent.kubeconfig import ClusterCredentials
from clustersim.agent.meta import KubeObject

USER_AGENT = "clustersim-agent/0.1"


@dataclass(frozen=True)
class Resource:
    """One REST resource: where it lives and what it is called."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            prefix += f"/namespaces/{quote(namespace)}"
        prefix += f"/{self.plural}"
        if name:
            prefix += f"/{quote(name)}"
        if sub:
            prefix += f"/{sub}"
        return prefix


NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
PODS = Resource("", "v1", "pods", "Pod")
SERVICES = Resource("", "v1", "services", "Service")
ENDPOINTS = Resource("", "v1", "endpoints", "Endpoints")
SECRETS = Resource("", "v1", "secrets", "Secret")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
EVENTS = Resource("", "v1", "events", "Event")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
REPLICASETS = Resource("apps", "v1", "replicasets", "ReplicaSet")
STATEFULSETS = Resource("apps", "v1", "statefulsets", "StatefulSet")
CONTROLLERREVISIONS = Resource("apps", "v1", "controllerrevisions", "ControllerRevision")
CRDS = Resource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
LEADERWORKERSETS = Resource("leaderworkerset.x-k8s.io", "v1", "leaderworkersets", "LeaderWorkerSet")
GATEWAYCLASSES = Resource(
    "gateway.networking.k8s.io", "v1", "gatewayclasses", "GatewayClass", namespaced=False
)
GATEWAYS = Resource("gateway.networking.k8s.io", "v1", "gateways", "Gateway")
HTTPROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
INFERENCEPOOLS = Resource(
    "inference.networking.x-k8s.io", "v1alpha2", "inferencepools", "InferencePool"
)
INFERENCEMODELS = Resource(
    "inference.networking.x-k8s.io", "v1alpha2", "inferencemodels", "InferenceModel"
)


class ApiError(Exception):
    """A non-2xx answer, with the Status object's reason and message when there is one."""

    def __init__(
        self, status: int, reason: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): relist."""


async def _error_from(response: aiohttp.ClientResponse) -> ApiError:
    text = await response.text()
    retry_after: float | None = None
    try:
        retry_after = float(response.headers.get("Retry-After", ""))
    except ValueError:
        retry_after = None
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        reason = str(body.get("reason") or "")
        return ApiError(response.status, reason, str(body.get("message") or text), retry_after)
    return ApiError(response.status, response.reason or "", text[:500], retry_after)


class KubeClient:
    """Requests against one API server with the kubeconfig's credentials."""

    def __init__(self, credentials: ClusterCredentials) -> None:
        self.credentials = credentials
        self._session: aiohttp.ClientSession | None = None
        self.binding_supported: bool | None = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
            if self.credentials.token:
                headers["Authorization"] = f"Bearer {self.credentials.token}"
            connector = aiohttp.TCPConnector(ssl=self.credentials.ssl_context(), limit=64)
            self._session = aiohttp.ClientSession(
                base_url=None, headers=headers, connector=connector
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, path: str, query: dict[str, Any] | None = None) -> str:
        url = self.credentials.server + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        return url

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(
            method,
            self._url(path, query),
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            if response.status >= 400:
                raise await _error_from(response)
            text = await response.text()
            return json.loads(text) if text else None

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> KubeObject:
        result: KubeObject = await self.request("GET", resource.path(namespace, name))
        return result

    async def get_or_none(
        self, resource: Resource, name: str, namespace: str | None = None
    ) -> KubeObject | None:
        try:
            return await self.get(resource, name, namespace)
        except ApiError as error:
            if error.not_found:
                return None
            raise

    async def list(
        self, resource: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[KubeObject], str]:
        """All items (following `continue`) and the list's resourceVersion."""
        items: list[KubeObject] = []
        token: str | None = None
        while True:
            query = {"labelSelector": label_selector, "limit": 500, "continue": token}
            page = await self.request("GET", resource.path(namespace), query=query, timeout=60)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                items.append(item)
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or None
            if not token:
                return items, str(metadata.get("resourceVersion") or "")

    async def watch(
        self, resource: Resource, resource_version: str, timeout_seconds: int = 300
    ) -> AsyncIterator[tuple[str, KubeObject]]:
        """Watch events from `resource_version` until the server ends the stream.

        Raises WatchExpired on 410 (as an HTTP answer or as an ERROR event).
        """
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30)
        async with self.session.get(self._url(resource.path(), query), timeout=timeout) as response:
            if response.status == 410:
                raise WatchExpired(resource.plural)
            if response.status >= 400:
                raise await _error_from(response)
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind = str(event.get("type"))
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if int(obj.get("code") or 0) == 410:
                            raise WatchExpired(resource.plural)
                        raise ApiError(
                            int(obj.get("code") or 500),
                            str(obj.get("reason") or ""),
                            str(obj.get("message") or ""),
                        )
                    if kind != "BOOKMARK":
                        obj.setdefault("apiVersion", resource.api_version)
                        obj.setdefault("kind", resource.kind)
                    yield kind, obj

    async def create(
        self, resource: Resource, obj: KubeObject, namespace: str | None = None
    ) -> KubeObject:
        body = dict(obj)
        body.setdefault("apiVersion", resource.api_version)
        body.setdefault("kind", resource.kind)
        result: KubeObject = await self.request(
            "POST", resource.path(namespace or body.get("metadata", {}).get("namespace")), body=body
        )
        return result

    async def merge_patch(
        self,
        resource: Resource,
        name: str,
        patch: KubeObject,
        namespace: str | None = None,
        *,
        subresource: str = "",
    ) -> KubeObject:
        result: KubeObject = await self.request(
            "PATCH",
            resource.path(namespace, name, subresource),
            body=patch,
            content_type="application/merge-patch+json",
        )
        return result

    async def patch_status(
        self, resource: Resource, name: str, status: KubeObject, namespace: str | None = None
    ) -> KubeObject:
        return await self.merge_patch(
            resource, name, {"status": status}, namespace, subresource="status"
        )

    async def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        uid: str | None = None,
    ) -> KubeObject | None:
        """Delete; returns the object when it still exists (graceful), None when it is gone."""
        body: KubeObject = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            result = await self.request("DELETE", resource.path(namespace, name), body=body)
        except ApiError as error:
            if error.not_found:
                return None
            raise
        if isinstance(result, dict) and result.get("kind") == resource.kind:
            metadata = result.get("metadata") or {}
            if metadata.get("deletionTimestamp"):
                return result
        return None

    async def bind_pod(self, namespace: str, name: str, uid: str, node_name: str) -> None:
        """Bind through pods/binding when the server has it, else set spec.nodeName."""
        if self.binding_supported is not False:
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
            }
            try:
                await self.request("POST", PODS.path(namespace, name, "binding"), body=binding)
                self.binding_supported = True
                return
            except ApiError as error:
                route_missing = error.status == 405 or (
                    error.status == 404 and "could not find the requested resource" in error.message
                )
                if not route_missing or self.binding_supported:
                    raise
                self.binding_supported = False
        await self.merge_patch(PODS, name, {"spec": {"nodeName": node_name}}, namespace)


T = TypeVar("T")


def retryable(error: Exception) -> bool:
    """Transient: throttling, server errors and connection trouble (not 4xx client errors)."""
    if isinstance(error, ApiError):
        return error.status == 429 or error.status >= 500
    return isinstance(error, (aiohttp.ClientError, TimeoutError))


async def with_retries(call: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """`call()` again after transient failures (honouring Retry-After), for up to `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.1
    while True:
        try:
            return await call()
        except (ApiError, aiohttp.ClientError, TimeoutError) as error:
            if not retryable(error) or loop.time() >= deadline:
                raise
            wait = delay
            if isinstance(error, ApiError) and error.retry_after is not None:
                wait = max(wait, error.retry_after)
            await asyncio.sleep(min(wait, max(0.0, deadline - loop.time())))
            delay = min(5.0, delay * 2)
