"""The kubeconfig that points kubectl, helm and the kubernetes client at the server."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

CLUSTER = "clustersim"
USER = "clustersim-admin"


def render(server: str, token: str, ca_pem: bytes | None) -> str:
    cluster: dict[str, object] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": cluster}],
        "users": [{"name": USER, "user": {"token": token}}],
        "contexts": [{"name": CLUSTER, "context": {"cluster": CLUSTER, "user": USER,
                                                    "namespace": "default"}}],
        "current-context": CLUSTER,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def write(path: Path, server: str, token: str, ca_pem: bytes | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(render(server, token, ca_pem))
    temporary.chmod(0o600)
    os.replace(temporary, path)


def read_connection(path: Path) -> tuple[str, str, bytes | None]:
    """(server URL, bearer token, CA PEM) of the current context of a kubeconfig."""
    config = yaml.safe_load(path.read_text())
    current = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    ca_data = cluster.get("certificate-authority-data")
    ca_pem = base64.b64decode(ca_data) if ca_data else None
    if ca_pem is None and cluster.get("certificate-authority"):
        ca_pem = Path(cluster["certificate-authority"]).read_bytes()
    return str(cluster["server"]), str(user.get("token", "")), ca_pem
