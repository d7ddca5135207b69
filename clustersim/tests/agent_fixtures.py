"""Helpers for the cluster-agent tests: a running simulated cluster and ways to look at it.

`start_cluster` runs `python -m clustersim up` (API
server + agent, the agent talking HTTP to the server) as a subprocess on loopback through the tests'
one launcher (apiserver_process.launch) and waits for its info file; `SimCluster.stop` ends it by
PID.
Everything the tests observe goes through the real Kubernetes API with the official client, the
agent's admin endpoint, or plain HTTP to the loopback addresses the simulation serves.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from apiserver_process import launch, stop_process, wait_for_file
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException
from shared_reference import reference_dir

from clustersim.agent.kubeconfig import load_kubeconfig

# 600 simulated seconds (a 10-minute model load) take 1.8 s of wall time.
TEST_TIME_SCALE = 0.003
T = TypeVar("T")

CRD_FILES = (
    "crds/lws-v0.7.0/leaderworkerset.x-k8s.io_leaderworkersets.yaml",
    "crds/gateway-api-v1.3.0/standard/gateway.networking.k8s.io_gatewayclasses.yaml",
    "crds/gateway-api-v1.3.0/standard/gateway.networking.k8s.io_gateways.yaml",
    "crds/gateway-api-v1.3.0/standard/gateway.networking.k8s.io_httproutes.yaml",
    "crds/gateway-api-v1.3.0/standard/gateway.networking.k8s.io_grpcroutes.yaml",
    "crds/gateway-api-v1.3.0/standard/gateway.networking.k8s.io_referencegrants.yaml",
    "crds/gateway-api-inference-extension-v0.5.0-rc.2/"
    "inference.networking.x-k8s.io_inferencepools.yaml",
    "crds/gateway-api-inference-extension-v0.5.0-rc.2/"
    "inference.networking.x-k8s.io_inferencemodels.yaml",
)
# Kinds of the rendered reference manifests that need a component the simulation does not
# install (an Istio DestinationRule CRD, the Ingress API): their absence is expected.
OPTIONAL_KINDS = {"DestinationRule", "Ingress"}
WIDE_EP_NAMESPACE = "llm-d-wide-ep"
MODEL = "deepseek-ai/DeepSeek-R1-0528"


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except ApiException as error:
            last = error
        if last and not isinstance(last, ApiException):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def reference_manifests(*names: str) -> list[dict[str, Any]]:
    folder = reference_dir() / "rendered"
    documents: list[dict[str, Any]] = []
    for name in names:
        documents += [d for d in yaml.safe_load_all((folder / name).read_text()) if d]
    return documents


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """A plain HTTP request; (status, body), with status 0 when the connection is refused."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def metric(text: bytes, name: str) -> float:
    """The sum of a Prometheus metric's samples in a /metrics answer."""
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class SimCluster:
    process: subprocess.Popen[bytes]
    workdir: Path
    info: dict[str, Any]
    api: client.ApiClient = field(init=False)

    def __post_init__(self) -> None:
        self.api = config.new_client_from_config(str(self.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.dynamic = dynamic.DynamicClient(self.api)

    @property
    def kubeconfig(self) -> Path:
        return Path(self.info["kubeconfig"])

    @property
    def admin_url(self) -> str:
        return str(self.info["admin_url"])

    def stop(self) -> None:
        self.api.close()
        stop_process(self.process)

    # ---- writes ---------------------------------------------------------------------------

    def namespace(self, prefix: str = "agent") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.core.create_namespace({"metadata": {"name": name}})
        return name

    def ensure_namespace(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.core.create_namespace({"metadata": {"name": name}})

    def apply(self, documents: Iterable[dict[str, Any]], namespace: str) -> list[str]:
        """Create each object (or merge-patch it when it exists); returns the skipped kinds."""
        skipped = []
        for document in documents:
            try:
                resource = self.dynamic.resources.get(
                    api_version=document["apiVersion"], kind=document["kind"]
                )
            except dynamic.exceptions.ResourceNotFoundError:
                skipped.append(document["kind"])
                continue
            target = namespace if resource.namespaced else None
            try:
                resource.create(body=document, namespace=target)
            except ApiException as error:
                if error.status != 409:
                    raise
                resource.patch(
                    body=document,
                    name=document["metadata"]["name"],
                    namespace=target,
                    content_type="application/merge-patch+json",
                )
        return skipped

    def install_crds(self) -> None:
        folder = reference_dir()
        for relative in CRD_FILES:
            self.apply([yaml.safe_load((folder / relative).read_text())], "")
        for crd in CRD_FILES:
            name = yaml.safe_load((folder / crd).read_text())["metadata"]["name"]
            wait_for(lambda name=name: self._established(name), 20, f"CRD {name} to be established")
        # The dynamic client caches discovery: refresh it now that the kinds exist.
        self.dynamic = dynamic.DynamicClient(self.api)

    def _established(self, name: str) -> bool:
        crd = self.dynamic.resources.get(
            api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
        ).get(name=name)
        return any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (crd.to_dict().get("status") or {}).get("conditions") or []
        )

    def istio_gateway_class(self) -> None:
        self.apply(
            [
                {
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "GatewayClass",
                    "metadata": {"name": "istio"},
                    "spec": {"controllerName": "istio.io/gateway-controller"},
                }
            ],
            "",
        )

    def hf_secret(self, namespace: str) -> None:
        self.core.create_namespaced_secret(
            namespace,
            {"metadata": {"name": "llm-d-hf-token"}, "stringData": {"HF_TOKEN": "hf_test"}},
        )

    # ---- faults through the agent admin endpoint ------------------------------------------

    def add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        status, body = http("POST", self.admin_url + "/faults", spec)
        assert status == 201, body
        created: dict[str, Any] = json.loads(body)["faults"][0]
        return created

    def clear_faults(self) -> None:
        http("DELETE", self.admin_url + "/faults")

    def gateway_url(self, namespace: str, gateway: str) -> str:
        """The Gateway's address from its status: its Service's cluster IP, once the agent's
        kube-proxy serves it. Each API server allocates cluster IPs from its own block, so the
        address is never another simulated cluster's on this machine."""
        found = self.custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "gateways", gateway
        )
        address = next(a["value"] for a in found["status"]["addresses"] if a["type"] == "IPAddress")
        port = found["spec"]["listeners"][0]["port"]
        served = f"{address}:{port}"

        def listening() -> bool:
            info = json.loads(http("GET", self.admin_url + "/info")[1])
            assert served not in info["serviceConflicts"], info["serviceConflicts"]
            return served in info["serviceListeners"]

        wait_for(listening, 20, f"kube-proxy to serve {served}")
        return f"http://{served}"

    # ---- reads ----------------------------------------------------------------------------

    def get_json(self, path: str, **query: str) -> Any:
        """GET an API path and decode the JSON ourselves (for kinds the typed client lacks)."""
        credentials = load_kubeconfig(self.kubeconfig)
        context = credentials.ssl_context()
        url = credentials.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(
            url,
            headers={"Authorization": f"Bearer {credentials.token}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(
                request,
                context=context or None,
                timeout=10,  # type: ignore[arg-type]
            ) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise ApiException(status=error.code, reason=error.read().decode()) from error

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A pod read through the typed client (its quantities are strings, as on a real
        server, even when the manifest said `cpu: 32`), as a camelCase dict."""
        try:
            typed = self.core.read_namespaced_pod(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        pod: dict[str, Any] = self.api.sanitize_for_serialization(typed)
        return pod

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        typed = self.core.list_namespaced_pod(namespace, label_selector=selector or None)
        pods: list[dict[str, Any]] = self.api.sanitize_for_serialization(typed)["items"]
        return pods

    def events(self, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
        items = self.api.sanitize_for_serialization(self.core.list_namespaced_event(namespace))
        events: list[dict[str, Any]] = items["items"]
        if name is not None:
            events = [e for e in events if e["involvedObject"]["name"] == name]
        return events

    def event_messages(self, namespace: str, name: str, reason: str) -> list[str]:
        return [e["message"] for e in self.events(namespace, name) if e["reason"] == reason]

    def logs(self, namespace: str, pod: str, container: str, **options: Any) -> str:
        text: str = self.core.read_namespaced_pod_log(
            pod, namespace, container=container, **options
        )
        return text

    def custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            group, version, namespace, plural, name
        )
        return found


def container_status(
    pod: dict[str, Any] | None, name: str, required: bool = True
) -> dict[str, Any]:
    """A container's status in a pod; {} when not reported yet and not `required`."""
    status = (pod or {}).get("status") or {}
    for entry in (status.get("containerStatuses") or []) + (
        status.get("initContainerStatuses") or []
    ):
        if entry["name"] == name:
            found: dict[str, Any] = entry
            return found
    if not required:
        return {}
    raise AssertionError(f"no status for container {name} in {pod}")


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if entry["type"] == kind:
            found: dict[str, Any] = entry
            return found
    return None


def wait_condition(
    read: Callable[[], dict[str, Any]], kind: str, timeout: float, what: str, status: str = "True"
) -> dict[str, Any]:
    """Poll `read()` until the object has condition `kind` with `status`; return the object."""

    def check() -> dict[str, Any] | None:
        obj = read()
        found = condition(obj, kind)
        return obj if found is not None and found["status"] == status else None

    return wait_for(check, timeout, what)


def is_ready(pod: dict[str, Any] | None) -> bool:
    ready = condition(pod or {}, "Ready")
    return ready is not None and ready["status"] == "True"


def start_cluster(workdir: Path, profile: str, *extra: str) -> SimCluster:
    """`python -m clustersim up` in a subprocess; returns once its info file exists."""
    info_path = workdir / "info.json"
    log = workdir / "up.log"
    process = launch(
        [
            "up",
            "--profile",
            profile,
            "--time-scale",
            str(TEST_TIME_SCALE),
            "--kubeconfig-out",
            str(workdir / "kubeconfig"),
            "--info-out",
            str(info_path),
            *extra,
        ],
        log,
    )
    wait_for_file(info_path, process, log)
    return SimCluster(process, workdir, json.loads(info_path.read_text()))


def deploy_wide_ep(cluster: SimCluster) -> list[str]:
    """The reference stack as the guide installs it: CRDs, GatewayClass, namespace, HF secret,
    then the rendered modelservice and infra manifests. Returns the kinds it had to skip."""
    cluster.install_crds()
    cluster.istio_gateway_class()
    cluster.ensure_namespace(WIDE_EP_NAMESPACE)
    cluster.hf_secret(WIDE_EP_NAMESPACE)
    documents = reference_manifests("ms-wide-ep.rendered.yaml", "infra-wide-ep.rendered.yaml")
    return cluster.apply(documents, WIDE_EP_NAMESPACE)
