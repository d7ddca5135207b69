"""Turning what went wrong into Temporal errors: a named reason with evidence, or "retry".

Where it sits: every activity raises through these helpers. A failure a retry cannot fix is a
non-retryable `ApplicationError` whose type is a `FailureReason` value and whose one detail is a
`FailureEvidence`; an API that keeps answering "try again" is a retryable error of its own type,
never a failure reason, so Temporal's retry policy handles it. Its evidence still names the reason
it stands for when the retries run out (Temporal then fails the step with the last attempt's
error), so a 500 kept up through a whole budget ends as what it is, not as the phase's default.

The Kubernetes activities reach their target through `target_client`: it builds the client,
closes it, and translates what the plumbing in k8s/ raises, in one place and one way
(`api_failure`, and `PodFailure` from the waits).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from temporalio.exceptions import ApplicationError

from k8s.client import ApiUnavailable, KubeClient, KubeConfigError, KubeError, UnknownKind
from k8s.errors import classify_status, classify_text
from k8s.forbidden import Forbidden, forbidden_in
from k8s.objects import ObjectRefused
from k8s.podfailures import PodFailure
from spec.activity_io import FailureEvidence, ObjectEvidence, ObjectRef
from spec.reasons import FailureReason
from spec.rollout import Target

API_UNAVAILABLE = "KubernetesApiUnavailable"
# A command (helm, kubectl) failed because the API server was busy or unreachable: retried.
COMMAND_TRANSIENT = "CommandTransientError"


def failure(
    reason: FailureReason,
    message: str,
    evidence: FailureEvidence | None = None,
    **data: Any,
) -> ApplicationError:
    """A non-retryable error named `reason`, carrying `evidence` (or one built from `data`)."""
    found = evidence or FailureEvidence(reason=reason.value, message=message, data=data)
    return ApplicationError(message, found.to_details(), type=reason.value, non_retryable=True)


def _client_for(target: Target) -> KubeClient:
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


# What a busy or unreachable API server means to most steps: retry, and report the cluster
# unreachable if it stays so. A step whose work is another tool's (helm) reports as that tool.
CLUSTER_BUSY = (API_UNAVAILABLE, FailureReason.CLUSTER_UNREACHABLE)


@asynccontextmanager
async def target_client(
    target: Target, busy: tuple[str, FailureReason] = CLUSTER_BUSY
) -> AsyncIterator[KubeClient]:
    """`async with target_client(spec.target) as client:` the target's client for the block
    (over the worker's shared connections to its API server); what the API (or a watched pod)
    said went wrong leaves the block as the Temporal error `api_failure` (or `PodFailure`'s
    reason) names."""
    client = _client_for(target)
    try:
        yield client
    except KubeError as error:
        raise api_failure(error, busy) from None
    except PodFailure as error:
        raise failure(error.reason, error.message, error.evidence) from None
    finally:
        client.close()


def retryable(
    type_name: str, message: str, if_last: FailureReason, **data: Any
) -> ApplicationError:
    """A retryable error of `type_name`; its evidence names `if_last`, the reason the rollout
    reports when this is the last attempt's error (workflows/failures.py reads it)."""
    evidence = FailureEvidence(reason=if_last.value, message=message, data=data)
    return ApplicationError(message, evidence.to_details(), type=type_name, non_retryable=False)


def api_failure(
    error: KubeError, busy: tuple[str, FailureReason] = CLUSTER_BUSY
) -> ApplicationError:
    """The one translation of a Kubernetes API error: "retry" (`busy`: the error type, and the
    reason if the last attempt ends so) when the API server kept failing, otherwise the reason
    a person can act on."""
    kind = classify_status(error.status, error.body, error.message)
    if isinstance(error, ApiUnavailable) or kind.retryable:
        # Retryable: the activity runs again after Temporal's back-off.
        busy_type, if_last = busy
        return retryable(
            busy_type,
            f"the Kubernetes API server is unreachable: {error.message}",
            if_last,
            status=error.status,
        )
    if isinstance(error, UnknownKind):
        return failure(FailureReason.MISSING_CRD, error.message)
    if kind.permission is not None:
        return permission_denied(kind.permission, error.message)
    if isinstance(error, ObjectRefused):
        return _refused(error)
    # Anything else the API refused (401, a bad request) is no "try again" either.
    return failure(FailureReason.CLUSTER_UNREACHABLE, error.message, status=error.status)


def permission_denied(found: Forbidden, refused: str) -> ApplicationError:
    """PermissionDenied naming who may not do what where: the rule to grant (a retry cannot
    help). `refused` is the text that quoted the refusal (a 403's message, helm's stderr)."""
    return failure(
        FailureReason.PERMISSION_DENIED,
        found.message,
        user=found.user,
        verb=found.verb,
        resource=found.resource,
        group=found.group,
        namespace=found.namespace,
        path=found.path,
        refused=refused[-500:],
    )


def permission_denied_in(text: str) -> ApplicationError | None:
    """PermissionDenied when `text` quotes the API server's RBAC refusal; otherwise None."""
    found = forbidden_in(text)
    return None if found is None else permission_denied(found, text)


def command_failure(
    reason: FailureReason,
    message: str,
    output: str,
    transient_type: str = COMMAND_TRANSIENT,
    **data: Any,
) -> ApplicationError:
    """What a failed command (helm, kubectl) means, from its error output: the API server was
    busy or unreachable (retryable, `transient_type`), it forbade the action (PermissionDenied),
    or `reason` with `message`."""
    kind = classify_text(output)
    if kind.permission is not None:
        return permission_denied(kind.permission, output)
    if kind.retryable:
        return retryable(transient_type, message, reason, **data)
    return failure(reason, message, **data)


def _refused(error: ObjectRefused) -> ApplicationError:
    ref = error.ref
    if error.verb == "delete":
        return failure(FailureReason.APPLY_REJECTED, f"cannot delete {ref}: {error.message}")
    if error.unknown_kind:
        return failure(
            FailureReason.MISSING_CRD,
            f"cannot apply {ref}: {error.message}; install its CRD (dependencies in the spec)",
            object=str(ref),
        )
    if error.status == 409 and not error.forced:
        owners = error.conflict_owners
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


def object_evidence(obj: Mapping[str, Any]) -> ObjectEvidence:
    return ObjectEvidence(ref=ObjectRef.of(obj), status=dict(obj.get("status") or {}))
