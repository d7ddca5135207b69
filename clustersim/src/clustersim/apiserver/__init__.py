"""clustersim's Kubernetes API server (HTTP(S), JSON, watches, CRDs, the four patch types)."""

from clustersim.apiserver.server import ApiServer, ApiServerConfig

__all__ = ["ApiServer", "ApiServerConfig"]
