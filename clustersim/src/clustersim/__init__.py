"""clustersim: the project's own simulated Kubernetes cluster.

`clustersim.apiserver` is a Kubernetes API server over real HTTP(S) that the official clients
(kubernetes Python client, kubectl, helm) accept unchanged; `clustersim.agent` drives the cluster
(scheduler, kubelet, controllers) through that API only.
"""
