"""The API server's certificates: the cluster CA and a serving certificate for 127.0.0.1 and
localhost, kept in DATA_DIR/pki. The same CA signs the simulated kubelets' serving certificates
when the agent runs in the same `clustersim up` (see `clustersim.pki`)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from clustersim.pki import LeafFiles, issue_serving, load_or_create_ca


@dataclass(frozen=True)
class ServingCertificates:
    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        return LeafFiles(self.cert_path, self.key_path).server_context()


def ensure_certificates(directory: Path) -> ServingCertificates:
    """Reuse the CA and serving certificate in `directory`, or create them."""
    paths = ServingCertificates(directory / "ca.crt", directory / "apiserver.crt",
                                directory / "apiserver.key")
    if paths.ca_path.exists() and paths.cert_path.exists() and paths.key_path.exists():
        return paths
    ca = load_or_create_ca(directory, "clustersim-ca")
    issue_serving(ca, directory, "apiserver", "clustersim", ["127.0.0.1"], ["localhost"])
    return paths
