"""Turning what went wrong into Temporal errors: a named reason with evidence, or "retry".

Where it sits: every activity raises through these helpers. A failure a retry cannot fix is a
non-retryable `ApplicationError` whose type is a `FailureReason` value and whose one detail is a
`FailureEvidence`; an API that keeps answering "try again" is a retryable error of its own type,
never a failure reason, so Temporal's retry policy handles it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.kubeclient import (
    ApiUnavailable,
    KubeClient,
    KubeConfigError,
    KubeError,
    UnknownKind,
)
from spec.activity_io import FailureEvidence, ObjectEvidence, ObjectRef
from spec.reasons import FailureReason
from spec.rollout import Target

API_UNAVAILABLE = "KubernetesApiUnavailable"


def failure(
    reason: FailureReason,
    message: str,
    evidence: FailureEvidence | None = None,
    **data: Any,
) -> ApplicationError:
    """A non-retryable error named `reason`, carrying `evidence` (or one built from `data`)."""
    found = evidence or FailureEvidence(reason=reason.value, message=message, data=data)
    return ApplicationError(message, found.to_details(), type=reason.value, non_retryable=True)


def kube_client(target: Target) -> KubeClient:
    """The target's client; a client configuration that cannot work (kubeconfig missing,
    malformed, without the context) is the non-retryable KubeconfigInvalid failure, not
    something Temporal retries for the whole budget."""
    try:
        return KubeClient.for_target(target)
    except KubeConfigError as error:
        raise failure(
            FailureReason.KUBECONFIG_INVALID,
            str(error),
            kubeconfig=error.kubeconfig,
            context=error.context,
            problem=error.problem,
        ) from None


def api_unavailable(error: ApiUnavailable) -> ApplicationError:
    """Retryable: the activity runs again after Temporal's back-off."""
    return ApplicationError(str(error), type=API_UNAVAILABLE, non_retryable=False)


def apply_failure(error: KubeError, ref: ObjectRef, forced: bool) -> ApplicationError:
    """Why the API server refused to apply `ref`, as a reason a person can act on."""
    if isinstance(error, ApiUnavailable):
        return api_unavailable(error)
    if isinstance(error, UnknownKind):
        return failure(
            FailureReason.MISSING_CRD,
            f"cannot apply {ref}: {error.message}; install its CRD (dependencies in the spec)",
            object=str(ref),
        )
    if error.status == 409 and not forced:
        owners = conflict_owners(error)
        return failure(
            FailureReason.APPLY_CONFLICT,
            f"{ref} has fields owned by another manager ({', '.join(owners) or 'unknown'}); "
            "llmd-rollout does not take over objects the spec does not say it owns: "
            f"{error.message}",
            object=str(ref),
            conflicts=[dict(c) for c in error.causes],
        )
    return failure(
        FailureReason.APPLY_REJECTED,
        f"the API server rejected {ref}: {error.message}",
        object=str(ref),
        status=error.status,
        causes=[dict(c) for c in error.causes],
    )


def conflict_owners(error: KubeError) -> list[str]:
    """The managers named in a server-side apply conflict ('conflict with "helm" ...')."""
    owners = []
    for cause in error.causes:
        message = str(cause.get("message", ""))
        if 'conflict with "' in message:
            owners.append(message.split('conflict with "', 1)[1].split('"', 1)[0])
    return list(dict.fromkeys(owners))


def object_evidence(obj: Mapping[str, Any]) -> ObjectEvidence:
    return ObjectEvidence(ref=ObjectRef.of(obj), status=dict(obj.get("status") or {}))
