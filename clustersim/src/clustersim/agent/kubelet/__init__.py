"""The simulated kubelet: pod workers, container runtime, probes, logs and the kubelet HTTP API."""
