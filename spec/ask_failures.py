"""How a failure of a cluster workflow's ask is carried to the asking activity.

Where it sits: between workflows/cluster.py, which records why an ask's work failed (a helm
activity's named failure, a version conflict found under the piece's lock), and
activities/cluster.py, which turns that record, or an update the server or validator refused,
into the activity's own error. Both read the same thing out of a failure chain: its deepest
application error, whose type names what went wrong.
"""

from __future__ import annotations

import json

from temporalio.exceptions import ApplicationError, FailureError

from spec.cluster_io import AskError

# Details beyond this size are dropped from a recorded failure (the sentence stays): they are
# carried through continue-as-new, whose input must stay well under the payload limit.
MAX_DETAILS_CHARS = 4000


def deepest_application_error(error: BaseException | None) -> ApplicationError | None:
    """The innermost ApplicationError under activity/child/update wrappers, or None."""
    deepest: ApplicationError | None = None
    cause = error
    while isinstance(cause, FailureError):
        if isinstance(cause, ApplicationError):
            deepest = cause
        cause = cause.cause
    return deepest


def ask_error(
    error: BaseException, *, final_types: frozenset[str], step: str | None = None,
    done: list[str] | None = None,
) -> AskError:
    """The record of `error`, the failure of an ask's work: final when its type is one of
    `final_types` (a conflict, a named failure of an operation whose activity already retried)
    or it says so itself. A failure with no application error under it (an operation's
    activity timing out) is final too: the operation already had its whole budget."""
    deepest = deepest_application_error(error)
    if deepest is None:
        innermost = error
        while isinstance(innermost, FailureError) and innermost.cause is not None:
            innermost = innermost.cause
        return AskError(
            type=type(innermost).__name__, message=str(innermost) or type(innermost).__name__,
            non_retryable=True, step=step, done=done,
        )
    details = [d for d in deepest.details if isinstance(d, dict)]
    if len(json.dumps(details, default=str)) > MAX_DETAILS_CHARS:
        details = []
    return AskError(
        type=deepest.type or type(deepest).__name__, message=deepest.message,
        non_retryable=deepest.non_retryable or deepest.type in final_types,
        details=details, step=step, done=done,
    )
