"""Small things kubectl shows differently against a real server: a CRD printer column whose
JSONPath selects several values prints the first one, and every v1 Endpoints answer carries the
deprecation warning (kubectl prints it as `Warning: ...`)."""

from __future__ import annotations

import uuid

from apiserver_process import RunningApiServer, wait_until
from kubernetes import client as k8s

GROUP = "fidelity.clustersim.io"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
DEPRECATION = '299 - "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"'


def test_a_printer_column_with_a_wildcard_prints_the_first_value(
        apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str) -> None:
    plural = f"pools{uuid.uuid4().hex[:6]}"
    schema = {"type": "object", "properties": {"spec": {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    k8s.ApiextensionsV1Api(api_client).create_custom_resource_definition({
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"plural": plural, "kind": plural.capitalize()[:-1]},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": schema},
                               "additionalPrinterColumns": [
                                   {"name": "Targets", "type": "string",
                                    "jsonPath": ".spec.targets[*].name"},
                                   {"name": "Ports", "type": "integer",
                                    "jsonPath": ".spec.targets[*].port"}]}]},
    })
    wait_until(lambda: apiserver.request("GET", f"/apis/{GROUP}/v1/{plural}").status == 200)
    path = f"/apis/{GROUP}/v1/namespaces/{namespace}/{plural}"
    created = apiserver.request("POST", path, {
        "apiVersion": f"{GROUP}/v1", "kind": plural.capitalize()[:-1],
        "metadata": {"name": "p"},
        "spec": {"targets": [{"name": "first", "port": 8000}, {"name": "second", "port": 8200}]},
    })
    assert created.status == 201, created.body
    table = apiserver.request("GET", path, accept=TABLE).json()
    assert table["rows"][0]["cells"] == ["p", "first", 8000]


def test_v1_endpoints_answers_carry_the_deprecation_warning(apiserver: RunningApiServer,
                                                            namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/endpoints"
    created = apiserver.request("POST", path, {"metadata": {"name": "e"}, "subsets": []})
    assert created.status == 201
    for answer in (created, apiserver.request("GET", path),
                   apiserver.request("GET", f"{path}/e"),
                   apiserver.request("GET", f"{path}?watch=true&timeoutSeconds=1")):
        assert answer.headers.get("Warning") == DEPRECATION, answer.headers
    # EndpointSlices are not deprecated
    slices = apiserver.request("GET", f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/"
                                      "endpointslices")
    assert "Warning" not in slices.headers
