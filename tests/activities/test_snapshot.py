"""Snapshot encoding: what is kept, what the API server owns is dropped, and it reads back."""

from __future__ import annotations

from typing import Any

import pytest

from activities.snapshot import (
    SnapshotError,
    decode_snapshot,
    dns_name,
    encode_snapshot,
    last_known_good,
    restorable,
    snapshot_digest,
)

LIVE_SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "ms-wide-ep-llm-d-modelservice-epp",
        "namespace": "llm-d-wide-ep",
        "uid": "0f1c",
        "resourceVersion": "812",
        "generation": 1,
        "creationTimestamp": "2025-07-26T10:00:00Z",
        "managedFields": [{"manager": "llmd-rollout"}],
        "labels": {"app.kubernetes.io/managed-by": "llmd-rollout"},
        "annotations": {"llmd-rollout.llm-d.ai/spec-revision": "a1b2c3"},
    },
    "spec": {"clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"], "ports": [{"port": 9002}]},
    "status": {"loadBalancer": {}},
}
LIVE_LWS: dict[str, Any] = {
    "apiVersion": "leaderworkerset.x-k8s.io/v1",
    "kind": "LeaderWorkerSet",
    "metadata": {"name": "decode", "namespace": "llm-d-wide-ep", "resourceVersion": "900"},
    "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 2}},
    "status": {"readyReplicas": 1},
}


def test_restorable_drops_what_the_server_owns() -> None:
    clean = restorable(LIVE_SERVICE)
    assert set(clean["metadata"]) == {"name", "namespace", "labels", "annotations"}
    assert "status" not in clean
    assert clean["spec"] == {"ports": [{"port": 9002}]}
    assert LIVE_SERVICE["metadata"]["uid"] == "0f1c"  # the input is not modified


def test_snapshot_round_trips_and_its_digest_ignores_server_fields() -> None:
    config_map = encode_snapshot("wide-ep", "a1b2c3", "llm-d-wide-ep", [LIVE_LWS, LIVE_SERVICE])
    assert config_map["metadata"]["name"] == "llmd-rollout-snapshot-wide-ep-a1b2c3"
    assert config_map["data"]["revision"] == "a1b2c3"
    objects = decode_snapshot(config_map)
    assert [o["kind"] for o in objects] == ["LeaderWorkerSet", "Service"]
    bumped = {**LIVE_LWS, "metadata": {**LIVE_LWS["metadata"], "resourceVersion": "901"}}
    again = encode_snapshot("wide-ep", "a1b2c3", "llm-d-wide-ep", [LIVE_SERVICE, bumped])
    assert snapshot_digest(again) == snapshot_digest(config_map)
    changed = {**LIVE_LWS, "spec": {"replicas": 2, "leaderWorkerTemplate": {"size": 2}}}
    other = encode_snapshot("wide-ep", "a1b2c3", "llm-d-wide-ep", [LIVE_SERVICE, changed])
    assert snapshot_digest(other) != snapshot_digest(config_map)


def test_a_config_map_that_is_not_a_snapshot_is_refused() -> None:
    with pytest.raises(SnapshotError):
        decode_snapshot({"metadata": {"name": "x"}, "data": {}})
    with pytest.raises(SnapshotError):
        decode_snapshot({"metadata": {"name": "x"}, "binaryData": {"objects.json.gz": "bm90Z3o="}})


def test_names_are_dns_safe_and_the_pointer_names_its_snapshot() -> None:
    assert (
        dns_name("llmd-rollout-snapshot", "Wide_EP", "v1.2") == "llmd-rollout-snapshot-wide-ep-v1.2"
    )
    pointer = last_known_good("wide-ep", "a1b2c3", "llm-d-wide-ep")
    assert pointer["metadata"]["name"] == "llmd-rollout-last-known-good-wide-ep"
    assert pointer["data"]["snapshot"] == "llmd-rollout-snapshot-wide-ep-a1b2c3"
