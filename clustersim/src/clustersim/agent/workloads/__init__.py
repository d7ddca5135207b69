"""What runs inside simulated containers: fake vLLM, the routing sidecar, the EPP, the gateway
proxy and a generic server, each bound to its pod IP on the ports the manifests declare."""
