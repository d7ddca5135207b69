"""`ApiServer`: the whole API server in one object, for the CLI and for in-process use.

    server = ApiServer(ApiServerConfig(port=0, data_dir=tmp))
    await server.start()          # serving on server.url; kubeconfig at server.kubeconfig_path
    ...
    await server.stop()           # state file written when configured
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from clustersim.apiserver import kubeconfig, persistence, quantities, rbac_defaults
from clustersim.apiserver.access_reviews import AccessReviews
from clustersim.apiserver.admin import PREFIX, AdminApi
from clustersim.apiserver.auth import TokenAuthenticator, load_or_create_identities
from clustersim.apiserver.errors import ApiError, unauthorized
from clustersim.apiserver.faults import FaultInjector
from clustersim.apiserver.http_api import (
    ANONYMOUS_PATHS,
    USER_KEY,
    ApiHandler,
    add_request_warnings,
    error_response,
)
from clustersim.apiserver.ipam import ServiceAddresses
from clustersim.apiserver.lifecycle import ControlLoops
from clustersim.apiserver.objects import ObjectService, WriteOptions
from clustersim.apiserver.proxy import Forwarder
from clustersim.apiserver.rbac import Attributes, RbacAuthorizer, forbidden
from clustersim.apiserver.registry import TypeRegistry
from clustersim.apiserver.sa_tokens import ServiceAccountTokens, load_or_create_key
from clustersim.apiserver.storage import Storage
from clustersim.apiserver.tls import ensure_certificates
from clustersim.listeners import listen_on

LOG = logging.getLogger(__name__)

KUBERNETES_VERSION = {"major": "1", "minor": "35", "gitVersion": "v1.35.0+clustersim"}
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MAX_REQUEST_BYTES = 64 * 1024 * 1024
SHUTDOWN_SECONDS = 3.0


@dataclass
class ApiServerConfig:
    """How to run the server; `data_dir` holds the token file, certificates and kubeconfig."""

    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path | None = None
    token_file: Path | None = None
    kubeconfig_path: Path | None = None
    state_file: Path | None = None
    insecure_http: bool = False
    watch_history: int = 5000
    bookmark_interval_seconds: float = 5.0
    access_log: bool = False
    fault_seed: int | None = None
    # where Service IP block claims are kept (default: $TMPDIR/clustersim-ipam, shared by every
    # clustersim server and agent on the machine)
    ip_lock_dir: Path | None = None
    # CA that signs the kubelets' serving certificates (kube-apiserver's
    # --kubelet-certificate-authority). None: kubelet certificates are not verified, as
    # kube-apiserver does without that flag. `kubelet_ca_from_own_pki` names this server's own
    # CA instead (`clustersim up`, where that CA signs the kubelets' certificates).
    kubelet_certificate_authority: Path | None = None
    kubelet_ca_from_own_pki: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def version_info() -> dict[str, str]:
    return {
        **KUBERNETES_VERSION,
        "emulationMajor": "1", "emulationMinor": "35",
        "minCompatibilityMajor": "1", "minCompatibilityMinor": "34",
        "gitCommit": "0" * 40, "gitTreeState": "clean",
        "buildDate": "2025-12-17T00:00:00Z", "goVersion": "go1.25.5", "compiler": "gc",
        "platform": "linux/amd64",
    }


class ApiServer:
    """A Kubernetes API server on 127.0.0.1 (HTTPS with a self-signed CA by default)."""

    def __init__(self, config: ApiServerConfig | None = None) -> None:
        self.config = config or ApiServerConfig()
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if self.config.data_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="clustersim-")
            self.data_dir = Path(self._temporary.name)
        else:
            self.data_dir = Path(self.config.data_dir)
        self.storage = Storage(self.config.watch_history)
        self.types = TypeRegistry()
        self.service = ObjectService(self.storage, self.types,
                                     ServiceAddresses(self.config.ip_lock_dir))
        self.faults = FaultInjector(self.config.fault_seed)
        # API requests by client (the first word of the User-Agent: Helm, kubectl, the official
        # Python client...), for benchmarks that count what a rollout costs the API server.
        self.requests_by_agent: Counter[str] = Counter()
        self.forwarder = Forwarder(self.service)
        self.port = 0
        self.token = ""
        self.ca_path: Path | None = None
        self._loops: ControlLoops | None = None
        self._handler: ApiHandler | None = None
        self._runner: web.AppRunner | None = None
        self._authenticator: TokenAuthenticator | None = None
        self.authorizer = RbacAuthorizer(self.storage)

    # -- properties of the running server ---------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "http" if self.config.insecure_http else "https"
        return f"{scheme}://{self.config.host}:{self.port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.config.kubeconfig_path or self.data_dir / "kubeconfig"

    @property
    def token_file(self) -> Path:
        return self.config.token_file or self.data_dir / "token"

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        # first, so a busy fixed port fails before anything else is set up
        sock = listen_on(self.config.host, self.config.port, "API server (--port)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identities = load_or_create_identities(self.token_file)
        self.token = identities[0][0]
        service_account_tokens = ServiceAccountTokens(
            load_or_create_key(self.data_dir / "pki" / "sa.key"))
        self._authenticator = TokenAuthenticator(identities, service_account_tokens,
                                                 self._service_account_uid)
        self.authorizer = RbacAuthorizer(self.storage)
        reviews = AccessReviews(self.authorizer, self._authenticator, service_account_tokens)
        context: ssl.SSLContext | None = None
        if not self.config.insecure_http:
            certificates = ensure_certificates(self.data_dir / "pki")
            self.ca_path = certificates.ca_path
            context = certificates.server_context()
        kubelet_ca = self.config.kubelet_certificate_authority or (
            self.ca_path if self.config.kubelet_ca_from_own_pki else None)
        self.forwarder.verify_kubelets_with(kubelet_ca)
        loops = ControlLoops(self.service)
        self._loops = loops
        if self.config.state_file is not None and Path(self.config.state_file).exists():
            self._load_state(Path(self.config.state_file))
        self._handler = ApiHandler(self.service, self.faults, self.forwarder, version_info(),
                                   lambda: f"{self.config.host}:{self.port}",
                                   reviews, self.config.bookmark_interval_seconds)
        app = web.Application(client_max_size=MAX_REQUEST_BYTES,
                              middlewares=[self._authenticate])
        admin = AdminApi(self.faults, self.storage, self.requests_by_agent)
        app.router.add_route("*", PREFIX + "{tail:.*}", admin.handle)
        app.router.add_route("*", "/{tail:.*}", self._handler.handle)
        app.on_response_prepare.append(add_request_warnings)
        # open log follows and proxies must not hold a shutdown for long
        runner = web.AppRunner(app, access_log=LOG if self.config.access_log else None,
                               handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS)
        await runner.setup()
        self._runner = runner
        self.port = sock.getsockname()[1]
        site = web.SockSite(runner, sock, ssl_context=context, backlog=512)
        await site.start()
        self._bootstrap()
        loops.run_pending()
        loops.start()
        ca_pem = self.ca_path.read_bytes() if self.ca_path else None
        kubeconfig.write(self.kubeconfig_path, self.url, self.token, ca_pem)
        LOG.info("clustersim API server serving on %s", self.url)

    async def stop(self) -> None:
        if self._handler is not None:
            self._handler.stop_watches()
        if self._loops is not None:
            await self._loops.stop()
        await self.forwarder.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.config.state_file is not None:
            persistence.save(self.storage, Path(self.config.state_file))
        self.service.addresses.close()
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until the in-process controllers have handled every change so far."""
        if self._loops is not None:
            await self._loops.settle(timeout)
            await asyncio.sleep(0)

    # -- internals --------------------------------------------------------------------------

    @web.middleware
    async def _authenticate(self, request: web.Request,
                            handler: Any) -> web.StreamResponse:
        if request.path not in ANONYMOUS_PATHS and not request.path.startswith(
                ("/healthz", "/livez", "/readyz")):
            assert self._authenticator is not None
            user = self._authenticator.authenticate(request.headers.get("Authorization"))
            if user is None:
                return error_response(unauthorized())
            request[USER_KEY] = user
            if request.path.startswith(PREFIX):
                # the admin endpoint is a non-resource path: cluster-admin only by default
                attributes = Attributes(user, request.method.lower(), resource_request=False,
                                        path=request.path)
                if not self.authorizer.allows(attributes):
                    return error_response(forbidden(attributes))
        if not request.path.startswith(PREFIX):
            agent = request.headers.get("User-Agent", "unknown").split("/", 1)[0].split(" ", 1)[0]
            self.requests_by_agent[agent or "unknown"] += 1
        response: web.StreamResponse = await handler(request)
        return response

    def _service_account_uid(self, namespace: str, name: str) -> str | None:
        """The uid of a ServiceAccount, for checking that a token's account still exists."""
        found = self.storage.get(("", "serviceaccounts"), namespace, name)
        return None if found is None else str((found.get("metadata") or {}).get("uid"))

    def _load_state(self, path: Path) -> None:
        resource_version, resources = persistence.load(path)
        for key, objects in resources:
            stored_type = self.types.by_storage_key(key)
            for obj in objects:
                if stored_type is not None and not stored_type.is_custom:
                    # state files written before quantities were normalised may hold numbers
                    with contextlib.suppress(ApiError):
                        quantities.normalize(stored_type.kind, stored_type.version, obj)
                self.storage.restore(key, obj)
                if key == persistence.CRD_KEY:
                    from clustersim.apiserver import crds
                    self.types.set_custom(obj["metadata"]["name"], crds.served_types(obj))
        self.storage.resource_version = max(resource_version, self.storage.resource_version)
        for service in self.storage.list_objects(("", "services")):
            spec = service.get("spec") or {}
            if spec.get("clusterIP") and spec["clusterIP"] != "None":
                self.service.addresses.reserve_ip(spec["clusterIP"])
            for port in spec.get("ports") or []:
                if port.get("nodePort"):
                    self.service.addresses.reserve_port(int(port["nodePort"]))

    def _bootstrap(self) -> None:
        """The objects every cluster starts with: system namespaces and the `kubernetes`
        Service with its endpoints pointing at this server."""
        options = WriteOptions(field_manager="kube-apiserver")
        self._bootstrap_rbac(options)
        namespaces = self.types.lookup("", "v1", "namespaces")
        services = self.types.lookup("", "v1", "services")
        endpoints = self.types.lookup("", "v1", "endpoints")
        assert namespaces is not None and services is not None and endpoints is not None
        for name in SYSTEM_NAMESPACES:
            if self.storage.get(namespaces.storage_key, "", name) is None:
                self.service.create(namespaces, None, {"metadata": {"name": name}}, options)
            elif self._loops is not None:
                self._loops.ensure_default_service_account(name)
        if self.storage.get(services.storage_key, "default", "kubernetes") is None:
            cluster_ip = self.service.addresses.kubernetes_service_ip()
            if cluster_ip is None:
                raise RuntimeError("every /24 block of 127.200.0.0/16 is claimed by a running "
                                   "clustersim API server: no cluster IP for the kubernetes "
                                   "Service")
            self.service.create(services, "default", {
                "metadata": {"name": "kubernetes", "labels": {
                    "component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": cluster_ip, "ports": [
                    {"name": "https", "port": 443, "protocol": "TCP",
                     "targetPort": self.port}]},
            }, options)
        body = {
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": self.config.host}],
                         "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}]}],
        }
        current = self.storage.get(endpoints.storage_key, "default", "kubernetes")
        if current is None:
            self.service.create(endpoints, "default", body, options)
        else:
            updated = dict(current)
            updated["subsets"] = body["subsets"]
            self.service.write_internal(endpoints, current, updated, "kube-apiserver")

    def _bootstrap_rbac(self, options: WriteOptions) -> None:
        """The default ClusterRoles and bindings, created when absent (an edited one stays)."""
        roles = self.types.lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
        bindings = self.types.lookup("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
        assert roles is not None and bindings is not None
        for resource, objects in ((roles, rbac_defaults.cluster_roles()),
                                  (bindings, rbac_defaults.cluster_role_bindings())):
            for obj in objects:
                if self.storage.get(resource.storage_key, "", obj["metadata"]["name"]) is None:
                    self.service.create(resource, None, obj, options)
