"""clustersim.agent: the agent that makes a bare Kubernetes API server behave like a cluster.

It plays the parts a real cluster runs beside its API server: node registration, the scheduler,
one kubelet per simulated node (image pulls, containers, probes, logs), the Deployment, ReplicaSet,
StatefulSet, LeaderWorkerSet, Endpoints and Gateway controllers, fake vLLM / routing-sidecar / EPP /
gateway servers on loopback pod IPs, and fault injection. It talks to the API server only through
the Kubernetes HTTP API (list, watch and writes) from a kubeconfig, like kwok, so it can drive
clustersim's server or any real kube-apiserver.
"""

from clustersim.agent.agent import AgentConfig, ClusterAgent

__all__ = ["AgentConfig", "ClusterAgent"]
