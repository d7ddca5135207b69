"""Checks of a typed rollout spec that span several fields.

`check_spec` returns every problem at once, each with the YAML path a person edits to fix it, e.g.
`modelService.decode.gpusPerPod: must equal dataParallelLocal x tensorParallel (8 != 4 x 1)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from spec.analysis import analysis_problems
from spec.rollout import (
    ROLES,
    ChartRef,
    CrdBundle,
    HelmRelease,
    Role,
    RoleStrategy,
    RolloutSpec,
)
from spec.types import chart_name_problem, dns1123_subdomain

# Set by the renderer or injected by the LeaderWorkerSet webhook: a spec may not override them.
RESERVED_ENV = frozenset(
    {"DP_SIZE", "TP_SIZE", "LWS_LEADER_ADDRESS", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX"}
)
_PERCENT = re.compile(r"^\d+%$")
# oci://registry[:port]/path/.../chart: a lower-case repository path whose last part is the chart.
_OCI_REFERENCE = re.compile(r"^oci://[A-Za-z0-9.-]+(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$")
# The llm-d-infra key naming the GatewayClass of the inference Gateway.
INFRA_GATEWAY_CLASS_KEY = ("gateway", "gatewayClassName")
# That key as a spec path, in problems and in the Gateway wait's failure for a missing class.
INFRA_GATEWAY_CLASS_FIELD = "infra.values." + ".".join(INFRA_GATEWAY_CLASS_KEY)


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def max_lws_name_length(replicas: int) -> int:
    """The LeaderWorkerSet name limit (LWS troubleshooting guide: about 51 - replicas/10).

    Worker StatefulSets are named `<lws>-<group>` and their pods carry a
    `controller-revision-hash` label `<statefulset>-<hash>` that must fit in 63 characters, so
    every extra digit of the highest group index costs one character.
    """
    return 52 - len(str(replicas))


def check_spec(spec: RolloutSpec, base_dir: Path | None = None) -> list[Problem]:
    problems: list[Problem] = []
    problems += _check_target(spec)
    problems += _check_dependencies(spec, base_dir)
    problems += _check_gateway_provider(spec, base_dir)
    problems += _check_release("infra", spec.infra, base_dir)
    problems += _check_infra_gateway_class(spec)
    problems += _check_model_service(spec)
    problems += _check_strategy(spec)
    problems += _check_verification(spec)
    return problems


def _check_target(spec: RolloutSpec) -> list[Problem]:
    target = spec.target
    if target.in_cluster and (target.kubeconfig or target.context):
        return [Problem("target.inCluster", "cannot be combined with kubeconfig or context")]
    return []


def _check_dependencies(spec: RolloutSpec, base_dir: Path | None) -> list[Problem]:
    deps = spec.dependencies
    problems = _check_crds("dependencies.gatewayApiCrds", deps.gateway_api_crds, base_dir)
    problems += _check_crds(
        "dependencies.inferenceExtensionCrds", deps.inference_extension_crds, base_dir
    )
    lws = deps.leader_worker_set
    path = "dependencies.leaderWorkerSet"
    if lws.already_installed and lws.release is not None:
        problems.append(Problem(path, "set either alreadyInstalled: true or release, not both"))
    elif not lws.already_installed and lws.release is None:
        problems.append(Problem(path, "needs a release to install, or alreadyInstalled: true"))
    elif lws.release is not None:
        problems += _check_release(f"{path}.release", lws.release, base_dir)
    return problems


def _check_crds(path: str, bundle: CrdBundle, base_dir: Path | None) -> list[Problem]:
    source = bundle.source
    if source == "builtin" or source.startswith(("https://", "http://")):
        return []
    if not _resolve(source, base_dir).exists():
        return [Problem(f"{path}.source", f"no such file or directory: {source}")]
    return []


def _check_gateway_provider(spec: RolloutSpec, base_dir: Path | None) -> list[Problem]:
    provider = spec.gateway_provider
    path = "gatewayProvider"
    if provider.type == "none" and provider.releases:
        return [Problem(f"{path}.releases", "must be empty when type is none")]
    if provider.type != "none" and not provider.releases:
        return [Problem(f"{path}.releases", f"needs at least one release for type {provider.type}")]
    problems: list[Problem] = []
    names = [release.release_name for release in provider.releases]
    for index, release in enumerate(provider.releases):
        item = f"{path}.releases[{index}]"
        if names.count(release.release_name) > 1:
            problems.append(Problem(f"{item}.releaseName", "is used by more than one release"))
        problems += _check_release(item, release, base_dir)
    return problems


def _check_release(path: str, release: HelmRelease, base_dir: Path | None) -> list[Problem]:
    problems = _check_chart(f"{path}.chart", release.chart, base_dir)
    for index, values_file in enumerate(release.values_files):
        if not _resolve(values_file, base_dir).is_file():
            problems.append(Problem(f"{path}.valuesFiles[{index}]", f"no such file: {values_file}"))
    return problems


def _check_chart(path: str, chart: ChartRef, base_dir: Path | None) -> list[Problem]:
    sources = [s for s in ("repository", "oci", "path") if getattr(chart, s) is not None]
    if len(sources) != 1:
        return [Problem(path, "set exactly one of repository (with name), oci or path")]
    problems: list[Problem] = []
    if chart.repository is not None:
        if not chart.repository.startswith(("https://", "http://")):
            problems.append(Problem(f"{path}.repository", "must be an http(s) URL"))
        if not chart.name:
            problems.append(Problem(f"{path}.name", "is required with repository"))
    elif chart.name is not None:
        problems.append(Problem(f"{path}.name", "only goes with repository"))
    if chart.oci is not None:
        problems += _check_oci(f"{path}.oci", chart.oci)
    if chart.path is None and chart.version is None:
        problems.append(Problem(f"{path}.version", "is required for a remote chart"))
    if chart.path is not None and not (_resolve(chart.path, base_dir) / "Chart.yaml").is_file():
        problems.append(Problem(f"{path}.path", f"no Chart.yaml in {chart.path}"))
    return problems


def _check_oci(path: str, reference: str) -> list[Problem]:
    if not reference.startswith("oci://"):
        return [Problem(path, "must start with oci://")]
    if not _OCI_REFERENCE.match(reference):
        return [
            Problem(
                path,
                f"{reference!r} is not an OCI chart reference (oci://registry/path/chart, "
                "lower case path)",
            )
        ]
    problem = chart_name_problem(reference.rsplit("/", 1)[-1])
    return [Problem(path, problem)] if problem else []


def _check_infra_gateway_class(spec: RolloutSpec) -> list[Problem]:
    """The GatewayClass the infra chart's Gateway asks for is a Kubernetes object name."""
    node: object = spec.infra.values
    for key in INFRA_GATEWAY_CLASS_KEY:
        if not isinstance(node, dict) or key not in node:
            return []
        node = node[key]
    path = INFRA_GATEWAY_CLASS_FIELD
    if not isinstance(node, str):
        return [Problem(path, f"must be a GatewayClass name, got {node!r}")]
    try:
        dns1123_subdomain(node)
    except ValueError as error:
        return [Problem(path, str(error))]
    return []


def _check_model_service(spec: RolloutSpec) -> list[Problem]:
    service = spec.model_service
    path = "modelService"
    problems: list[Problem] = []
    token = service.hf_token
    if (token.from_env is None) == (not token.existing_secret):
        problems.append(
            Problem(f"{path}.hfToken", "set exactly one of fromEnv or existingSecret: true")
        )
    if not service.cache_host_path.startswith("/"):
        problems.append(Problem(f"{path}.cacheHostPath", "must be an absolute path"))
    try:
        plugins = yaml.safe_load(service.epp.plugins_config)
    except yaml.YAMLError as error:
        problems.append(Problem(f"{path}.epp.pluginsConfig", f"is not valid YAML: {error}"))
    else:
        if not isinstance(plugins, dict) or plugins.get("kind") != "EndpointPickerConfig":
            problems.append(
                Problem(f"{path}.epp.pluginsConfig", "must be an EndpointPickerConfig document")
            )
    for name in ROLES:
        problems += _check_role(f"{path}.{name}", service.lws_name(name), service.role(name))
    return problems


def _check_role(path: str, lws_name: str, role: Role) -> list[Problem]:
    problems: list[Problem] = []
    expected = role.data_parallel_local * role.tensor_parallel
    if role.gpus_per_pod != expected:
        problems.append(
            Problem(
                f"{path}.gpusPerPod",
                "must equal dataParallelLocal x tensorParallel "
                f"({role.gpus_per_pod} != {role.data_parallel_local} x {role.tensor_parallel})",
            )
        )
    limit = max_lws_name_length(role.replicas)
    if len(lws_name) > limit:
        problems.append(
            Problem(
                "modelService.releaseName",
                f"makes the LeaderWorkerSet name {lws_name!r} {len(lws_name)} characters long; "
                f"at most {limit} fit with {role.replicas} replicas",
            )
        )
    seen: set[str] = set()
    for index, env in enumerate(role.env):
        item = f"{path}.env[{index}]"
        if (env.value is None) == (env.value_from is None):
            problems.append(Problem(item, "set exactly one of value or valueFrom"))
        if env.name in seen:
            problems.append(Problem(f"{item}.name", f"{env.name} is set more than once"))
        seen.add(env.name)
        if env.name in RESERVED_ENV:
            problems.append(
                Problem(f"{item}.name", f"{env.name} is set by llmd-rollout or LeaderWorkerSet")
            )
        if env.name == "DP_SIZE_LOCAL" and env.value != str(role.data_parallel_local):
            problems.append(
                Problem(
                    f"{item}.value",
                    f"DP_SIZE_LOCAL must equal dataParallelLocal ({env.value} != "
                    f"{role.data_parallel_local})",
                )
            )
    return problems


def _check_strategy(spec: RolloutSpec) -> list[Problem]:
    strategy = spec.strategy
    problems: list[Problem] = []
    if sorted(strategy.role_order) != sorted(ROLES):
        problems.append(
            Problem("strategy.roleOrder", "must name prefill and decode, each exactly once")
        )
    for name in ROLES:
        problems += _check_role_strategy(
            f"strategy.{name}", strategy.for_role(name), spec.model_service.role(name)
        )
    return problems


def _check_role_strategy(path: str, strategy: RoleStrategy, role: Role) -> list[Problem]:
    problems: list[Problem] = []
    for field, value in (
        ("maxUnavailable", strategy.max_unavailable),
        ("maxSurge", strategy.max_surge),
    ):
        if isinstance(value, str) and not _PERCENT.match(value):
            problems.append(
                Problem(f"{path}.{field}", f"must be an integer or a percentage, got {value!r}")
            )
        elif isinstance(value, int) and value < 0:
            problems.append(Problem(f"{path}.{field}", "must not be negative"))
    if _is_zero(strategy.max_unavailable) and _is_zero(strategy.max_surge):
        problems.append(Problem(f"{path}.maxSurge", "cannot be 0 when maxUnavailable is 0"))
    previous: int | None = None
    for index, step in enumerate(strategy.steps):
        item = f"{path}.steps[{index}].partition"
        if step.partition >= role.replicas:
            problems.append(
                Problem(
                    item,
                    f"must be below the role's replicas ({step.partition} >= {role.replicas}), "
                    "or the step updates nothing",
                )
            )
        if previous is not None and step.partition >= previous:
            problems.append(Problem(item, "partitions must decrease from step to step"))
        previous = step.partition
        if step.analysis is not None:
            problems += [
                Problem(f"{path}.steps[{index}].analysis{where}", message)
                for where, message in analysis_problems(step.analysis)
            ]
    if strategy.analysis is not None:
        problems += [
            Problem(f"{path}.analysis{where}", message)
            for where, message in analysis_problems(strategy.analysis)
        ]
    return problems


def _is_zero(value: int | str) -> bool:
    return value in (0, "0%")


def _check_verification(spec: RolloutSpec) -> list[Problem]:
    gateway = spec.verification.gateway
    path = "verification.gateway"
    if gateway.url is not None and gateway.service is not None:
        return [Problem(path, "set either service or url, not both")]
    if gateway.url is not None and not gateway.url.startswith(("http://", "https://")):
        return [Problem(f"{path}.url", "must be an http(s) URL")]
    return []


def _resolve(path: str, base_dir: Path | None) -> Path:
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or base_dir is None:
        return candidate
    return base_dir / candidate
