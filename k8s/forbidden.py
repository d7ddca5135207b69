"""Reading the API server's 403 text: who was refused which verb on which resource, and where.

Where it sits: pure parsing, used by activities/failures.py (a 403 from our own client) and
activities/helm.py (helm's and kubectl's stderr, which quote the same text), so a missing RBAC
rule surfaces as one `PermissionDenied` failure naming the rule to grant.

The text is kube-apiserver's (and clustersim's) authorizer message, e.g.
    pods "web" is forbidden: User "system:serviceaccount:ops:worker" cannot get resource
    "pods/log" in API group "" in the namespace "llm"
with `at the cluster scope` instead of a namespace for cluster-wide requests, and
`cannot get path "/metrics"` for non-resource URLs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RESOURCE = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>[a-z]+) resource "(?P<resource>[^"]+)"'
    r' in API group "(?P<group>[^"]*)"'
    r'(?: in the namespace "(?P<namespace>[^"]*)"| at the cluster scope)?'
)
_PATH = re.compile(r'User "(?P<user>[^"]*)" cannot (?P<verb>[a-z]+) path "(?P<path>[^"]+)"')


@dataclass(frozen=True)
class Forbidden:
    """One refused request: `resource` may carry a subresource (`pods/log`); `namespace` is
    empty for a cluster-scoped request; `path` is set (and `resource` empty) for a URL."""

    user: str
    verb: str
    resource: str = ""
    group: str = ""
    namespace: str = ""
    path: str = ""

    @property
    def what(self) -> str:
        """`get pods/log (API group "") in namespace "llm"`: the rule a person must grant."""
        if self.path:
            return f'{self.verb} path "{self.path}"'
        where = f'in namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        return f'{self.verb} {self.resource} (API group "{self.group}") {where}'

    @property
    def message(self) -> str:
        return (
            f"permission denied: {self.user} may not {self.what}; the worker's RBAC lacks this "
            "rule (the worker chart's rbac.* values list the rules it needs)"
        )


def forbidden_in(text: str) -> Forbidden | None:
    """The refusal quoted in `text` (a Status message, helm's or kubectl's stderr), or None."""
    found = _RESOURCE.search(text)
    if found is not None:
        return Forbidden(
            user=found["user"],
            verb=found["verb"],
            resource=found["resource"],
            group=found["group"],
            namespace=found["namespace"] or "",
        )
    at_path = _PATH.search(text)
    if at_path is not None:
        return Forbidden(user=at_path["user"], verb=at_path["verb"], path=at_path["path"])
    return None
