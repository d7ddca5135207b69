"""The helm CLI as our code uses it: the arguments and answers (commands), running it (runner),
and its release records read without it (storage).

Where it sits: below activities/helm.py and the CLI's `plan`; it knows nothing of Temporal.
"""

from helmcli.commands import (
    HelmVersion,
    chart_args,
    digest_of,
    history_state,
    in_progress,
    is_unchanged,
    local_chart_version,
    not_found,
    parse_release,
    release_digest,
    repair_for,
    rollback_args,
    uninstall_args,
    upgrade_args,
    user_values,
)
from helmcli.runner import (
    HELM_ENV,
    HelmCommandFailed,
    HelmError,
    HelmRun,
    HelmRunner,
    HelmTimedOut,
    HelmUnusable,
    helm_binary,
    private_values_file,
)

__all__ = [
    "HELM_ENV",
    "HelmCommandFailed",
    "HelmError",
    "HelmRun",
    "HelmRunner",
    "HelmTimedOut",
    "HelmUnusable",
    "HelmVersion",
    "chart_args",
    "digest_of",
    "helm_binary",
    "history_state",
    "in_progress",
    "is_unchanged",
    "local_chart_version",
    "not_found",
    "parse_release",
    "private_values_file",
    "release_digest",
    "repair_for",
    "rollback_args",
    "uninstall_args",
    "upgrade_args",
    "user_values",
]
