"""The HTTP face of the API server: routing, content negotiation, watch streams.

Every request goes through one handler that parses the Kubernetes URL scheme
(`/api/v1/namespaces/{ns}/{resource}/{name}/{subresource}`, `/apis/{group}/{version}/...`),
applies fault rules, and calls `ObjectService`. Answers are JSON; `kubectl get` receives
`meta.k8s.io` Tables and metadata-only clients PartialObjectMetadata.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from clustersim.apiserver import discovery, openapi, protobuf
from clustersim.apiserver.access_reviews import AccessReviews
from clustersim.apiserver.errors import (
    ApiError,
    bad_request,
    method_not_allowed,
    path_not_found,
    unsupported_media_type,
)
from clustersim.apiserver.faults import Decision, FaultInjector
from clustersim.apiserver.kinds import ResourceType
from clustersim.apiserver.objects import (
    APPLY_PATCH,
    PATCH_TYPES,
    DeleteOptions,
    ObjectService,
    WriteOptions,
)
from clustersim.apiserver.proxy import Forwarder
from clustersim.apiserver.rbac import Attributes, UserInfo, forbidden
from clustersim.apiserver.selectors import (
    FieldSelector,
    LabelSelector,
    matcher,
    parse_field_selector,
    parse_label_selector,
)
from clustersim.apiserver.storage import Watcher, WatchEvent
from clustersim.apiserver.tables import table
from clustersim.yamlload import load_yaml_or_json

JsonObject = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LOG = logging.getLogger(__name__)
JSON = "application/json"
MAX_WATCH_SECONDS = 1800
# how often a watch with nothing to send checks that its client is still connected
CLIENT_CHECK_SECONDS = 1.0
ANONYMOUS_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})


USER_KEY = web.RequestKey("clustersim.user", UserInfo)
# warnings the answer to a request carries whatever it is (added when the answer is prepared,
# so streamed answers such as watches carry them too)
WARNINGS_KEY = web.RequestKey("clustersim.warnings", list)
# kube-apiserver 1.33+ marks every v1 Endpoints request deprecated
ENDPOINTS_DEPRECATED = "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"


def warning_header(text: str) -> str:
    return '299 - "' + text.replace('"', '\\"') + '"'


async def add_request_warnings(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """aiohttp on_response_prepare hook: the request's standing warnings as Warning headers."""
    for text in request.get(WARNINGS_KEY) or []:
        response.headers.add("Warning", warning_header(text))


def user_of(request: web.Request) -> UserInfo:
    """The identity the authentication middleware attached to the request."""
    return request[USER_KEY]


def encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def json_response(body: Any, status: int = 200, content_type: str = JSON,
                  warnings: list[str] | None = None,
                  headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(body=encode(body), status=status,
                            headers={"Content-Type": content_type, **(headers or {})})
    for warning in warnings or []:
        response.headers.add("Warning", warning_header(warning))
    return response


def error_response(error: ApiError) -> web.Response:
    return json_response(error.status(), error.code, headers=error.headers)


@dataclass
class ResourceRequest:
    """A parsed resource URL."""

    resource: ResourceType
    namespace: str | None
    name: str | None
    subresource: str
    tail: str

    @property
    def verb_target(self) -> str:
        return f"{self.resource.plural}/{self.subresource}" if self.subresource else \
            self.resource.plural


@dataclass
class Representation:
    """How the client asked to see objects: as themselves, a Table, or metadata only."""

    kind: str = "object"
    version: str = "v1"

    @classmethod
    def from_accept(cls, accept: str) -> Representation:
        for part in accept.split(","):
            parameters = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
            if parameters.get("g") != "meta.k8s.io":
                if part.strip().split(";")[0] in (JSON, "*/*", "application/*", ""):
                    return cls()
                continue
            version = parameters.get("v", "v1")
            if parameters.get("as") == "Table":
                return cls("table", version)
            if parameters.get("as") in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                return cls("metadata", version)
        return cls()


def content_type_of(request: web.Request) -> str:
    """The request's media type; the real server reads a body without one as JSON."""
    if "Content-Type" not in request.headers:
        return JSON
    return request.content_type


def _bool(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as error:
        raise bad_request(f"invalid value for {name}: {value!r}") from error


class ApiHandler:
    """Serves the Kubernetes API over one aiohttp application."""

    def __init__(self, service: ObjectService, faults: FaultInjector, forwarder: Forwarder,
                 version_info: JsonObject, server_address: Callable[[], str],
                 reviews: AccessReviews, bookmark_interval: float = 5.0) -> None:
        self.service = service
        self.reviews = reviews
        self.authorizer = reviews.authorizer
        self.types = service.types
        self.storage = service.storage
        self.faults = faults
        self.forwarder = forwarder
        self.version_info = version_info
        self.server_address = server_address
        self.bookmark_interval = bookmark_interval
        self._openapi_cache: dict[str, tuple[int, bytes, str]] = {}
        self._stopping = asyncio.Event()

    def stop_watches(self) -> None:
        self._stopping.set()
        for watcher in list(self.storage.watchers()):
            watcher.close()

    # ------------------------------------------------------------------------------------------
    # entry point

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        try:
            if path in ("/healthz", "/livez", "/readyz") or path.startswith(
                    ("/healthz/", "/livez/", "/readyz/")):
                return web.Response(text="ok", content_type="text/plain")
            if path == "/version" or path == "/version/":
                return json_response(self.version_info)
            return await self._dispatch(request, path)
        except ApiError as error:
            return error_response(error)

    async def _dispatch(self, request: web.Request, path: str) -> web.StreamResponse:
        segments = [s for s in path.split("/") if s]
        resource_path = len(segments) >= (3 if segments[:1] == ["api"] else 4) and \
            segments[0] in ("api", "apis")
        if not resource_path:
            self._authorize(Attributes(user_of(request), request.method.lower(),
                                       resource_request=False, path=path))
        if not segments:
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/openapi/v3",
                                            "/version", "/healthz"]})
        if segments[0] == "openapi":
            return self._openapi(request, segments[1:])
        if segments[0] == "api":
            if len(segments) == 1:
                return self._discovery_root(request, legacy=True)
            group, version, rest = "", segments[1], segments[2:]
        elif segments[0] == "apis":
            if len(segments) == 1:
                return self._discovery_root(request, legacy=False)
            if len(segments) == 2:
                body = discovery.api_group(self.types, segments[1])
                if body is None:
                    raise path_not_found(path)
                return json_response(body)
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            raise path_not_found(path)
        if not rest:
            resource_list = discovery.resource_list(self.types, group, version)
            if resource_list is None:
                raise path_not_found(path)
            return json_response(resource_list)
        target = self._parse(group, version, rest, path)
        verb = self._verb(request, target)
        if target.resource.kind == "Endpoints" and not target.resource.group:
            request[WARNINGS_KEY] = [ENDPOINTS_DEPRECATED]
        self._authorize(Attributes(
            user_of(request), verb, group=group, version=version,
            resource=target.resource.plural, subresource=target.subresource,
            namespace=target.namespace or "", name=target.name or ""))
        decision = self.faults.decide(verb, path)
        if decision.latency_seconds:
            await asyncio.sleep(decision.latency_seconds)
        if decision.reset:
            return self._reset(request)
        if decision.error is not None:
            raise decision.error
        return await self._serve(request, target, verb, decision)

    def _authorize(self, attributes: Attributes) -> None:
        """RBAC, before anything is served: a denied request gets the real 403."""
        if not self.authorizer.allows(attributes):
            raise forbidden(attributes)

    def _reset(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=500)

    # ------------------------------------------------------------------------------------------
    # discovery and OpenAPI

    def _discovery_root(self, request: web.Request, legacy: bool) -> web.Response:
        accept = request.headers.get("Accept", "")
        for part in accept.split(","):
            media = part.replace(" ", "")
            if media.startswith(discovery.AGGREGATED_V2) or (
                    "g=apidiscovery.k8s.io" in media and "v=v2;" in media + ";"):
                body = discovery.aggregated(self.types, legacy)
                return json_response(body, content_type=discovery.AGGREGATED_V2,
                                     headers={"Vary": "Accept", "ETag": discovery.etag(body)})
            if "g=apidiscovery.k8s.io" in media and "v=v2beta1" in media:
                body = discovery.aggregated(self.types, legacy, beta=True)
                return json_response(body, content_type=discovery.AGGREGATED_V2BETA1,
                                     headers={"Vary": "Accept"})
            if media.split(";")[0] in (JSON, "*/*", ""):
                break
        if legacy:
            return json_response(discovery.api_versions(self.server_address()),
                                 headers={"Vary": "Accept"})
        return json_response(discovery.group_list(self.types), headers={"Vary": "Accept"})

    def _openapi_document(self, gv_path: str) -> tuple[bytes, str] | None:
        cached = self._openapi_cache.get(gv_path)
        if cached is not None and cached[0] == self.types.generation:
            return cached[1], cached[2]
        parts = gv_path.split("/")
        if parts[0] == "api" and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            return None
        document = openapi.group_version_document(self.types, group, version,
                                                  str(self.version_info["gitVersion"]))
        if document is None:
            return None
        body = encode(document)
        digest = openapi.document_hash(body)
        self._openapi_cache[gv_path] = (self.types.generation, body, digest)
        return body, digest

    def _openapi(self, request: web.Request, rest: list[str]) -> web.StreamResponse:
        if rest == ["v2"]:
            accept = request.headers.get("Accept", "")
            if "protobuf" in accept:
                return web.Response(body=openapi.v2_protobuf(str(self.version_info["gitVersion"])),
                                    headers={"Content-Type": openapi.V2_PROTOBUF})
            return json_response(openapi.v2_document(str(self.version_info["gitVersion"])))
        if rest[:1] != ["v3"]:
            raise path_not_found(request.path)
        if len(rest) == 1:
            hashes = {}
            for group, versions in self.types.groups():
                for version in versions:
                    gv_path = openapi.gv_path(group, version)
                    found = self._openapi_document(gv_path)
                    if found is not None:
                        hashes[gv_path] = found[1]
            return json_response(openapi.index(self.types, hashes))
        found = self._openapi_document("/".join(rest[1:]))
        if found is None:
            raise path_not_found(request.path)
        body, digest = found
        headers = {"Content-Type": JSON, "Etag": f'"{digest}"'}
        if request.rel_url.query.get("hash") == digest:
            headers["Cache-Control"] = "public, immutable"
        return web.Response(body=body, headers=headers)

    # ------------------------------------------------------------------------------------------
    # resource URLs

    def _parse(self, group: str, version: str, rest: list[str], path: str) -> ResourceRequest:
        if not self.types.in_group_version(group, version):
            raise path_not_found(path)
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and \
                self.types.lookup(group, version, rest[2]) is not None:
            namespace = rest[1]
            rest = rest[2:]
        resource = self.types.lookup(group, version, rest[0])
        if resource is None:
            raise path_not_found(path)
        if namespace is not None and not resource.namespaced:
            raise path_not_found(path)
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else ""
        tail = "/".join(rest[3:])
        if resource.namespaced and namespace is None and name is not None:
            raise path_not_found(path)
        if subresource and subresource not in resource.subresources and not (
                subresource == "binding" and resource.kind == "Pod" and not resource.is_custom):
            raise path_not_found(path)
        if tail and subresource != "proxy":
            raise path_not_found(path)
        if subresource == "proxy":
            raw = self._raw_tail(path, rest)
            tail = raw
        return ResourceRequest(resource, namespace, name, subresource, tail)

    @staticmethod
    def _raw_tail(path: str, rest: list[str]) -> str:
        marker = f"/{rest[1]}/proxy"
        index = path.find(marker)
        return path[index + len(marker):] if index >= 0 else "/" + "/".join(rest[3:])

    @staticmethod
    def _verb(request: web.Request, target: ResourceRequest) -> str:
        method = request.method
        query = request.rel_url.query
        if target.name is None:
            if method == "GET":
                return "watch" if _bool(query.get("watch")) else "list"
            return {"POST": "create", "DELETE": "deletecollection"}.get(method, method.lower())
        return {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete",
                "POST": "create"}.get(method, method.lower())

    # ------------------------------------------------------------------------------------------
    # request bodies and options

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        content_type = content_type_of(request)
        if content_type == protobuf.PROTOBUF:
            return protobuf.decode(raw)
        if content_type in (JSON, "application/yaml", "text/yaml", "application/x-yaml"):
            try:
                if content_type == JSON:
                    return json.loads(raw or b"null")
                return load_yaml_or_json(raw)
            except (ValueError, yaml.YAMLError) as error:
                raise bad_request(f"the body of the request could not be decoded: "
                                  f"{error}") from error
        raise unsupported_media_type(content_type, [JSON, "application/yaml", protobuf.PROTOBUF])

    @staticmethod
    def _write_options(request: web.Request) -> WriteOptions:
        query = request.rel_url.query
        dry_run = query.getall("dryRun", [])
        for value in dry_run:
            if value != "All":
                raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: '
                                  f'"All"')
        validation = query.get("fieldValidation") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f"fieldValidation: Unsupported value: {validation!r}: supported "
                              f"values: \"Ignore\", \"Strict\", \"Warn\"")
        manager = query.get("fieldManager") or ""
        if len(manager) > 128:
            raise bad_request("fieldManager: Too long: must have at most 128 bytes")
        if not manager and content_type_of(request) != APPLY_PATCH:
            # the real server names an unnamed updater after its user agent
            agent = request.headers.get("User-Agent", "unknown")
            manager = agent.split("/")[0][:128] or "unknown"
        force = query.get("force")
        return WriteOptions(dry_run=bool(dry_run), field_manager=manager,
                            field_validation=validation,
                            force=None if force is None else _bool(force))

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        query = request.rel_url.query
        options = DeleteOptions(
            propagation_policy=query.get("propagationPolicy"),
            grace_period_seconds=_int(query.get("gracePeriodSeconds"), "gracePeriodSeconds"),
            dry_run=bool(query.getall("dryRun", [])),
        )
        if query.get("orphanDependents") is not None and options.propagation_policy is None:
            options.propagation_policy = "Orphan" if _bool(query["orphanDependents"]) \
                else "Background"
        if request.body_exists:
            body = await self._body(request)
            if isinstance(body, dict):
                options.propagation_policy = body.get("propagationPolicy") or \
                    options.propagation_policy
                if body.get("orphanDependents") is not None and not options.propagation_policy:
                    options.propagation_policy = "Orphan" if body["orphanDependents"] \
                        else "Background"
                if body.get("gracePeriodSeconds") is not None:
                    options.grace_period_seconds = int(body["gracePeriodSeconds"])
                preconditions = body.get("preconditions") or {}
                options.precondition_uid = preconditions.get("uid")
                options.precondition_resource_version = preconditions.get("resourceVersion")
                if body.get("dryRun"):
                    options.dry_run = True
        if options.propagation_policy not in (None, "Foreground", "Background", "Orphan"):
            raise bad_request(f"propagationPolicy: Unsupported value: "
                              f'"{options.propagation_policy}": supported values: '
                              f'"Foreground", "Background", "Orphan"')
        return options

    def _selectors(self, request: web.Request,
                   resource: ResourceType) -> tuple[LabelSelector, FieldSelector]:
        query = request.rel_url.query
        return (parse_label_selector(query.get("labelSelector")),
                parse_field_selector(query.get("fieldSelector"), resource.kind))

    # ------------------------------------------------------------------------------------------
    # serving resources

    async def _serve(self, request: web.Request, target: ResourceRequest, verb: str,
                     decision: Decision) -> web.StreamResponse:
        resource = target.resource
        method = request.method
        sub = target.subresource
        if sub == "proxy":
            if resource.plural == "pods":
                return await self.forwarder.pod_proxy(request, target.namespace or "",
                                                      target.name or "", target.tail)
            if resource.plural == "services":
                return await self.forwarder.service_proxy(request, target.namespace or "",
                                                          target.name or "", target.tail)
            return await self.forwarder.node_proxy(request, target.name or "", target.tail)
        if sub == "log":
            if method != "GET":
                raise method_not_allowed()
            return await self.forwarder.pod_log(request, target.namespace or "",
                                                target.name or "")
        if resource.create_only:
            if verb != "create" or target.name is not None:
                raise method_not_allowed()
            answer = self.reviews.review(resource.kind, resource.api_version, user_of(request),
                                         target.namespace, await self._body(request))
            return json_response(answer, 201)
        if verb == "watch":
            return await self._watch(request, target, decision)
        if verb == "list":
            return self._list(request, target)
        if verb == "deletecollection":
            return await self._delete_collection(request, target)
        if verb == "create":
            return await self._create(request, target)
        name = target.name or ""
        if sub == "scale":
            return await self._scale(request, target, name)
        if verb == "get":
            obj = self.service.get(resource, target.namespace, name)
            if sub == "status" or not sub:
                return self._object_response(request, resource, obj)
        if verb == "update":
            body = await self._body(request)
            options = self._write_options(request)
            if sub == "finalize":
                obj = self.service.update(resource, target.namespace, name, body, options,
                                          "finalize")
            else:
                obj = self.service.update(resource, target.namespace, name, body, options, sub)
            return json_response(obj, warnings=options.warnings)
        if verb == "patch":
            options = self._write_options(request)
            content_type = content_type_of(request)
            if content_type not in PATCH_TYPES:
                raise unsupported_media_type(content_type, list(PATCH_TYPES))
            obj, code = self.service.patch(resource, target.namespace, name, content_type,
                                           await request.read(), options, sub)
            return json_response(obj, code, warnings=options.warnings)
        if verb == "delete" and not sub:
            deletion = await self._delete_options(request)
            answer, _ = self.service.delete(resource, target.namespace, name, deletion)
            return json_response(answer)
        raise method_not_allowed()

    async def _create(self, request: web.Request, target: ResourceRequest) -> web.Response:
        resource = target.resource
        body = await self._body(request)
        if target.subresource == "token" and resource.kind == "ServiceAccount":
            account = self.service.get(resource, target.namespace, target.name or "")
            answer = self.reviews.token_request(account, body, self.service.clock())
            return json_response(answer, 201)
        if target.subresource == "binding":
            answer = self.service.bind(resource, target.namespace or "", target.name or "",
                                       body)
            return json_response(answer, 201)
        if target.name is not None:
            raise method_not_allowed()
        if resource.namespaced and target.namespace is None:
            raise path_not_found(request.path)
        options = self._write_options(request)
        obj = self.service.create(resource, target.namespace, body, options)
        return json_response(obj, 201, warnings=options.warnings)

    async def _scale(self, request: web.Request, target: ResourceRequest,
                     name: str) -> web.Response:
        resource = target.resource
        if request.method == "GET":
            return json_response(self.service.get_scale(resource, target.namespace, name))
        options = self._write_options(request)
        if request.method == "PUT":
            body = await self._body(request)
            scale = self.service.update_scale(resource, target.namespace, name, body, options)
        elif request.method == "PATCH":
            scale = self.service.patch_scale(resource, target.namespace, name,
                                             content_type_of(request), await request.read(),
                                             options)
        else:
            raise method_not_allowed()
        return json_response(scale, warnings=options.warnings)

    async def _delete_collection(self, request: web.Request,
                                 target: ResourceRequest) -> web.Response:
        labels, fields = self._selectors(request, target.resource)
        options = await self._delete_options(request)
        self.service.delete_collection(target.resource, target.namespace, labels, fields,
                                       options)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success"})

    def _object_response(self, request: web.Request, resource: ResourceType,
                         obj: JsonObject) -> web.Response:
        representation = Representation.from_accept(request.headers.get("Accept", ""))
        if representation.kind == "table":
            include = request.rel_url.query.get("includeObject", "Metadata")
            body = table(resource, [obj], str(obj["metadata"].get("resourceVersion", "")),
                         include)
            body["apiVersion"] = f"meta.k8s.io/{representation.version}"
            return json_response(body, content_type=_table_content_type(representation))
        if representation.kind == "metadata":
            return json_response(_partial(obj, representation.version))
        return json_response(obj)

    def _list(self, request: web.Request, target: ResourceRequest) -> web.Response:
        resource = target.resource
        labels, fields = self._selectors(request, resource)
        query = request.rel_url.query
        limit = _int(query.get("limit"), "limit")
        result = self.service.list_objects(resource, target.namespace, labels, fields, limit,
                                   query.get("continue"))
        representation = Representation.from_accept(request.headers.get("Accept", ""))
        if representation.kind == "table":
            include = query.get("includeObject", "Metadata")
            body = table(resource, result.items, result.resource_version, include,
                         result.continue_token)
            body["apiVersion"] = f"meta.k8s.io/{representation.version}"
            return json_response(body, content_type=_table_content_type(representation))
        metadata: JsonObject = {"resourceVersion": result.resource_version}
        if result.continue_token:
            metadata["continue"] = result.continue_token
            metadata["remainingItemCount"] = result.remaining
        if representation.kind == "metadata":
            return json_response({
                "kind": "PartialObjectMetadataList",
                "apiVersion": f"meta.k8s.io/{representation.version}",
                "metadata": metadata,
                "items": [_partial(o, representation.version) for o in result.items],
            })
        items = b",".join(encode(item) for item in result.items)
        head = encode({"kind": resource.kind + "List", "apiVersion": resource.api_version,
                       "metadata": metadata})
        payload = head[:-1] + b',"items":[' + items + b"]}"
        return web.Response(body=payload, headers={"Content-Type": JSON})

    # ------------------------------------------------------------------------------------------
    # watch

    async def _watch(self, request: web.Request, target: ResourceRequest,
                     decision: Decision) -> web.StreamResponse:
        resource = target.resource
        labels, fields = self._selectors(request, resource)
        query = request.rel_url.query
        selected = matcher(labels, fields)
        timeout = _int(query.get("timeoutSeconds"), "timeoutSeconds")
        timeout = min(timeout if timeout and timeout > 0 else MAX_WATCH_SECONDS,
                      MAX_WATCH_SECONDS)
        bookmarks = _bool(query.get("allowWatchBookmarks"))
        representation = Representation.from_accept(request.headers.get("Accept", ""))
        include = query.get("includeObject", "Metadata")
        requested = query.get("resourceVersion") or ""
        scope = target.namespace if resource.namespaced else None
        initial: list[JsonObject] = []
        failure: ApiError | None = None
        watcher: Watcher | None = None
        backlog: list[WatchEvent] = []
        # a "watch list" (sendInitialEvents=true) streams the current state, then a bookmark
        send_initial = _bool(query.get("sendInitialEvents"))
        if send_initial or requested in ("", "0"):
            initial = self.storage.list_objects(resource.storage_key, scope)
            watcher, _ = self.storage.subscribe(resource.storage_key, scope, None)
        else:
            since = _int(requested, "resourceVersion") or 0
            try:
                watcher, backlog = self.storage.subscribe(resource.storage_key, scope, since)
            except ApiError as error:
                failure = error
        content_type = _table_content_type(representation) \
            if representation.kind == "table" else JSON
        response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sender = _EventSender(response, resource, representation, include,
                              decision.cut_watch_after)
        try:
            if failure is not None:
                await sender.send_raw("ERROR", failure.status())
                return response
            assert watcher is not None
            for obj in initial:
                shown = resource.present(obj)
                if selected(shown):
                    await sender.send("ADDED", shown)
            if send_initial and bookmarks:
                await sender.bookmark(self.storage.resource_version, initial_events_end=True)
            for event in backlog:
                await self._send_event(sender, resource, event, selected)
            await self._stream(request, sender, resource, watcher, selected, timeout,
                               bookmarks)
        except (ConnectionResetError, _WatchCut):
            transport = request.transport
            if transport is not None and sender.cut:
                transport.abort()
        finally:
            if watcher is not None:
                self.storage.unsubscribe(watcher)
        return response

    async def _send_event(self, sender: _EventSender, resource: ResourceType,
                          event: WatchEvent, selected: Callable[[JsonObject], bool]) -> None:
        sent = _sent_type(resource, event, selected)
        if sent is not None:
            await sender.send(sent, resource.present(event.obj), event)

    async def _stream(self, request: web.Request, sender: _EventSender,
                      resource: ResourceType, watcher: Watcher,
                      selected: Callable[[JsonObject], bool], timeout: float,
                      bookmarks: bool) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + self.bookmark_interval
        while not self._stopping.is_set():
            now = loop.time()
            if now >= deadline or (watcher.overflowed and watcher.queue.empty()):
                return
            # a quiet watch checks now and then that its client is still there, so a client
            # that left does not keep its watcher (and queue) until the next event
            wait = min(deadline - now, CLIENT_CHECK_SECONDS)
            if bookmarks:
                wait = min(wait, max(next_bookmark - now, 0.0))
            if watcher.queue.empty():
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout=wait)
                except TimeoutError:
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        return
                    if bookmarks and loop.time() >= next_bookmark:
                        await sender.bookmark(self.storage.resource_version)
                        next_bookmark = loop.time() + self.bookmark_interval
                    continue
            else:
                event = watcher.queue.get_nowait()
            # everything queued goes out in one write: a burst of changes costs one send
            batch = [event]
            while not watcher.queue.empty() and batch[-1] is not None:
                batch.append(watcher.queue.get_nowait())
            ended = batch[-1] is None
            await sender.send_batch([
                (sent, resource.present(e.obj), e) for e in batch if e is not None
                if (sent := _sent_type(resource, e, selected)) is not None])
            if ended:
                return


def _sent_type(resource: ResourceType, event: WatchEvent,
               selected: Callable[[JsonObject], bool]) -> str | None:
    """What a filtered watch sees of a change: the event type to send, or None. An object that
    starts matching arrives as ADDED, one that stops matching as DELETED."""
    now_matches = selected(resource.present(event.obj))
    previous = resource.present(event.previous) if event.previous is not None else None
    if event.type == "ADDED":
        return "ADDED" if now_matches else None
    if event.type == "DELETED":
        return "DELETED" if previous is None or selected(previous) else None
    before = previous is not None and selected(previous)
    if before and now_matches:
        return "MODIFIED"
    if now_matches:
        return "ADDED"
    return "DELETED" if before else None


class _WatchCut(Exception):
    """A watch-cut fault fired: the stream is dropped mid-way."""


def _table_content_type(representation: Representation) -> str:
    return f"application/json;as=Table;v={representation.version};g=meta.k8s.io"


def _partial(obj: JsonObject, version: str) -> JsonObject:
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}",
            "metadata": obj.get("metadata") or {}}


class _EventSender:
    """Writes watch events in the client's representation, counting them for watch cuts."""

    def __init__(self, response: web.StreamResponse, resource: ResourceType,
                 representation: Representation, include: str, cut_after: int | None) -> None:
        self.response = response
        self.resource = resource
        self.representation = representation
        self.include = include
        self.cut_after = cut_after
        self.sent = 0
        self.cut = False

    async def send_raw(self, event_type: str, obj: JsonObject) -> None:
        await self.response.write(encode({"type": event_type, "object": obj}) + b"\n")

    async def send(self, event_type: str, obj: JsonObject, event: WatchEvent | None = None
                   ) -> None:
        await self.send_batch([(event_type, obj, event)])

    async def send_batch(self, events: list[tuple[str, JsonObject, WatchEvent | None]]) -> None:
        """Write events in one chunk; a plain-JSON event is encoded once for every watcher."""
        chunks: list[bytes] = []
        for event_type, obj, event in events:
            if self.cut_after is not None and self.sent >= self.cut_after:
                self.cut = True
                if chunks:
                    await self.response.write(b"".join(chunks))
                raise _WatchCut()
            chunks.append(self._line(event_type, obj, event))
            self.sent += 1
        if chunks:
            await self.response.write(b"".join(chunks))

    def _line(self, event_type: str, obj: JsonObject, event: WatchEvent | None) -> bytes:
        if self.representation.kind == "table":
            shown = table(self.resource, [obj], str(obj["metadata"].get("resourceVersion", "")),
                          self.include, with_columns=self.sent == 0)
            shown["apiVersion"] = f"meta.k8s.io/{self.representation.version}"
            return encode({"type": event_type, "object": shown}) + b"\n"
        if self.representation.kind == "metadata":
            shown = _partial(obj, self.representation.version)
            return encode({"type": event_type, "object": shown}) + b"\n"
        if event is None:
            return encode({"type": event_type, "object": obj}) + b"\n"
        key = (event_type, str(obj.get("apiVersion", "")))
        line = event.encoded.get(key)
        if line is None:
            line = event.encoded[key] = encode({"type": event_type, "object": obj}) + b"\n"
        return line

    async def bookmark(self, resource_version: int, initial_events_end: bool = False) -> None:
        metadata: JsonObject = {"resourceVersion": str(resource_version)}
        if initial_events_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        await self.send_raw("BOOKMARK", {
            "kind": self.resource.kind, "apiVersion": self.resource.api_version,
            "metadata": metadata,
        })

