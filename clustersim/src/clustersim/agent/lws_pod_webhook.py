"""The LWS pod webhook, served by the agent for API servers that call admission webhooks.

On a real cluster the LWS controller manager runs a mutating webhook that labels leader and
worker pods and injects `LWS_*` variables (`clustersim.lws_pods`). Next to a real kube-apiserver
and kube-controller-manager, the pods of an LWS are created by the real StatefulSet controller,
so the agent (when it runs the `leaderworkerset` controller) serves that webhook over HTTPS on
127.0.0.1 with a certificate from the kubelet CA and registers a MutatingWebhookConfiguration
for pods carrying `leaderworkerset.sigs.k8s.io/name`, as LWS does. clustersim's own API server
does not serve admissionregistration (it applies the same mutation as a built-in admission
step), so there the registration is skipped. The configuration is removed when the agent stops.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from clustersim.agent.kubeclient import ApiError, KubeClient, Resource
from clustersim.listeners import listen_on
from clustersim.lws_pods import NAME_LABEL, mutate_lws_pod
from clustersim.pki import CertificateAuthority, issue_serving

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/mutate--v1-pod"
CONFIGURATION_NAME = "clustersim-lws-pod-webhook"
MUTATING_WEBHOOKS = Resource("admissionregistration.k8s.io", "v1",
                             "mutatingwebhookconfigurations", "MutatingWebhookConfiguration",
                             namespaced=False)
JsonObject = dict[str, Any]


def review_response(review: JsonObject) -> JsonObject:
    """The AdmissionReview answer for a pod CREATE: allowed, with a JSON patch when the LWS
    webhook changes the pod."""
    request = review.get("request") or {}
    original = request.get("object") or {}
    pod = copy.deepcopy(original)
    metadata = pod.setdefault("metadata", {})
    # the object of a CREATE may leave the namespace to the request
    metadata.setdefault("namespace", request.get("namespace") or "")
    mutate_lws_pod(pod)
    patch: list[JsonObject] = []
    if metadata.get("labels") != (original.get("metadata") or {}).get("labels"):
        patch.append({"op": "add", "path": "/metadata/labels", "value": metadata["labels"]})
    for key in ("containers", "initContainers"):
        value = (pod.get("spec") or {}).get(key)
        if value is not None and value != (original.get("spec") or {}).get(key):
            patch.append({"op": "add", "path": f"/spec/{key}", "value": value})
    response: JsonObject = {"uid": request.get("uid", ""), "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": response}


def configuration(url: str, ca_pem: bytes) -> JsonObject:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION_NAME},
        "webhooks": [{
            "name": "mpod.lws.clustersim.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
            "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "objectSelector": {"matchExpressions": [{"key": NAME_LABEL,
                                                     "operator": "Exists"}]},
        }],
    }


class PodWebhookServer:
    def __init__(self, ca: CertificateAuthority, pki_dir: Path) -> None:
        self.ca = ca
        self.pki_dir = pki_dir
        self.url = ""
        self.registered = False
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        try:
            review = await request.json()
        except ValueError:
            return web.json_response({"error": "the body must be an AdmissionReview"},
                                     status=400)
        return web.json_response(review_response(review))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, self.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        serving = issue_serving(self.ca, self.pki_dir, "lws-pod-webhook", "clustersim-lws-webhook",
                                ["127.0.0.1"], ["localhost"])
        sock = listen_on("127.0.0.1", 0, "LWS pod webhook")
        await web.SockSite(runner, sock, ssl_context=serving.server_context()).start()
        self._runner = runner
        self.url = f"https://127.0.0.1:{sock.getsockname()[1]}{WEBHOOK_PATH}"

    async def register(self, client: KubeClient) -> None:
        """Register with an API server that serves admissionregistration; skip on one that
        does not (clustersim's, which applies the webhook itself)."""
        body = configuration(self.url, self.ca.cert_path.read_bytes())
        try:
            await client.create(MUTATING_WEBHOOKS, body)
        except ApiError as error:
            if error.not_found:
                log.info("the API server does not serve admission webhooks; it applies the "
                         "LWS pod webhook itself or not at all")
                return
            if not error.conflict:
                raise
            await client.merge_patch(MUTATING_WEBHOOKS, CONFIGURATION_NAME,
                                     {"webhooks": body["webhooks"]})
        self.registered = True
        log.info("LWS pod webhook registered at %s", self.url)

    async def stop(self, client: KubeClient | None) -> None:
        if self.registered and client is not None:
            try:
                await client.delete(MUTATING_WEBHOOKS, CONFIGURATION_NAME)
            except (ApiError, OSError) as error:
                log.warning("could not remove the LWS pod webhook configuration: %s", error)
            self.registered = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
