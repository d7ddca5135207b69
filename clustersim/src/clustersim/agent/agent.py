"""The cluster agent: wires the informers, controllers, kubelets and servers together.

`ClusterAgent(AgentConfig(...))` with `await start()` / `await stop()`; `python -m clustersim
agent` and `python -m clustersim up` run it. Everything it knows about the cluster comes from the
API server named by the kubeconfig.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from clustersim.agent.admin import AdminServer
from clustersim.agent.context import AgentContext, Informers
from clustersim.agent.controllers.deployment import DeploymentController
from clustersim.agent.controllers.endpoints import EndpointsController
from clustersim.agent.controllers.gateway import GatewayController
from clustersim.agent.controllers.kubeproxy import ServiceProxy
from clustersim.agent.controllers.lws import LeaderWorkerSetController
from clustersim.agent.controllers.replicaset import ReplicaSetController
from clustersim.agent.controllers.statefulset import StatefulSetController
from clustersim.agent.dataplane import GatewayDataPlane
from clustersim.agent.events import EventRecorder
from clustersim.agent.faults import FaultError, FaultSet, parse_fault, parse_fault_document
from clustersim.agent.ipam import PodIpAllocator
from clustersim.agent.kubeclient import ApiError, KubeClient
from clustersim.agent.kubeconfig import load_kubeconfig
from clustersim.agent.kubelet.kubelet import Kubelet, SimNode
from clustersim.agent.kubelet.server import KubeletServer
from clustersim.agent.lws_pod_webhook import PodWebhookServer
from clustersim.agent.nodes import NodeManager, node_ip
from clustersim.agent.profile import TimeScale, load_profile
from clustersim.agent.scheduler import Scheduler
from clustersim.agent.workloads.process import ServingRegistry
from clustersim.agent.workqueue import Controller
from clustersim.pki import CertificateAuthority, load_ca, load_or_create_ca

log = logging.getLogger("clustersim.agent")

CONTROLLERS = (
    "scheduler",
    "kubelet",
    "deployment",
    "replicaset",
    "statefulset",
    "leaderworkerset",
    "endpoints",
    "gateway",
    "kube-proxy",
)


class AgentError(RuntimeError):
    """The agent cannot start; the message says what to fix."""


@dataclass
class AgentConfig:
    kubeconfig: pathlib.Path
    profile: str = "h200-2node"
    time_scale: float = 1.0
    faults_file: pathlib.Path | None = None
    admin_host: str = "127.0.0.1"
    admin_port: int = 0
    controllers: tuple[str, ...] = CONTROLLERS
    context: str | None = None
    # The CA that signs each kubelet's serving certificate (PEM files). Absent: the agent makes
    # one of its own; `describe()` names its certificate so an API server can be told about it.
    kubelet_ca_cert: pathlib.Path | None = None
    kubelet_ca_key: pathlib.Path | None = None


class ClusterAgent:
    def __init__(self, config: AgentConfig) -> None:
        if config.time_scale <= 0:
            raise AgentError("--time-scale must be a positive number (1.0 is real time)")
        unknown = sorted(set(config.controllers) - set(CONTROLLERS))
        if unknown:
            raise AgentError(f"unknown controllers {unknown}; choose from {', '.join(CONTROLLERS)}")
        self.config = config
        self.profile = load_profile(config.profile)
        self.scale = TimeScale(config.time_scale)
        self.faults = FaultSet(self.scale)
        self._initial_faults: list[dict[str, Any]] = []
        if config.faults_file is not None:
            try:
                text = config.faults_file.read_text()
            except OSError as error:
                raise AgentError(
                    f"cannot read fault profile {config.faults_file}: {error}"
                ) from error
            try:
                self._initial_faults = parse_fault_document(text)
                for index, spec in enumerate(self._initial_faults):
                    parse_fault(spec, f"check{index}")
            except FaultError as error:
                raise AgentError(f"fault profile {config.faults_file}: {error}") from error
        self.admin = AdminServer(self)
        self._tasks: list[asyncio.Task[None]] = []
        self._client: KubeClient | None = None
        self._http: aiohttp.ClientSession | None = None
        self._kubelet: Kubelet | None = None
        self._kubelet_server: KubeletServer | None = None
        self._nodes: NodeManager | None = None
        self._proxy: ServiceProxy | None = None
        self._pod_webhook: PodWebhookServer | None = None
        self.ctx: AgentContext | None = None
        self._pki_dir = tempfile.TemporaryDirectory(prefix="clustersim-kubelet-pki-")
        self.kubelet_ca = self._kubelet_ca()

    def _kubelet_ca(self) -> CertificateAuthority:
        cert, key = self.config.kubelet_ca_cert, self.config.kubelet_ca_key
        if (cert is None) != (key is None):
            raise AgentError("--kubelet-ca-cert and --kubelet-ca-key go together")
        if cert is None or key is None:
            return load_or_create_ca(pathlib.Path(self._pki_dir.name), "clustersim-kubelet-ca")
        try:
            return load_ca(cert, key)
        except (OSError, ValueError) as error:
            raise AgentError(f"cannot load the kubelet CA {cert} / {key}: {error}") from error

    @property
    def admin_url(self) -> str:
        return self.admin.url

    def describe(self) -> dict[str, Any]:
        nodes = []
        if self._kubelet is not None:
            for node in self._kubelet.nodes.values():
                nodes.append(
                    {
                        "name": node.name,
                        "internalIP": node.ip,
                        "kubeletPort": node.kubelet_port,
                        "down": node.down,
                    }
                )
        return {
            "profile": self.profile.name,
            "timeScale": self.scale.factor,
            "apiServer": self._client.credentials.server if self._client else None,
            "controllers": list(self.config.controllers),
            "nodes": nodes,
            "adminURL": self.admin.url,
            "kubeletCA": str(self.kubelet_ca.cert_path),
            "lwsPodWebhook": {
                "url": self._pod_webhook.url if self._pod_webhook else None,
                "registered": bool(self._pod_webhook and self._pod_webhook.registered),
            },
            "serviceListeners": self._proxy.listening() if self._proxy else [],
            "serviceConflicts": dict(self._proxy.conflicts) if self._proxy else {},
        }

    async def _wait_for_api(self, client: KubeClient, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await client.request("GET", "/version", timeout=5)
                return
            except ApiError as error:
                if error.status in (401, 403):
                    raise AgentError(
                        f"the API server at {client.credentials.server} refused the kubeconfig's "
                        f"credentials ({error}); check the token in {self.config.kubeconfig}"
                    ) from error
                problem: Exception = error
            except (TimeoutError, aiohttp.ClientError) as error:
                problem = error
            if loop.time() >= deadline:
                raise AgentError(
                    f"cannot reach the API server at {client.credentials.server} "
                    f"(from {self.config.kubeconfig}): {problem}"
                )
            await asyncio.sleep(0.2)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coroutine, name=name))

    async def start(self) -> None:
        self.admin.reserve(self.config.admin_host, self.config.admin_port)
        credentials = load_kubeconfig(self.config.kubeconfig, self.config.context)
        client = KubeClient(credentials)
        self._client = client
        await self._wait_for_api(client)
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True), auto_decompress=False
        )
        informers = Informers(client)
        recorder = EventRecorder(client)
        ctx = AgentContext(
            client=client,
            profile=self.profile,
            scale=self.scale,
            faults=self.faults,
            recorder=recorder,
            ipam=PodIpAllocator(),
            registry=ServingRegistry(),
            http=self._http,
            informers=informers,
        )
        self.ctx = ctx
        informers.crds.add_handler(
            lambda kind, crd, _: informers.crd_changed(crd, kind == "DELETED")
        )
        enabled = set(self.config.controllers)
        controllers: list[tuple[Controller, int]] = []
        if "scheduler" in enabled:
            controllers.append((Scheduler(ctx), 1))
        if "deployment" in enabled:
            controllers.append((DeploymentController(ctx), 1))
        if "replicaset" in enabled:
            controllers.append((ReplicaSetController(ctx), 2))
        if "statefulset" in enabled:
            controllers.append((StatefulSetController(ctx), 2))
        if "leaderworkerset" in enabled:
            controllers.append((LeaderWorkerSetController(ctx), 1))
        if "endpoints" in enabled:
            controllers.append((EndpointsController(ctx), 2))
        gateways = GatewayController(ctx)
        if "gateway" in enabled:
            controllers.append((gateways, 1))
            ctx.gateway = GatewayDataPlane(ctx, gateways)
        if "kube-proxy" in enabled:
            self._proxy = ServiceProxy(ctx)
            controllers.append((self._proxy, 1))
        nodes = [SimNode(spec, node_ip(i + 1)) for i, spec in enumerate(self.profile.nodes)]
        if "kubelet" in enabled:
            self._kubelet = Kubelet(ctx, nodes)
            informers.pods.add_handler(self._kubelet.on_pod)
            self._kubelet_server = KubeletServer(
                self._kubelet, self.kubelet_ca, pathlib.Path(self._pki_dir.name)
            )
            await self._kubelet_server.start(nodes)
            self._nodes = NodeManager(ctx, self._kubelet)
        self._spawn(recorder.run(), "events")
        for informer in informers.all():
            self._spawn(informer.run(), f"informer {informer.resource.plural}")
        if self._nodes is not None and self._kubelet is not None:
            await self._nodes.register()
            self._spawn(self._nodes.run(), "node-manager")
            self._spawn(self._nodes.run_heartbeats(), "node-leases")
            self._spawn(self._kubelet.run_status_manager(), "kubelet-status")
        await self._wait_synced(informers)
        if "leaderworkerset" in enabled:
            self._pod_webhook = PodWebhookServer(self.kubelet_ca, pathlib.Path(self._pki_dir.name))
            await self._pod_webhook.start()
            await self._pod_webhook.register(client)
        for controller, workers in controllers:
            self._spawn(controller.run(workers), controller.name)
        await self.admin.start(self.config.admin_host, self.config.admin_port)
        for spec in self._initial_faults:
            self.faults.add(spec)
        log.info(
            "cluster agent up: profile %s, time scale %s, admin %s",
            self.profile.name,
            self.scale.factor,
            self.admin.url,
        )

    async def _wait_synced(self, informers: Informers, timeout: float = 30.0) -> None:
        core = [i for i in informers.all() if i.gate is None]
        try:
            await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in core)), timeout)
        except TimeoutError as error:
            missing = [i.resource.plural for i in core if not i.synced.is_set()]
            raise AgentError(f"could not list {', '.join(missing)} from the API server") from error

    async def stop(self) -> None:
        await self.admin.stop()
        if self._pod_webhook is not None:
            await self._pod_webhook.stop(self._client)
        if self.ctx is not None:
            with contextlib.suppress(Exception):
                await self.ctx.recorder.flush(timeout=2.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._nodes is not None:
            await self._nodes.shutdown()
        if self._kubelet is not None:
            await self._kubelet.shutdown()
        if self._proxy is not None:
            await self._proxy.shutdown()
        if self._kubelet_server is not None:
            await self._kubelet_server.stop()
        if self.ctx is not None:
            self.ctx.ipam.close()
        if self._http is not None:
            await self._http.close()
        if self._client is not None:
            await self._client.close()
        self._pki_dir.cleanup()
