"""What every agent component shares: the API client, caches, profile, time scale and faults."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp

from clustersim.agent.events import EventRecorder
from clustersim.agent.faults import FaultSet
from clustersim.agent.informer import Informer
from clustersim.agent.ipam import PodIpAllocator
from clustersim.agent.kubeclient import (
    CONTROLLERREVISIONS,
    CRDS,
    DEPLOYMENTS,
    ENDPOINTS,
    ENDPOINTSLICES,
    GATEWAYCLASSES,
    GATEWAYS,
    HTTPROUTES,
    INFERENCEMODELS,
    INFERENCEPOOLS,
    LEADERWORKERSETS,
    NODES,
    PODS,
    REPLICASETS,
    SERVICES,
    STATEFULSETS,
    KubeClient,
    Resource,
)
from clustersim.agent.profile import ClusterProfile, TimeScale
from clustersim.agent.workloads.process import GatewayHandler, ServingRegistry

CRD_BACKED = (
    LEADERWORKERSETS,
    GATEWAYCLASSES,
    GATEWAYS,
    HTTPROUTES,
    INFERENCEPOOLS,
    INFERENCEMODELS,
)


@dataclass
class Informers:
    """One cache per resource the agent reads; CRD-backed ones wait for their CRD."""

    client: KubeClient
    gates: dict[Resource, asyncio.Event] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for resource in CRD_BACKED:
            self.gates[resource] = asyncio.Event()
        make = self._make
        self.crds = make(CRDS)
        self.nodes = make(NODES)
        self.pods = make(PODS)
        self.services = make(SERVICES)
        self.endpoints = make(ENDPOINTS)
        self.endpointslices = make(ENDPOINTSLICES)
        self.deployments = make(DEPLOYMENTS)
        self.replicasets = make(REPLICASETS)
        self.statefulsets = make(STATEFULSETS)
        self.revisions = make(CONTROLLERREVISIONS)
        self.lws = make(LEADERWORKERSETS)
        self.gatewayclasses = make(GATEWAYCLASSES)
        self.gateways = make(GATEWAYS)
        self.httproutes = make(HTTPROUTES)
        self.pools = make(INFERENCEPOOLS)
        self.models = make(INFERENCEMODELS)

    def _make(self, resource: Resource) -> Informer:
        return Informer(self.client, resource, self.gates.get(resource))

    def all(self) -> list[Informer]:
        return [
            self.crds,
            self.nodes,
            self.pods,
            self.services,
            self.endpoints,
            self.endpointslices,
            self.deployments,
            self.replicasets,
            self.statefulsets,
            self.revisions,
            self.lws,
            self.gatewayclasses,
            self.gateways,
            self.httproutes,
            self.pools,
            self.models,
        ]

    def crd_changed(self, crd: dict[str, object], deleted: bool) -> None:
        """Open or close the gates of the resources a CRD serves."""
        spec = crd.get("spec") or {}
        assert isinstance(spec, dict)
        group = spec.get("group")
        plural = (spec.get("names") or {}).get("plural")
        served = {v.get("name") for v in spec.get("versions") or [] if v.get("served")}
        status = crd.get("status") or {}
        assert isinstance(status, dict)
        established = any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        for resource, gate in self.gates.items():
            if resource.group == group and resource.plural == plural:
                if not deleted and established and resource.version in served:
                    gate.set()
                else:
                    gate.clear()


@dataclass
class AgentContext:
    client: KubeClient
    profile: ClusterProfile
    scale: TimeScale
    faults: FaultSet
    recorder: EventRecorder
    ipam: PodIpAllocator
    registry: ServingRegistry
    http: aiohttp.ClientSession
    informers: Informers
    gateway: GatewayHandler | None = None
