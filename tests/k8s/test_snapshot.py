"""Snapshot encoding: what is kept, what the API server owns is dropped, and it reads back."""

from __future__ import annotations

from typing import Any

import pytest

from k8s.snapshot import (
    SnapshotError,
    applied_configuration,
    decode_snapshot,
    decode_spec,
    dns_name,
    encode_snapshot,
    holds_configuration,
    last_known_good,
    snapshot_digest,
)
from tests.activities.specs import example

OURS = "llmd-rollout"


def entry(manager: str, fields: dict[str, Any], operation: str = "Apply") -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "v1",
        "time": "2025-07-26T10:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }


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
        "labels": {"app.kubernetes.io/managed-by": "llmd-rollout", "added-by": "someone-else"},
        "annotations": {"llmd-rollout.llm-d.ai/spec-revision": "a1b2c3"},
        "managedFields": [
            entry(
                OURS,
                {
                    "f:metadata": {
                        "f:labels": {"f:app.kubernetes.io/managed-by": {}},
                        "f:annotations": {"f:llmd-rollout.llm-d.ai/spec-revision": {}},
                    },
                    "f:spec": {
                        "f:ports": {
                            'k:{"port":9002,"protocol":"TCP"}': {
                                ".": {},
                                "f:port": {},
                                "f:targetPort": {},
                            }
                        },
                        "f:selector": {},
                    },
                },
            ),
            entry("kubectl-label", {"f:metadata": {"f:labels": {"f:added-by": {}}}}, "Update"),
        ],
    },
    "spec": {
        # Defaulted or allocated by the server: nobody applied them.
        "clusterIP": "10.96.0.12",
        "clusterIPs": ["10.96.0.12"],
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "ports": [
            {"port": 9002, "protocol": "TCP", "targetPort": 9002},
            {"port": 9090, "protocol": "TCP", "targetPort": 9090, "name": "someone-elses"},
        ],
        "selector": {"app": "epp"},
    },
    "status": {"loadBalancer": {}},
}
LIVE_LWS: dict[str, Any] = {
    "apiVersion": "leaderworkerset.x-k8s.io/v1",
    "kind": "LeaderWorkerSet",
    "metadata": {
        "name": "decode",
        "namespace": "llm-d-wide-ep",
        "resourceVersion": "900",
        "finalizers": ["ours", "theirs"],
        "managedFields": [
            entry(
                OURS,
                {
                    "f:metadata": {"f:finalizers": {'v:"ours"': {}}},
                    "f:spec": {
                        "f:replicas": {},
                        "f:leaderWorkerTemplate": {
                            "f:size": {},
                            "f:workerTemplate": {"f:spec": {"f:containers": {}}},
                        },
                        "f:rolloutStrategy": {".": {}},
                    },
                },
            ),
            entry("lws-controller", {"f:status": {"f:readyReplicas": {}}}, "Update"),
        ],
    },
    "spec": {
        "replicas": 1,
        "leaderWorkerTemplate": {
            "size": 2,
            "workerTemplate": {
                "spec": {"containers": [{"name": "vllm", "image": "v1", "imagePullPolicy": "X"}]}
            },
        },
        "rolloutStrategy": {"type": "RollingUpdate", "rollingUpdateConfiguration": {}},
        "networkConfig": {"subdomainPolicy": "Shared"},
        "startupPolicy": "LeaderCreated",
    },
    "status": {"readyReplicas": 1},
}


def test_the_applied_configuration_is_what_our_field_manager_applied() -> None:
    service = applied_configuration(LIVE_SERVICE)
    assert service == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "ms-wide-ep-llm-d-modelservice-epp",
            "namespace": "llm-d-wide-ep",
            "labels": {"app.kubernetes.io/managed-by": "llmd-rollout"},
            "annotations": {"llmd-rollout.llm-d.ai/spec-revision": "a1b2c3"},
        },
        # Keyed list elements by key; clusterIP, type, other managers' ports are not ours.
        "spec": {
            "ports": [{"port": 9002, "protocol": "TCP", "targetPort": 9002}],
            "selector": {"app": "epp"},
        },
    }
    lws = applied_configuration(LIVE_LWS)
    # Atomic leaves whole, set elements by value, a bare `.` node empty, webhook defaults
    # (networkConfig, startupPolicy) and status left out.
    assert lws["metadata"] == {
        "name": "decode",
        "namespace": "llm-d-wide-ep",
        "finalizers": ["ours"],
    }
    assert lws["spec"] == {
        "replicas": 1,
        "leaderWorkerTemplate": {
            "size": 2,
            "workerTemplate": {
                "spec": {"containers": [{"name": "vllm", "image": "v1", "imagePullPolicy": "X"}]}
            },
        },
        "rolloutStrategy": {},
    }
    assert LIVE_SERVICE["metadata"]["uid"] == "0f1c"  # the input is not modified


def test_an_object_we_never_applied_is_kept_by_identity_only() -> None:
    foreign = {
        **LIVE_SERVICE,
        "metadata": {
            **LIVE_SERVICE["metadata"],
            "managedFields": [
                entry("kubectl", {"f:spec": {"f:selector": {}}}, "Update"),
                entry(OURS, {"f:spec": {"f:selector": {}}}, "Update"),
            ],
        },
    }
    extracted = applied_configuration(foreign)
    assert extracted == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ms-wide-ep-llm-d-modelservice-epp", "namespace": "llm-d-wide-ep"},
    }
    assert not holds_configuration(extracted)
    assert holds_configuration(applied_configuration(LIVE_SERVICE))


def test_a_keyed_element_matches_its_key_even_when_a_defaulted_key_field_is_absent() -> None:
    live = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "managedFields": [
                entry(
                    OURS,
                    {
                        "f:spec": {
                            "f:ports": {
                                'k:{"containerPort":8000,"protocol":"UDP"}': {
                                    ".": {},
                                    "f:containerPort": {},
                                    "f:protocol": {},
                                },
                                'k:{"containerPort":8000,"protocol":"TCP"}': {
                                    ".": {},
                                    "f:containerPort": {},
                                },
                            }
                        }
                    },
                )
            ],
        },
        "spec": {
            "ports": [
                {"containerPort": 8000},
                {"containerPort": 8000, "protocol": "UDP"},
                {"containerPort": 9000},
            ]
        },
    }
    assert applied_configuration(live)["spec"]["ports"] == [
        {"containerPort": 8000},
        {"containerPort": 8000, "protocol": "UDP"},
    ]


def test_snapshot_round_trips_and_its_digest_ignores_server_fields() -> None:
    config_map = encode_snapshot("wide-ep", "a1b2c3", "llm-d-wide-ep", [LIVE_LWS, LIVE_SERVICE])
    assert config_map["metadata"]["name"] == "llmd-rollout-snapshot-wide-ep-a1b2c3"
    assert config_map["data"]["revision"] == "a1b2c3"
    objects = decode_snapshot(config_map)
    assert [o["kind"] for o in objects] == ["LeaderWorkerSet", "Service"]
    bumped = {**LIVE_LWS, "metadata": {**LIVE_LWS["metadata"], "resourceVersion": "901"}}
    again = encode_snapshot("wide-ep", "a1b2c3", "llm-d-wide-ep", [LIVE_SERVICE, bumped])
    assert snapshot_digest(again) == snapshot_digest(config_map)
    changed = {**LIVE_LWS, "spec": {**LIVE_LWS["spec"], "replicas": 2}}
    other = encode_snapshot("wide-ep", "a1b2c3", "llm-d-wide-ep", [LIVE_SERVICE, changed])
    assert snapshot_digest(other) != snapshot_digest(config_map)
    # A field nobody applied (a webhook default, a controller's status) changes nothing.
    defaulted = {
        **LIVE_LWS,
        "spec": {**LIVE_LWS["spec"], "startupPolicy": "LeaderReady"},
        "status": {"readyReplicas": 0},
    }
    same = encode_snapshot("wide-ep", "a1b2c3", "llm-d-wide-ep", [LIVE_SERVICE, defaulted])
    assert snapshot_digest(same) == snapshot_digest(config_map)
    assert decode_spec(config_map) is None


def test_the_spec_is_stored_with_the_snapshot_and_counts_in_its_digest() -> None:
    spec = example("demo.yaml")
    without = encode_snapshot("wide-ep", "a1b2c3", "llm-d-wide-ep", [LIVE_LWS])
    stored = encode_snapshot("wide-ep", "a1b2c3", "llm-d-wide-ep", [LIVE_LWS], spec)
    assert decode_spec(stored) == spec
    assert snapshot_digest(stored) != snapshot_digest(without)
    other = spec.model_copy(
        update={
            "budgets": spec.budgets.model_copy(update={"model_load": spec.budgets.model_load * 2})
        }
    )
    assert snapshot_digest(
        encode_snapshot("wide-ep", "a1b2c3", "llm-d-wide-ep", [LIVE_LWS], other)
    ) != snapshot_digest(stored)
    broken = {**stored, "data": {**stored["data"], "spec.json": '{"kind": "Rollout"}'}}
    with pytest.raises(SnapshotError):
        decode_spec(broken)


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
