"""TARGET on the command line: `<cluster>/<namespace>/<name>`, the one place a rollout may run.

Where it sits: every verb that acts on a running or past rollout parses its TARGET here; the
workflow ID comes from workflows.ids, so the CLI and the workflows can never disagree on it.
"""

from __future__ import annotations

import re

from cli.errors import CliError
from workflows.ids import rollout_workflow_id

# The three parts are DNS-1123 labels (spec.rollout: Target.cluster, Target.namespace, name).
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def parse_target(text: str) -> str:
    parts = text.split("/")
    if len(parts) != 3 or not all(_LABEL.match(part) for part in parts):
        raise CliError(
            f"{text!r} is not a target: write <cluster>/<namespace>/<name> with lowercase "
            "DNS labels, e.g. clustersim/llm-d-wide-ep/wide-ep (see 'llmd-rollout list')"
        )
    return text


def workflow_id_of(target: str) -> str:
    return rollout_workflow_id(target)
