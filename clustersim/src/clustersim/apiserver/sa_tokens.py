"""ServiceAccount tokens: minted by TokenRequest (`kubectl create token`), checked on each request.

A token is a JWT with the claims kube-apiserver puts in a bound ServiceAccount token (`iss`,
`sub` = `system:serviceaccount:NS:NAME`, `aud`, `exp`, `iat`, `nbf`, `kubernetes.io` with the
namespace and the ServiceAccount's name and uid). It is signed with HMAC-SHA256 by a key kept in
DATA_DIR/pki/sa.key, so tokens survive a restart that keeps the data directory. A token is valid
until it expires and while its ServiceAccount exists with the same uid, as bound tokens are.
Clients treat tokens as opaque, so the signing algorithm differs from the real RS256 unseen.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_AUDIENCES = (ISSUER,)
DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 2**32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenClaims:
    namespace: str
    name: str
    uid: str
    audiences: tuple[str, ...]
    expires: int


def load_or_create_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    return path.read_text().strip().encode()


class ServiceAccountTokens:
    """Signs and checks ServiceAccount JWTs with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._key_id = hashlib.sha256(key).hexdigest()[:16]

    def mint(self, namespace: str, name: str, uid: str, audiences: tuple[str, ...],
             expiration_seconds: int, now: float | None = None) -> tuple[str, int]:
        """(token, expiry as a Unix time)."""
        issued = int(now if now is not None else time.time())
        expires = issued + expiration_seconds
        header = {"alg": "HS256", "kid": self._key_id, "typ": "JWT"}
        claims: dict[str, Any] = {
            "aud": list(audiences), "exp": expires, "iat": issued, "nbf": issued,
            "iss": ISSUER, "jti": secrets.token_hex(8),
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io": {"namespace": namespace,
                              "serviceaccount": {"name": name, "uid": uid}},
        }
        signing_input = (_b64(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         _b64(json.dumps(claims, separators=(",", ":")).encode()))
        signature = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature), expires

    def verify(self, token: str, now: float | None = None) -> TokenClaims | None:
        """The claims of a token this server signed that has not expired; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        signing_input = f"{parts[0]}.{parts[1]}"
        expected = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(expected, _unb64(parts[2])):
                return None
            claims = json.loads(_unb64(parts[1]))
            identity = claims["kubernetes.io"]
            current = now if now is not None else time.time()
            if not claims["nbf"] - 60 <= current < claims["exp"]:
                return None
            return TokenClaims(str(identity["namespace"]),
                               str(identity["serviceaccount"]["name"]),
                               str(identity["serviceaccount"]["uid"]),
                               tuple(claims.get("aud") or ()), int(claims["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
