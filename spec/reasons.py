"""Why a rollout step failed: the names a person, a script and the rollback logic all share.

An activity that detects a failure raises a non-retryable `ApplicationError` whose `type` is one
of these values and whose details carry the evidence (objects, events, last log lines).
"""

from __future__ import annotations

from enum import StrEnum


class FailureReason(StrEnum):
    INVALID_SPEC = "InvalidSpec"
    PREFLIGHT = "PreflightFailed"
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"
    CLUSTER_UNREACHABLE = "ClusterUnreachable"
    # The worker cannot build a Kubernetes client for the target: a kubeconfig that is missing,
    # malformed or lacks the context (or no in-cluster environment). Never retried.
    KUBECONFIG_INVALID = "KubeconfigInvalid"
    # The API server refused the worker's identity a verb on a resource (HTTP 403): its RBAC lacks
    # a rule. Never retried; the message names the verb, resource, API group and namespace.
    PERMISSION_DENIED = "PermissionDenied"
    MISSING_CRD = "MissingCRD"
    APPLY_CONFLICT = "ApplyConflict"
    APPLY_REJECTED = "ApplyRejected"
    HELM_FAILED = "HelmFailed"
    SECRET_MISSING = "SecretMissing"
    IMAGE_PULL = "ImagePull"
    CRASH_LOOP = "CrashLoop"
    CUDA_OOM = "CudaOutOfMemory"
    NIXL_TRANSPORT = "NixlTransportError"
    NVSHMEM_INIT = "NvshmemInitFailure"
    HF_UNAUTHORIZED = "HuggingFaceUnauthorized"
    OOM_KILLED = "OOMKilled"
    UNSCHEDULABLE = "Unschedulable"
    CREATE_CONTAINER_CONFIG = "CreateContainerConfigError"
    NODE_LOST = "NodeLost"
    MODEL_LOAD_TIMEOUT = "ModelLoadBudgetExceeded"
    # Weight loading stopped advancing long before the budget would run out.
    MODEL_LOAD_STALLED = "ModelLoadStalled"
    ROLLOUT_TIMEOUT = "RolloutTimeout"
    GATEWAY_NOT_PROGRAMMED = "GatewayNotProgrammed"
    ROUTE_NOT_ACCEPTED = "RouteNotAccepted"
    VERIFICATION_FAILED = "VerificationFailed"
    ABORTED = "Aborted"
