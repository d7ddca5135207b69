"""The errors a user can meet, each one clear sentence saying what to do, never a traceback.

Where it sits: commands raise `CliError` for what they detect themselves; `explain` turns the
exceptions of the layers below (Temporal client, spec loader, connection settings) into one;
`cli.main` prints it and exits with its code.
"""

from __future__ import annotations

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from cli.exit_codes import ExitCode
from embedded import ConnectionSettingsError
from rollouts import TargetBusy
from spec import SpecError


class CliError(Exception):
    """A failure to report as `message` (a sentence with the fix) and exit with `code`."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class NoSuchRollout(CliError):
    """`hint` is cli.suggest's "; did you mean '...'?", or empty when no known target is close."""

    def __init__(self, target: str, namespace: str, hint: str = "") -> None:
        fix = hint or (
            "; check the target (<cluster>/<namespace>/<name>) with 'llmd-rollout list'"
        )
        super().__init__(
            f"no rollout of {target} is known to Temporal namespace {namespace!r}{fix}"
        )


def explain(error: BaseException, *, address: str = "", target: str = "") -> CliError | None:
    """`error` as a CliError, or None when it is not one a user can act on (a bug)."""
    if isinstance(error, CliError):
        return error
    if isinstance(error, SpecError):
        return CliError(error.render(), ExitCode.REFUSED)
    if isinstance(error, ConnectionSettingsError):
        return CliError(f"invalid Temporal connection settings: {error}")
    if isinstance(error, TargetBusy):
        return CliError(
            f"a rollout of {error.target} is already running as workflow {error.workflow_id} "
            f"(run {error.run_id}); follow it with 'llmd-rollout status {error.target} --watch' "
            f"or stop it with 'llmd-rollout abort {error.target}'",
            ExitCode.ALREADY_RUNNING,
        )
    if isinstance(error, WorkflowUpdateFailedError):
        cause = error.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        return CliError(f"the rollout of {target} refused: {reason}")
    if isinstance(error, RPCError):
        return _rpc(error, address, target)
    if isinstance(error, RuntimeError) and "client connect" in str(error).lower():
        return _unreachable(address, str(error))
    return None


def _rpc(error: RPCError, address: str, target: str) -> CliError:
    if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return _unreachable(address, error.message)
    if error.status == RPCStatusCode.UNAUTHENTICATED:
        return CliError(
            f"Temporal at {address} rejected our credentials ({error.message}); check "
            "--api-key/TEMPORAL_API_KEY or the TLS client certificate"
        )
    if error.status == RPCStatusCode.PERMISSION_DENIED:
        return CliError(
            f"Temporal at {address} denied the request ({error.message}); check the namespace "
            "and the permissions of the API key or certificate"
        )
    if error.status == RPCStatusCode.NOT_FOUND:
        subject = f"the rollout of {target}" if target else "what was asked for"
        return CliError(
            f"Temporal does not know {subject} ({error.message}); list what exists with "
            "'llmd-rollout list'"
        )
    return CliError(f"Temporal at {address} answered an error: {error.message}")


def _unreachable(address: str, detail: str) -> CliError:
    reason = "connection refused" if "refused" in detail.lower() else detail.splitlines()[0]
    return CliError(
        f"cannot reach Temporal at {address} ({reason}); start one (e.g. 'llmd-rollout demo') "
        "or point --address/TEMPORAL_ADDRESS at a running server"
    )
