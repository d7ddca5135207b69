"""Workload and networking controllers: Deployment, ReplicaSet, StatefulSet, LeaderWorkerSet,
Endpoints/EndpointSlices, the Gateway API (as Istio), and a kube-proxy for loopback Service IPs."""
