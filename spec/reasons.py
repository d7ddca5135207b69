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
    # The API server keeps refusing to proxy to a pod (400/403: kubelet unreachable, broken
    # kubelet TLS, a policy): vLLM cannot be asked whether it serves. Carries the server's words.
    POD_PROXY_REFUSED = "PodProxyRefused"
    # Neither the pods' logs nor their endpoints could be read for the whole budget: the evidence
    # says which endpoints failed and how.
    LOG_ENDPOINT_UNAVAILABLE = "LogEndpointUnavailable"
    ROLLOUT_TIMEOUT = "RolloutTimeout"
    GATEWAY_NOT_PROGRAMMED = "GatewayNotProgrammed"
    ROUTE_NOT_ACCEPTED = "RouteNotAccepted"
    VERIFICATION_FAILED = "VerificationFailed"
    # An analysis gate judged the updated pods worse than the stable ones or its thresholds; the
    # message names the metric, both values and the bound.
    ANALYSIS_FAILED = "AnalysisFailed"
    # An analysis gate could not judge (too few requests) and its spec says to fail then.
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
    ABORTED = "Aborted"
