"""Bearer-token authentication: a static token file (generated when absent) and ServiceAccount
tokens (see `sa_tokens`).

The token file has kube-apiserver's `--token-auth-file` shape: `token,user,uid[,"g1,g2"]` per
line. A line holding only a token is the cluster admin (`clustersim-admin`, group
`system:masters`), which is what the generated token is, so the kubeconfig's user can do
anything. Every authenticated user is also in `system:authenticated`; ServiceAccounts are
`system:serviceaccount:NS:NAME` in `system:serviceaccounts` and `system:serviceaccounts:NS`.
"""

from __future__ import annotations

import csv
import hmac
import secrets
from collections.abc import Callable
from pathlib import Path

from clustersim.apiserver.rbac import AUTHENTICATED_GROUP, MASTERS_GROUP, UserInfo
from clustersim.apiserver.sa_tokens import ServiceAccountTokens

ADMIN_USER = "clustersim-admin"
JsonObject = dict[str, object]
# (namespace, name) -> the ServiceAccount's uid, or None when it does not exist
ServiceAccountLookup = Callable[[str, str], str | None]


def load_or_create_identities(path: Path) -> list[tuple[str, UserInfo]]:
    """(token, identity) per line of the token file; the file is created when absent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    identities = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in next(csv.reader([line]))]
        token = fields[0]
        if len(fields) < 2 or not fields[1]:
            identities.append((token, UserInfo(ADMIN_USER, "", (MASTERS_GROUP,
                                                                 AUTHENTICATED_GROUP))))
            continue
        groups = [g.strip() for g in fields[3].split(",")] if len(fields) > 3 else []
        uid = fields[2] if len(fields) > 2 else ""
        identities.append((token, UserInfo(fields[1], uid,
                                           tuple([g for g in groups if g] +
                                                 [AUTHENTICATED_GROUP]))))
    if not identities:
        raise ValueError(f"token file {path} holds no token")
    return identities


def service_account_user(namespace: str, name: str, uid: str) -> UserInfo:
    return UserInfo(f"system:serviceaccount:{namespace}:{name}", uid,
                    ("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                     AUTHENTICATED_GROUP))


class TokenAuthenticator:
    def __init__(self, identities: list[tuple[str, UserInfo]],
                 service_accounts: ServiceAccountTokens | None = None,
                 lookup: ServiceAccountLookup | None = None) -> None:
        self._identities = [(t.encode(), user) for t, user in identities]
        self._service_accounts = service_accounts
        self._lookup = lookup

    def user_for_token(self, token: str) -> UserInfo | None:
        candidate = token.strip().encode()
        found = None
        for known, user in self._identities:
            # compare against every token, so the time taken does not tell which one matched
            if hmac.compare_digest(candidate, known) and found is None:
                found = user
        if found is not None or self._service_accounts is None or self._lookup is None:
            return found
        claims = self._service_accounts.verify(token.strip())
        if claims is None or self._lookup(claims.namespace, claims.name) != claims.uid:
            return None
        return service_account_user(claims.namespace, claims.name, claims.uid)

    def authenticate(self, authorization: str | None) -> UserInfo | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return self.user_for_token(token)

    def authenticates(self, authorization: str | None) -> bool:
        return self.authenticate(authorization) is not None
