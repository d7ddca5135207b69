"""Choosing what a container runs from its command, args, name and pod labels."""

from __future__ import annotations

from clustersim.agent.workloads.gateway_proxy import GatewayProxyProcess, is_gateway_proxy
from clustersim.agent.workloads.generic import GenericProcess, InitProcess, epp_ports
from clustersim.agent.workloads.process import Process, ProcessContext
from clustersim.agent.workloads.sidecar import RoutingSidecarProcess, sidecar_ports
from clustersim.agent.workloads.vllm import VllmProcess, parse_vllm_command


def process_for(ctx: ProcessContext) -> Process:
    """vLLM (`vllm serve`), the routing sidecar (`--vllm-port`), the EPP (`--grpcPort`), the
    Istio gateway proxy, a run-to-completion init container, or a generic server."""
    container = ctx.container
    if ctx.is_init and not ctx.is_sidecar:
        return InitProcess(ctx)
    command = parse_vllm_command(container, ctx.env)
    if command is not None:
        return VllmProcess(ctx, command)
    ports = sidecar_ports(container)
    if ports is not None:
        return RoutingSidecarProcess(ctx, *ports)
    if ctx.gateway is not None and is_gateway_proxy(ctx.pod, container):
        return GatewayProxyProcess(ctx, ctx.gateway)
    return GenericProcess(ctx, epp_ports(container))
