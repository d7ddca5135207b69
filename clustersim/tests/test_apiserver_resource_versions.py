"""Every stored change bumps the global resourceVersion, including the writes the server's own
controllers make (CRD establishment, namespace termination, garbage collection, finalizer
removal), and each watch event carries the version of the change it reports."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

from apiserver_process import RunningApiServer, wait_until
from kubernetes import client as k8s

GROUP = "rv.example.com"


def watch_events(apiserver: RunningApiServer, path: str, since: str) -> list[dict[str, Any]]:
    """The events a watch resumed from `since` replays (the raw JSON, one second of stream)."""
    answer = apiserver.request(
        "GET", f"{path}?watch=true&resourceVersion={since}&timeoutSeconds=1"
    )
    assert answer.status == 200, answer.body
    return [json.loads(line) for line in answer.body.splitlines() if line.strip()]


def versions(events: list[dict[str, Any]]) -> list[int]:
    return [int(e["object"]["metadata"]["resourceVersion"]) for e in events]


def assert_each_change_has_its_own_version(events: list[dict[str, Any]], since: str) -> None:
    found = versions(events)
    assert found == sorted(set(found)), f"versions repeat or go back: {found}"
    assert all(v > int(since) for v in found)


def current_version(apiserver: RunningApiServer) -> str:
    return str(apiserver.request("GET", "/api/v1/namespaces").json()["metadata"]["resourceVersion"])


def test_crd_establishment_is_a_modified_event_with_a_newer_resource_version(
    apiserver: RunningApiServer, api_client: k8s.ApiClient
) -> None:
    plural = f"gadgets{uuid.uuid4().hex[:6]}"
    name = f"{plural}.{GROUP}"
    since = current_version(apiserver)
    k8s.ApiextensionsV1Api(api_client).create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": GROUP,
                "scope": "Namespaced",
                "names": {"plural": plural, "kind": "Gadget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": {"type": "object"}},
                    }
                ],
            },
        }
    )
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    wait_until(lambda: apiserver.request("GET", f"/apis/{GROUP}/v1").status == 200)
    events = [
        e for e in watch_events(apiserver, path, since) if e["object"]["metadata"]["name"] == name
    ]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED"]
    added, established = events
    assert "conditions" not in (added["object"].get("status") or {})
    assert {c["type"] for c in established["object"]["status"]["conditions"]} >= {"Established"}
    assert int(established["object"]["metadata"]["resourceVersion"]) > int(
        added["object"]["metadata"]["resourceVersion"]
    )
    stored = apiserver.request("GET", f"{path}/{name}").json()
    assert stored["metadata"]["resourceVersion"] == established["object"]["metadata"][
        "resourceVersion"
    ]
    apiserver.request("DELETE", f"{path}/{name}")


def test_garbage_collector_and_finalizer_writes_each_bump_the_resource_version(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    since = current_version(apiserver)

    def owned(name: str, owner: Any, block: bool = False) -> dict[str, Any]:
        reference = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": owner.metadata.name,
            "uid": owner.metadata.uid,
            "blockOwnerDeletion": block,
        }
        return {"metadata": {"name": name, "ownerReferences": [reference]}}

    # Orphan: the owner gets the orphan finalizer, the collector rewrites the dependent's
    # ownerReferences and then removes the finalizer.
    orphan_owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "o-owner"}})
    core.create_namespaced_config_map(namespace, owned("o-child", orphan_owner))
    core.delete_namespaced_config_map("o-owner", namespace, body={"propagationPolicy": "Orphan"})
    # Foreground: the owner is marked, the collector deletes the dependent, then the owner.
    foreground_owner = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "f-owner"}}
    )
    core.create_namespaced_config_map(namespace, owned("f-child", foreground_owner, block=True))
    core.delete_namespaced_config_map(
        "f-owner", namespace, body={"propagationPolicy": "Foreground"}
    )

    def gone() -> bool:
        names = {i.metadata.name for i in core.list_namespaced_config_map(namespace).items}
        return not names & {"o-owner", "f-owner", "f-child"}

    wait_until(gone)
    events = watch_events(apiserver, f"/api/v1/namespaces/{namespace}/configmaps", since)
    assert_each_change_has_its_own_version(events, since)
    by_object: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for event in events:
        by_object.setdefault(event["object"]["metadata"]["name"], []).append(
            (event["type"], event["object"])
        )
    assert [t for t, _ in by_object["o-owner"]] == ["ADDED", "MODIFIED", "DELETED"]
    assert [t for t, _ in by_object["o-child"]] == ["ADDED", "MODIFIED"]
    assert "ownerReferences" not in by_object["o-child"][1][1]["metadata"]
    foreground = [t for t, _ in by_object["f-owner"]]
    assert foreground[0] == "ADDED" and foreground[-1] == "DELETED"
    for changes in by_object.values():
        # consecutive events of one object never show the same version for different content
        for (_, before), (_, after) in itertools.pairwise(changes):
            assert before["metadata"]["resourceVersion"] != after["metadata"]["resourceVersion"]


def test_namespace_termination_events_each_carry_a_new_resource_version(
    apiserver: RunningApiServer, api_client: k8s.ApiClient
) -> None:
    core = k8s.CoreV1Api(api_client)
    name = f"rv-{uuid.uuid4().hex[:8]}"
    since = current_version(apiserver)
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "content"}})
    wait_until(lambda: bool(core.list_namespaced_service_account(name).items))
    core.delete_namespace(name)

    def removed() -> bool:
        return name not in {n.metadata.name for n in core.list_namespace().items}

    wait_until(removed)
    events = [
        e
        for e in watch_events(apiserver, "/api/v1/namespaces", since)
        if e["object"]["metadata"]["name"] == name
    ]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"]["status"]["phase"] == "Terminating"
    assert_each_change_has_its_own_version(events, since)
    for plural in ("configmaps", "serviceaccounts"):
        path = f"/api/v1/namespaces/{name}/{plural}"
        content = watch_events(apiserver, path, since)
        assert [e["type"] for e in content] == ["ADDED", "DELETED"]
        assert_each_change_has_its_own_version(content, since)
