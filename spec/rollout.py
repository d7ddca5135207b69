"""The rollout spec: what one target (cluster, namespace, stack) should converge to.

Every other part reads it: the renderer (manifests/), the activities, the workflows and the CLI. The
YAML spelling is camelCase (`modelService.decode.gpusPerPod`); Python uses snake_case. Unknown
fields are refused in a spec read by `spec.loader` (see `SpecModel`). Checks that span several
fields live in `spec.validation`, so a file with type errors still gets every type error reported
at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from spec.analysis import Analysis
from spec.types import (
    ChartName,
    DNS1035Label,
    DNS1123Label,
    DNS1123Subdomain,
    Duration,
    DurationOrZero,
    EnvName,
    HelmReleaseName,
    ImageRef,
    Quantity,
    Version,
)

API_VERSION = "llmd-rollout.llm-d.ai/v1alpha1"
KIND = "Rollout"

RoleName = Literal["prefill", "decode"]
ROLES: tuple[RoleName, ...] = ("prefill", "decode")


class SpecModel(BaseModel):
    """Base of every spec section: camelCase aliases, immutable.

    Unknown fields are refused where a person's spec comes in: `spec.loader` validates with
    `extra="forbid"`, which reaches every nested section. Everywhere else (a spec inside a
    workflow payload or a last-known-good record written by a newer worker) they are ignored, so
    an older worker still decodes what a newer one stored.
    """

    model_config = ConfigDict(
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )


class Metadata(SpecModel):
    name: DNS1123Label = Field(description="Name of the rollout target; part of workflow IDs.")


class Target(SpecModel):
    """Where the stack runs. No kubeconfig and not in-cluster: the worker's default kubeconfig."""

    cluster: DNS1123Label = Field(description="Cluster name used in workflow IDs and labels.")
    namespace: DNS1123Label
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False


class ChartRef(SpecModel):
    """A Helm chart: a repository URL and chart name, an OCI reference, or a local path."""

    repository: str | None = None
    name: ChartName | None = None
    oci: str | None = None
    path: str | None = None
    version: Version | None = None


class HelmRelease(SpecModel):
    release_name: HelmReleaseName
    namespace: DNS1123Label | None = Field(
        default=None, description="Defaults to the target namespace."
    )
    chart: ChartRef
    values_files: list[str] = Field(default_factory=list)
    values: dict[str, Any] = Field(default_factory=dict)


class CrdBundle(SpecModel):
    """A set of CRDs at a pinned version: a URL (YAML or kustomize dir), a local path or `builtin`.

    `builtin` applies the project's own structural CRDs for the kinds we use (manifests/crds/).
    """

    version: Version
    source: str = "builtin"
    already_installed: bool = False


class LeaderWorkerSetDependency(SpecModel):
    already_installed: bool = False
    release: HelmRelease | None = None


class Dependencies(SpecModel):
    gateway_api_crds: CrdBundle
    inference_extension_crds: CrdBundle
    leader_worker_set: LeaderWorkerSetDependency


class GatewayProvider(SpecModel):
    """The gateway control plane (Istio base + istiod, kgateway) or `none` when already there."""

    type: Literal["istio", "kgateway", "none"]
    gateway_class_name: DNS1123Subdomain = "istio"
    releases: list[HelmRelease] = Field(default_factory=list)


class InfraRelease(HelmRelease):
    gateway_name: DNS1123Subdomain | None = Field(
        default=None, description="Defaults to `<releaseName>-inference-gateway`, as llm-d-infra."
    )

    @property
    def gateway(self) -> str:
        return self.gateway_name or f"{self.release_name}-inference-gateway"


class HfToken(SpecModel):
    """The Hugging Face token Secret. Its value never enters a workflow: only these names do."""

    secret_name: DNS1123Subdomain = "llm-d-hf-token"
    secret_key: EnvName = "HF_TOKEN"
    from_env: EnvName | None = Field(
        default=None, description="Worker environment variable holding the token."
    )
    existing_secret: bool = False


class RoutingSidecar(SpecModel):
    image: ImageRef
    connector: str = "nixlv2"
    verbosity: int = Field(default=5, ge=0, le=10)
    secure_proxy: bool = False


class Epp(SpecModel):
    """The endpoint picker (inference scheduler) and its plugin configuration."""

    image: ImageRef
    verbosity: int = Field(default=4, ge=0, le=10)
    plugins_config_file: str = "pd-config.yaml"
    plugins_config: str = Field(description="EndpointPickerConfig YAML text.")


class EnvVar(SpecModel):
    """A container environment variable: a literal value or a Kubernetes `valueFrom` source."""

    name: EnvName
    value: str | None = None
    value_from: dict[str, Any] | None = None


class AcceleratorSelector(SpecModel):
    label_key: str = "gpu.nvidia.com/model"
    label_values: list[str] = Field(default_factory=lambda: ["H200"], min_length=1)


class Role(SpecModel):
    """One serving role (prefill or decode) as LeaderWorkerSet groups of vLLM pods."""

    replicas: int = Field(ge=1, description="LWS groups.")
    group_size: int = Field(ge=1, description="Pods per group (LWS size).")
    data_parallel_local: int = Field(ge=1, description="Data-parallel ranks per pod.")
    tensor_parallel: int = Field(default=1, ge=1)
    gpus_per_pod: int = Field(ge=1)
    rdma_per_pod: int = Field(default=1, ge=0)
    cpu: Quantity = "32"
    memory: Quantity = "512Gi"
    ephemeral_storage: Quantity = "64Gi"
    image: ImageRef | None = Field(default=None, description="Overrides modelService.vllmImage.")
    env: list[EnvVar] = Field(default_factory=list)
    extra_args: list[str] = Field(default_factory=list)
    node_affinity: dict[str, Any] | None = Field(
        default=None,
        description="A Kubernetes NodeAffinity; default from modelService.accelerator.",
    )

    @property
    def pods(self) -> int:
        return self.replicas * self.group_size

    @property
    def gpus(self) -> int:
        return self.pods * self.gpus_per_pod

    @property
    def data_parallel_size(self) -> int:
        return self.group_size * self.data_parallel_local


class InferencePoolSettings(SpecModel):
    name: DNS1123Subdomain | None = Field(default=None, description="Defaults to the release name.")
    target_port: int = Field(default=8000, ge=1, le=65535)


class ModelService(SpecModel):
    release_name: DNS1035Label
    model_name: str = Field(min_length=1, description="Hugging Face model id served by vLLM.")
    vllm_image: ImageRef
    routing_sidecar: RoutingSidecar
    epp: Epp
    hf_token: HfToken = Field(default_factory=HfToken)
    cache_host_path: str = "/mnt/local/hf-cache"
    accelerator: AcceleratorSelector | None = Field(default_factory=AcceleratorSelector)
    startup_probe: bool = Field(
        default=True,
        description="Startup probe on vLLM /health within the model-load budget (off upstream).",
    )
    inference_pool: InferencePoolSettings = Field(default_factory=InferencePoolSettings)
    prefill: Role
    decode: Role

    def role(self, name: RoleName) -> Role:
        return self.prefill if name == "prefill" else self.decode

    def image_for(self, name: RoleName) -> str:
        return self.role(name).image or self.vllm_image

    @property
    def pool_name(self) -> str:
        return self.inference_pool.name or self.release_name

    @property
    def full_name(self) -> str:
        """The objects' base name, as the modelservice chart spells it."""
        return f"{self.release_name}-llm-d-modelservice"

    def lws_name(self, name: RoleName) -> str:
        return f"{self.full_name}-{name}"


class Gate(SpecModel):
    """What happens after a step: a timed pause, a person's approval, or both (pause first)."""

    pause: Duration | None = None
    approval: bool = False


class CanaryStep(Gate):
    """Update the groups with index >= partition, analyse them if asked, then pass the gate."""

    partition: int = Field(ge=0)
    analysis: Analysis | None = Field(
        default=None, description="Judge the updated pods against the others (spec/analysis.py)."
    )


class RoleStrategy(SpecModel):
    max_unavailable: int | str = 1
    max_surge: int | str = 0
    steps: list[CanaryStep] = Field(default_factory=list)
    analysis: Analysis | None = Field(
        default=None, description="Judge the role's pods once all are updated (thresholds)."
    )


class Strategy(SpecModel):
    role_order: list[RoleName] = Field(
        default_factory=lambda: list[RoleName](["decode", "prefill"])
    )
    between_roles: Gate = Field(
        default_factory=Gate, description="Gate after the first role is rolled and verified."
    )
    decode: RoleStrategy = Field(default_factory=RoleStrategy)
    prefill: RoleStrategy = Field(default_factory=RoleStrategy)

    def for_role(self, name: RoleName) -> RoleStrategy:
        return self.prefill if name == "prefill" else self.decode


class PhaseTimeouts(SpecModel):
    """The budget of each step of a phase (an activity with its retries, or a wait), not of the
    phase as a whole; a shared-piece ask gets one per piece and one more for waiting behind
    another target (docs/architecture.md, "Budgets")."""

    preflight: Duration = timedelta(minutes=2)
    dependencies: Duration = timedelta(minutes=10)
    gateway_provider: Duration = timedelta(minutes=10)
    namespace: Duration = timedelta(minutes=2)
    infra: Duration = timedelta(minutes=10)
    model_service: Duration = timedelta(minutes=10)
    verify: Duration = timedelta(minutes=5)


class Budgets(SpecModel):
    model_load: Duration = timedelta(minutes=30)
    capacity_wait: DurationOrZero = Field(
        default=timedelta(0),
        description=(
            "How long preflight waits for GPUs that other rollouts hold or use when the "
            "capacity plan does not fit now, re-planning as they are freed; 0 (the default): "
            "refuse at once (exit 5). A plan even an empty cluster cannot hold is refused at "
            "once either way."
        ),
    )
    phase_timeouts: PhaseTimeouts = Field(default_factory=PhaseTimeouts)


class GatewayAccess(SpecModel):
    """How verification reaches the gateway: a Service through the API server proxy, or a URL."""

    service: DNS1123Label | None = Field(
        default=None, description="Defaults to `<infra gateway>-istio`, the Istio-made Service."
    )
    port: int = Field(default=80, ge=1, le=65535)
    url: str | None = None


class Expectations(SpecModel):
    model_listed: bool = True
    min_completion_tokens: int = Field(default=1, ge=0)
    disaggregation: bool = True


class Verification(SpecModel):
    gateway: GatewayAccess = Field(default_factory=GatewayAccess)
    prompt: str = Field(min_length=1)
    max_tokens: int = Field(default=32, ge=1)
    request_timeout: Duration = timedelta(seconds=60)
    expect: Expectations = Field(default_factory=Expectations)


class RollbackPolicy(SpecModel):
    automatic: bool = True
    on_first_install_failure: Literal["uninstall", "keep"] = "uninstall"


class RolloutSpec(SpecModel):
    api_version: Literal["llmd-rollout.llm-d.ai/v1alpha1"]
    kind: Literal["Rollout"]
    metadata: Metadata
    target: Target
    dependencies: Dependencies
    gateway_provider: GatewayProvider
    infra: InfraRelease
    model_service: ModelService
    strategy: Strategy = Field(default_factory=Strategy)
    budgets: Budgets = Field(default_factory=Budgets)
    verification: Verification
    rollback: RollbackPolicy = Field(default_factory=RollbackPolicy)

    @property
    def target_id(self) -> str:
        """`<cluster>/<namespace>/<name>`: the one place a rollout of this target may run."""
        return f"{self.target.cluster}/{self.target.namespace}/{self.metadata.name}"

    @property
    def gpus(self) -> int:
        return self.model_service.prefill.gpus + self.model_service.decode.gpus

    @property
    def gateway_service(self) -> str:
        return self.verification.gateway.service or f"{self.infra.gateway}-istio"
