"""When a LeaderWorkerSet rollout, a Gateway and an HTTPRoute are done."""

from __future__ import annotations

import copy

from k8s.readiness import (
    expected_pod_names,
    gateway_readiness,
    lws_state,
    on_revision,
    route_readiness,
)
from tests.activities.builders import LWS, leader_statefulset, lws, pod


def decode_pods(revision: str = "abc123", ready: bool = True) -> list[dict[str, object]]:
    return [
        pod(name=f"{LWS}-0", revision=revision, ready=ready),
        pod(name=f"{LWS}-0-1", revision=revision, ready=ready, worker=1),
    ]


def test_complete_when_every_pod_is_on_the_leaders_revision_and_ready() -> None:
    current = lws()
    state = lws_state(current, [leader_statefulset(current)], decode_pods())
    assert state.done, state.detail
    assert state.revision == "abc123"
    assert state.expected_pods == [f"{LWS}-0", f"{LWS}-0-1"]


def test_not_complete_while_the_controller_has_not_taken_up_the_new_template() -> None:
    current = lws()
    stale = leader_statefulset(current, revision="old999")
    stale["spec"]["template"]["spec"]["containers"][0]["image"] = "vllm:old"
    state = lws_state(current, [stale], decode_pods(revision="old999"))
    assert not state.done
    assert "not taken up" in state.detail


def test_not_complete_while_pods_of_the_old_revision_remain() -> None:
    current = lws()
    pods = [pod(name=f"{LWS}-0", ready=True), pod(name=f"{LWS}-0-1", revision="old999", ready=True)]
    state = lws_state(current, [leader_statefulset(current)], pods)
    assert not state.done and "1/2 pods on revision abc123" in state.detail


def test_not_complete_until_available_and_ready() -> None:
    current = lws(available=False, ready=0)
    assert not lws_state(current, [leader_statefulset(current)], decode_pods()).done
    current = lws()
    assert not lws_state(current, [leader_statefulset(current)], decode_pods(ready=False)).done
    assert lws_state(
        current, [leader_statefulset(current)], decode_pods(ready=False), require_pods_ready=False
    ).done


def test_terminating_pods_do_not_count() -> None:
    current = lws()
    pods = decode_pods()
    pods[1] = pod(name=f"{LWS}-0-1", ready=True, worker=1, deleting=True)
    assert not lws_state(current, [leader_statefulset(current)], pods).done


def test_partition_only_asks_for_the_groups_at_or_above_it() -> None:
    assert expected_pod_names("lws", replicas=3, size=2, partition=2) == ["lws-2", "lws-2-1"]
    current = lws(replicas=3, updated=1, ready=3)
    pods = [
        pod(name="x", revision="old"),
        pod(name=f"{LWS}-2", ready=True, group=2),
        pod(name=f"{LWS}-2-1", ready=True, group=2, worker=1),
    ]
    assert lws_state(current, [leader_statefulset(current)], pods, partition=2).done
    assert not lws_state(current, [leader_statefulset(current)], pods, partition=0).done


def test_observed_generation_is_used_when_published() -> None:
    current = lws(generation=3)
    current["status"]["observedGeneration"] = 2
    assert not lws_state(current, [leader_statefulset(current)], decode_pods()).done
    current["status"]["observedGeneration"] = 3
    assert lws_state(current, [leader_statefulset(current)], decode_pods()).done


def gateway(programmed: str, accepted: str = "True", reason: str = "Accepted") -> dict[str, object]:
    return {
        "metadata": {"name": "infra-wide-ep-inference-gateway", "generation": 1},
        "status": {
            "conditions": [
                {"type": "Accepted", "status": accepted, "reason": reason, "observedGeneration": 1},
                {
                    "type": "Programmed",
                    "status": programmed,
                    "reason": "Programmed",
                    "observedGeneration": 1,
                },
            ]
        },
    }


def test_gateway_programmed_and_permanent_rejection() -> None:
    assert gateway_readiness(gateway("True")).done
    assert not gateway_readiness(gateway("False")).done
    rejected = gateway_readiness(gateway("False", "False", "InvalidParameters"))
    assert rejected.failure is not None
    stale = copy.deepcopy(gateway("True"))
    stale["metadata"]["generation"] = 2  # type: ignore[index]
    assert not gateway_readiness(stale).done


def route(accepted: str, resolved: str, reason: str = "ResolvedRefs") -> dict[str, object]:
    return {
        "metadata": {"name": "ms-wide-ep-llm-d-modelservice"},
        "spec": {"parentRefs": [{"name": "infra-wide-ep-inference-gateway"}]},
        "status": {
            "parents": [
                {
                    "parentRef": {"name": "infra-wide-ep-inference-gateway"},
                    "conditions": [
                        {"type": "Accepted", "status": accepted, "reason": "Accepted"},
                        {"type": "ResolvedRefs", "status": resolved, "reason": reason},
                    ],
                }
            ]
        },
    }


def test_route_needs_both_conditions_on_every_parent() -> None:
    assert route_readiness(route("True", "True")).done
    assert not route_readiness(route("True", "False", "BackendNotFound")).done
    assert route_readiness(route("True", "False", "BackendNotFound")).failure is None
    invalid = route_readiness(route("True", "False", "InvalidKind"))
    assert invalid.failure is not None and "InvalidKind" in invalid.failure
    assert not route_readiness(
        {"metadata": {"name": "r"}, "spec": {"parentRefs": [{"name": "g"}]}}
    ).done


def test_only_the_pods_of_the_revision_waited_for_can_fail_the_wait() -> None:
    """A rollback waits for the restored revision while the undone one's pods still crash."""
    restored = decode_pods("good11")
    undone = [pod(name=f"{LWS}-1", revision="bad999", ready=False)]
    assert on_revision(restored + undone, "good11") == restored
    assert on_revision(restored + undone, "bad999") == undone
    assert on_revision(restored + undone, None) == []
