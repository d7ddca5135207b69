"""A small, typed Kubernetes REST client over the official `kubernetes` ApiClient.

Where it sits: every Kubernetes activity (kube, waits, serving, preflight) talks to the cluster
through `KubeClient.for_target(spec.target)` (activities/failures.py `target_client`), and so does
the CLI's `plan`. The official client loads the configuration (kubeconfig
path and context, in-cluster, or the default loading rules with $KUBECONFIG), authenticates and
carries TLS; this layer adds what the activities need on top, for any kind including CRDs:
discovery of resource paths, server-side apply with our field manager, list/watch streams,
pod and service proxy calls, one counter of API requests, and retries with back-off of the
answers that mean "try again" (429, 5xx, a dropped connection), so these never reach a workflow
as failures. The clients of one configuration share one pool of connections (`api_client_for`),
so an activity's first call does not pay a TLS handshake. Everything here blocks: activities
call it from threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from k8s.errors import RETRYABLE_STATUSES
from k8s.forbidden import forbidden_in
from spec.activity_io import FIELD_MANAGER, ObjectRef
from spec.rollout import Target

TRANSIENT_STATUSES = RETRYABLE_STATUSES
RETRY_ATTEMPTS = 8
RETRY_BASE_SECONDS = 0.1
RETRY_MAX_SECONDS = 2.0
RETRY_AFTER_CAP_SECONDS = 5.0
# (connect, read) for ordinary calls; streams use their own read timeout.
REQUEST_TIMEOUT = (5.0, 30.0)

# Resources whose paths are fixed by Kubernetes itself: no discovery request needed for them.
_WELL_KNOWN: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Pod"): ("pods", True),
    ("v1", "Node"): ("nodes", False),
    ("v1", "Event"): ("events", True),
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "StatefulSet"): ("statefulsets", True),
    ("apps/v1", "ReplicaSet"): ("replicasets", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): (
        "customresourcedefinitions",
        False,
    ),
}


class KubeError(Exception):
    """A Kubernetes API answer that is not success; `status` 0 means no HTTP answer at all."""

    def __init__(self, status: int, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body: Mapping[str, Any] = body or {}

    @property
    def reason(self) -> str:
        return str(self.body.get("reason") or "")

    @property
    def causes(self) -> list[Mapping[str, Any]]:
        details = self.body.get("details") or {}
        return list(details.get("causes") or [])

    def about(self, what: str) -> KubeError:
        """The same error (same type and status), its message prefixed with what was tried."""
        return type(self)(self.status, f"{what}: {self.message}", self.body)


class ApiUnavailable(KubeError):
    """The API kept answering "try again" (or not at all) through every retry: retryable."""


class UnknownKind(KubeError):
    """The API server serves no such kind (its CRD is not installed)."""


class KubeConfigError(ConfigException):
    """No client can be built for the target: the kubeconfig is missing, empty or malformed,
    names no such context, or references files that do not exist; or (in-cluster) the worker
    does not run in a pod. Retrying cannot fix it. It is a `ConfigException`, so callers that
    catch the loader's own error still catch it; the message names the file, the context and
    what to fix."""

    def __init__(self, target: Target, problem: str) -> None:
        self.kubeconfig = kubeconfig_source(target)
        self.context = target.context
        self.problem = problem.strip().rstrip(".")
        super().__init__(_config_message(target, self.problem))


def kubeconfig_source(target: Target) -> str:
    """Where the worker reads the target's client configuration from, in words."""
    if target.in_cluster:
        return "in-cluster service account"
    if target.kubeconfig:
        return target.kubeconfig
    env = os.environ.get("KUBECONFIG")
    return f"$KUBECONFIG={env}" if env else "~/.kube/config (default; $KUBECONFIG unset)"


def _config_message(target: Target, problem: str) -> str:
    if target.in_cluster:
        return (
            f"the in-cluster configuration cannot be loaded ({problem}): the worker is not "
            "running in a pod with a service account; set target.kubeconfig (and "
            "target.context) in the spec instead of target.inCluster"
        )
    source = kubeconfig_source(target)
    context = f"context {target.context!r}" if target.context else "its current-context"
    hint = ""
    path = target.kubeconfig
    if path and not os.path.isfile(os.path.expanduser(path)):
        hint = f" (no such file on the worker, host {platform.node()})"
    elif target.context and "Expected object with name" in problem:
        known = _context_names(path)
        hint = f" (contexts in it: {', '.join(known)})" if known else ""
    return (
        f"the kubeconfig {source}{hint}, {context}, cannot be used: {problem}. Fix the file "
        "on the worker, or point target.kubeconfig and target.context in the spec at a valid "
        "kubeconfig and one of its contexts; retrying cannot help"
    )


def _context_names(path: str | None) -> list[str]:
    try:
        contexts, _ = _CONFIG.list_kube_config_contexts(config_file=path)
    except Exception:  # only a hint for the message
        return []
    return [str(c.get("name")) for c in contexts or [] if isinstance(c, dict)]


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        return base + (f"/{quote(name)}" if name else "")


# The config loaders carry no type annotations; this names them as untyped on purpose.
_CONFIG: Any = k8s_config

# Discovery answers shared by every client to the same server (only hits: a CRD may appear).
_DISCOVERED: dict[tuple[str, str, str], Resource] = {}
_DISCOVERED_LOCK = threading.Lock()


def api_client_for(target: Target) -> k8s_client.ApiClient:
    """The official client for a target: in-cluster, a kubeconfig (and context), or the default
    loading rules ($KUBECONFIG, then ~/.kube/config), shared by every caller in the process
    (see `_SHARED`). A configuration no client can be built from raises `KubeConfigError`."""
    identity = IN_CLUSTER if target.in_cluster else _kubeconfig_identity(target)
    known = None
    if identity is not None:
        with _SHARED_LOCK:
            known = _SHARED.get(identity)
            if known is not None:
                _SHARED.move_to_end(identity)
    if known is not None:
        return known
    try:
        configuration = k8s_client.Configuration()
        if target.in_cluster:
            # The loader's hook re-reads the service account token when it expires.
            _CONFIG.load_incluster_config(client_configuration=configuration)
        else:
            _CONFIG.load_kube_config(
                config_file=target.kubeconfig, context=target.context,
                client_configuration=configuration, persist_config=False,
            )
    except ConfigException as error:
        raise KubeConfigError(target, str(error)) from error
    except yaml.YAMLError as error:
        raise KubeConfigError(target, f"not valid YAML: {error}") from error
    except OSError as error:
        raise KubeConfigError(target, f"cannot be read: {error}") from error
    except (TypeError, AttributeError, KeyError, ValueError) as error:
        # The loader indexes the parsed YAML as it expects a kubeconfig to be shaped.
        problem = f"not a kubeconfig ({type(error).__name__}: {error})"
        raise KubeConfigError(target, problem) from error
    configuration.connection_pool_maxsize = SHARED_POOL_CONNECTIONS
    api = k8s_client.ApiClient(configuration)
    if identity is None:
        return api
    with _SHARED_LOCK:
        api = _SHARED.setdefault(identity, api)
        _SHARED.move_to_end(identity)
        # An older version of the same kubeconfig and context, and the least recently used
        # beyond SHARED_CLIENTS: their idle connections go (calls still running on them
        # finish, and their connections close when released).
        stale = [key for key in _SHARED if key[:2] == identity[:2] and key != identity]
        retired = [_SHARED.pop(key) for key in stale]
        while len(_SHARED) > SHARED_CLIENTS:
            retired.append(_SHARED.popitem(last=False)[1])
    for old in retired:
        old.rest_client.pool_manager.clear()
    return api


# One official client per loaded configuration: the kubeconfig file's version (path, mtime,
# size, inode) and context, or the in-cluster service account. Every activity used to build a
# client of its own, hence new connections: parsing the kubeconfig was 7 % of a warm rollout's
# worker CPU, and the TLS handshakes of the new connections a quarter of it at fifty warm
# rollouts (py-spy). urllib3's pool is thread-safe, so the activities' threads share it; it
# keeps up to SHARED_POOL_CONNECTIONS idle connections per API server for the next calls (more
# run at once when needed; urllib3 then closes the extra ones after their call). A file that
# changed is loaded again; a credential that expires is refreshed through the hook the loader
# put on the configuration.
SHARED_POOL_CONNECTIONS = 64
# (context, files, their versions (mtime, size, inode)): the first two name the configuration,
# the third its version.
Identity = tuple[str | None, tuple[str, ...], tuple[tuple[int, int, int], ...]]
IN_CLUSTER: Identity = ("in-cluster service account", (), ())
# At most this many configurations keep a client, the least recently used going first: a
# worker that has served many clusters, or kubeconfigs at many paths, does not keep them all.
SHARED_CLIENTS = 16
_SHARED: OrderedDict[Identity, k8s_client.ApiClient] = OrderedDict()
_SHARED_LOCK = threading.Lock()


def _kubeconfig_identity(target: Target) -> Identity | None:
    """What the loader will read for `target`; None when a file cannot be read (the loader then
    says why)."""
    source = target.kubeconfig or _CONFIG.KUBE_CONFIG_DEFAULT_LOCATION
    files = tuple(os.path.expanduser(p) for p in str(source).split(os.pathsep) if p)
    try:
        stats = [os.stat(path) for path in files]
    except OSError:
        return None
    return target.context, files, tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in stats)


class KubeClient:
    """Typed dict-in, dict-out access to any kind; counts the API requests it makes."""

    def __init__(self, api: k8s_client.ApiClient, *, shared: bool = False) -> None:
        self.api = api
        # A shared ApiClient (api_client_for) outlives this client: close() leaves it open.
        self._shared = shared
        self.host = str(api.configuration.host)
        self._lock = threading.Lock()
        self._requests = 0
        self.request_kinds: Counter[str] = Counter()

    @classmethod
    def for_target(cls, target: Target) -> KubeClient:
        """The target's client, over the process's shared connections to its API server."""
        return cls(api_client_for(target), shared=True)

    def close(self) -> None:
        """Close this client's connections, unless they are shared (`for_target`)."""
        if not self._shared:
            api: Any = self.api
            api.close()

    @property
    def requests(self) -> int:
        return self._requests

    def _count(self, method: str, path: str, query: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            self._requests += 1
            self.request_kinds[_request_kind(method, path, query)] += 1

    # --- raw HTTP -----------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
        timeout: float | tuple[float, float] = REQUEST_TIMEOUT,
    ) -> urllib3.BaseHTTPResponse:
        # `body` is a JSON-able object: the official client serializes it for JSON and
        # apply-patch+yaml content types alike (a pre-serialized string would be encoded twice).
        headers = {"Accept": "application/json, */*"}
        if content_type:
            headers["Content-Type"] = content_type
        params: list[tuple[str, str]] = list(query)
        _, url, headers, _, _ = self.api.param_serialize(
            method, path, header_params=headers, query_params=[], auth_settings=["BearerToken"]
        )
        if params:
            url += "?" + urlencode(params)
        self._count(method, path, params)
        response = self.api.call_api(method, url, headers, body, _request_timeout=timeout)
        raw: urllib3.BaseHTTPResponse = response.response
        return raw

    def raw(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
        retry_statuses: frozenset[int] = TRANSIENT_STATUSES,
        timeout: float | tuple[float, float] = REQUEST_TIMEOUT,
        retry_api_statuses: bool = False,
    ) -> tuple[int, bytes]:
        """One request, retried with back-off while the answer is transient; (status, body).
        `retry_api_statuses`: also retry a 5xx that is the API server's own Status (not the
        answer of what it proxies to)."""
        last = ""
        for attempt in range(RETRY_ATTEMPTS):
            try:
                response = self._send(method, path, query, body, content_type, timeout)
            except (urllib3.exceptions.HTTPError, k8s_client.ApiException, OSError) as error:
                last = f"{type(error).__name__}: {error}"
                _sleep_backoff(attempt, None)
                continue
            try:
                data = response.data
                status = response.status
                response.release_conn()
            except (urllib3.exceptions.HTTPError, OSError) as error:
                # The body broke off: this connection must not serve the next request.
                discard(response)
                last = f"{type(error).__name__}: {error}"
                _sleep_backoff(attempt, None)
                continue
            if status in retry_statuses or (
                retry_api_statuses and status in TRANSIENT_STATUSES and _is_api_status(data)
            ):
                last = f"HTTP {status}: {data[:200]!r}"
                _sleep_backoff(attempt, response.headers.get("Retry-After"))
                continue
            return status, data
        raise ApiUnavailable(0, f"{method} {path}: the API server kept failing ({last})")

    def request(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """A JSON request; a non-2xx answer raises `KubeError` carrying the Status body."""
        status, data = self.raw(
            method, path, query, body, content_type if body is not None else None
        )
        document = _json(data)
        if 200 <= status < 300:
            return document
        message = document.get("message") if isinstance(document, dict) else None
        raise KubeError(
            status,
            f"{method} {path}: HTTP {status}: {message or data[:300].decode(errors='replace')}",
            document if isinstance(document, dict) else None,
        )

    def stream(
        self,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        read_timeout: float = 330.0,
    ) -> urllib3.BaseHTTPResponse:
        """Open a streaming GET (watch, log follow); the caller reads and closes it.
        A non-2xx answer raises `KubeError` (transient ones after the usual retries)."""
        last = ""
        for attempt in range(RETRY_ATTEMPTS):
            try:
                response = self._send("GET", path, query, timeout=(5.0, read_timeout))
            except (urllib3.exceptions.HTTPError, k8s_client.ApiException, OSError) as error:
                last = f"{type(error).__name__}: {error}"
                _sleep_backoff(attempt, None)
                continue
            if response.status in TRANSIENT_STATUSES:
                last = f"HTTP {response.status}"
                retry_after = response.headers.get("Retry-After")
                discard(response)
                _sleep_backoff(attempt, retry_after)
                continue
            if response.status >= 300:
                try:
                    data = response.data
                finally:
                    discard(response)
                document = _json(data)
                message = document.get("message") if isinstance(document, dict) else None
                raise KubeError(
                    response.status,
                    f"GET {path}: HTTP {response.status}: {message or data[:300]!r}",
                    document if isinstance(document, dict) else None,
                )
            return response
        raise ApiUnavailable(0, f"GET {path}: the API server kept failing ({last})")

    # --- resources -----------------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Resource:
        known = _WELL_KNOWN.get((api_version, kind))
        if known is not None:
            return Resource(api_version, kind, known[0], known[1])
        key = (self.host, api_version, kind)
        with _DISCOVERED_LOCK:
            found = _DISCOVERED.get(key)
        if found is not None:
            return found
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            listing = self.request("GET", path)
        except KubeError as error:
            if error.status == 404:
                raise UnknownKind(404, f"the API server serves no {api_version}") from None
            raise
        for item in listing.get("resources") or []:
            if item.get("kind") == kind and "/" not in str(item.get("name")):
                resource = Resource(api_version, kind, item["name"], bool(item.get("namespaced")))
                with _DISCOVERED_LOCK:
                    _DISCOVERED[key] = resource
                return resource
        raise UnknownKind(404, f"the API server serves no kind {kind} in {api_version}")

    def resource_of(self, ref: ObjectRef) -> Resource:
        return self.resource(ref.api_version, ref.kind)

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        resource = self.resource_of(ref)
        try:
            found: dict[str, Any] = self.request("GET", resource.path(ref.namespace, ref.name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        return found

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Items (with apiVersion and kind filled in) and the list's resourceVersion."""
        resource = self.resource(api_version, kind)
        query = _selectors(label_selector, field_selector)
        document = self.request("GET", resource.path(namespace), query)
        items = []
        for item in document.get("items") or []:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            items.append(item)
        return items, str((document.get("metadata") or {}).get("resourceVersion") or "")

    def apply(self, obj: Mapping[str, Any], force: bool) -> dict[str, Any]:
        """Server-side apply with field manager `llmd-rollout`; returns the object as stored."""
        ref = ObjectRef.of(dict(obj))
        resource = self.resource_of(ref)
        query = [("fieldManager", FIELD_MANAGER)]
        if force:
            query.append(("force", "true"))
        applied: dict[str, Any] = self.request(
            "PATCH",
            resource.path(ref.namespace, ref.name),
            query,
            body=dict(obj),
            content_type="application/apply-patch+yaml",
        )
        return applied

    def delete(self, ref: ObjectRef, propagation: str = "Foreground") -> bool:
        """Delete; False when it was already gone."""
        resource = self.resource_of(ref)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            self.request("DELETE", resource.path(ref.namespace, ref.name), body=body)
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        resource_version: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> urllib3.BaseHTTPResponse:
        """Open a watch from `resource_version`; read it with `watch_events`."""
        resource = self.resource(api_version, kind)
        query = [
            ("watch", "1"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
            *_selectors(label_selector, field_selector),
        ]
        return self.stream(resource.path(namespace), query, read_timeout=timeout_seconds + 30)

    # --- proxies and logs ----------------------------------------------------------------------

    def pod_proxy(
        self,
        namespace: str,
        pod: str,
        port: int,
        path: str,
        method: str = "GET",
        body: Any = None,
        timeout: float = 10.0,
    ) -> tuple[int, bytes]:
        """Call a pod's HTTP endpoint through the API server proxy; the pod's own status codes
        come back as they are (only a dropped connection is retried)."""
        proxy = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}:{port}/proxy{path}"
        return self._proxy(method, proxy, body, timeout)

    def service_proxy(
        self,
        namespace: str,
        service: str,
        port: int,
        path: str,
        method: str = "GET",
        body: Any = None,
        timeout: float = 60.0,
    ) -> tuple[int, bytes]:
        proxy = (
            f"/api/v1/namespaces/{quote(namespace)}/services/{quote(service)}:{port}/proxy{path}"
        )
        return self._proxy(method, proxy, body, timeout)

    def _proxy(self, method: str, path: str, body: Any, timeout: float) -> tuple[int, bytes]:
        # The API server's own 429/5xx (a Status document) is retried like any request; its
        # RBAC refusal is raised; what the pod or service answers comes back for the caller.
        status, data = self.raw(
            method,
            path,
            body=body,
            content_type="application/json" if body is not None else None,
            retry_statuses=frozenset({429}),
            timeout=(5.0, timeout),
            retry_api_statuses=True,
        )
        _raise_if_refused(method, path, status, data)
        return status, data

    def pod_log(
        self,
        namespace: str,
        pod: str,
        container: str,
        previous: bool = False,
        tail_lines: int | None = None,
    ) -> list[str] | None:
        """A container's log lines; None when there is none (not started, or no previous)."""
        query = [("container", container)]
        if previous:
            query.append(("previous", "true"))
        if tail_lines is not None:
            query.append(("tailLines", str(tail_lines)))
        path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/log"
        status, data = self.raw("GET", path, query)
        _raise_if_refused("GET", path, status, data)
        if status >= 300:
            return None
        return data.decode("utf-8", errors="replace").splitlines()

    def follow_log(
        self, namespace: str, pod: str, container: str, read_timeout: float = 300.0
    ) -> urllib3.BaseHTTPResponse:
        """A container's log as a stream of new lines (follow); the caller closes it."""
        path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/log"
        return self.stream(path, [("container", container), ("follow", "true")], read_timeout)

    def server_version(self) -> dict[str, Any]:
        version: dict[str, Any] = self.request("GET", "/version")
        return version


def watch_events(response: urllib3.BaseHTTPResponse) -> Iterator[dict[str, Any]]:
    """The events of a watch stream, one JSON document per line, until the server ends it."""
    for line in stream_lines(response):
        if line.strip():
            event: dict[str, Any] = json.loads(line)
            yield event


def stream_lines(response: urllib3.BaseHTTPResponse) -> Iterator[str]:
    """Lines of a streaming response as they arrive (a partial last line is kept until done)."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line.decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


def discard(response: urllib3.BaseHTTPResponse) -> None:
    """Give the connection back only with its response read to the end; a body that cannot be
    drained closes the connection instead. A connection returned with unread bytes answers the
    next request with them (`ResponseNotReady('Request-sent')`)."""
    try:
        response.drain_conn()
        response.release_conn()
    except Exception:  # any failure to drain: the connection is not reusable
        with contextlib.suppress(Exception):
            response.close()


def close_stream(response: urllib3.BaseHTTPResponse) -> None:
    """Unblock a thread reading `response` (from any thread) and drop the connection."""
    shutdown = getattr(response, "shutdown", None)
    if callable(shutdown):
        shutdown()
    response.close()


def _raise_if_refused(method: str, path: str, status: int, data: bytes) -> None:
    """A 403 in which the API server's authorizer (not the pod behind a proxy, which may answer
    403 itself) refuses us the request: raise it, so a missing RBAC rule is never mistaken for
    a pod that is not ready yet or has no log."""
    if status != 403:
        return
    try:
        document = json.loads(data)
    except ValueError:
        return
    message = document.get("message") if isinstance(document, dict) else None
    if not isinstance(message, str) or forbidden_in(message) is None:
        return
    raise KubeError(status, f"{method} {path}: HTTP {status}: {message}", document)


def _request_kind(method: str, path: str, query: Sequence[tuple[str, str]]) -> str:
    """What a request was for, in the words of the efficiency figures."""
    if "/proxy/" in path or path.endswith("/proxy"):
        return "proxy"
    if path.endswith("/log"):
        return "log-follow" if ("follow", "true") in query else "log"
    if method == "GET" and ("watch", "1") in query:
        return "watch"
    if method == "GET":
        return "get/list"
    return method.lower()


def _selectors(label_selector: str | None, field_selector: str | None) -> list[tuple[str, str]]:
    query = []
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    return query


def _is_api_status(data: bytes) -> bool:
    """The body is a Kubernetes Status: the API server answered, not the proxied endpoint."""
    document = _json(data)
    return isinstance(document, dict) and document.get("kind") == "Status"


def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return {}


def _sleep_backoff(attempt: int, retry_after: str | None) -> None:
    if attempt == RETRY_ATTEMPTS - 1:
        return
    delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2**attempt) * (0.5 + random.random())
    if retry_after:
        with contextlib.suppress(ValueError):
            delay = max(delay, min(float(retry_after), RETRY_AFTER_CAP_SECONDS))
    time.sleep(delay)
