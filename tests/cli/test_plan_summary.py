"""The plan's summary, from live and rendered objects (no cluster): bookkeeping apart from real
changes, image changes by role, GPUs more or fewer."""

from __future__ import annotations

import copy
from typing import Any

from cli.plansummary import gpu_text, gpus, image_changes, is_bookkeeping
from manifests.labels import SPEC_REVISION_ANNOTATION

OLD = "ghcr.io/llm-d/llm-d:v0.2.0"
NEW = "ghcr.io/llm-d/llm-d:v0.2.1"


def lws(role: str, image: str, revision: str, replicas: int = 1) -> dict[str, Any]:
    def template(gpu: int) -> dict[str, Any]:
        return {
            "metadata": {"annotations": {SPEC_REVISION_ANNOTATION: revision}},
            "spec": {"containers": [
                {"name": "vllm", "image": image,
                 "resources": {"limits": {"nvidia.com/gpu": str(gpu)}}},
            ]},
        }

    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {
            "name": f"ms-{role}", "annotations": {SPEC_REVISION_ANNOTATION: revision},
            "labels": {"llm-d.ai/role": role},
        },
        "spec": {"replicas": replicas, "leaderWorkerTemplate": {
            "size": 2, "workerTemplate": template(4),
        }},
    }


def test_only_the_revision_annotation_is_bookkeeping_wherever_it_sits() -> None:
    before = lws("decode", OLD, "aaaa")
    after = lws("decode", OLD, "bbbb")
    changed = lws("decode", NEW, "bbbb")
    extra = copy.deepcopy(after)
    extra["metadata"]["annotations"]["team"] = "serving"

    assert is_bookkeeping(before, after)
    assert not is_bookkeeping(before, changed)
    assert not is_bookkeeping(before, extra)
    assert not is_bookkeeping(before, before)


def test_image_changes_are_grouped_by_image_and_named_by_role() -> None:
    pairs = [
        (lws("decode", OLD, "a"), lws("decode", NEW, "b")),
        (lws("prefill", OLD, "a"), lws("prefill", NEW, "b")),
        ({}, lws("extra", NEW, "b")),
    ]

    [change] = image_changes(pairs)

    assert change.text() == f"image {OLD} → v0.2.1 in decode, prefill"
    other = image_changes([(lws("decode", OLD, "a"), lws("decode", "quay.io/x/vllm:1", "b"))])
    assert other[0].text() == f"image {OLD} → quay.io/x/vllm:1 in decode"


def test_gpus_of_a_leader_worker_set_and_the_delta_in_words() -> None:
    assert gpus(lws("decode", OLD, "a")) == 8
    assert gpus(lws("decode", OLD, "a", replicas=3)) == 24
    assert gpus({}) == 0
    assert gpus({"kind": "Service"}) == 0
    assert (gpu_text(0), gpu_text(8), gpu_text(-1)) == ("0 GPUs more", "8 GPUs more",
                                                       "1 GPU fewer")
