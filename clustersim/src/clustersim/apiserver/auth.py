"""Bearer-token authentication from a static token file (generated when absent)."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path


def load_or_create_tokens(path: Path) -> list[str]:
    """Tokens from a file: one per line, or the first column of a `token,user,uid` CSV line."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    tokens = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            tokens.append(line.split(",")[0].strip().strip('"'))
    if not tokens:
        raise ValueError(f"token file {path} holds no token")
    return tokens


class TokenAuthenticator:
    def __init__(self, tokens: list[str]) -> None:
        self._tokens = [t.encode() for t in tokens]

    def authenticates(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        candidate = token.strip().encode()
        return any(hmac.compare_digest(candidate, known) for known in self._tokens)
