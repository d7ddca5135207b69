"""Kubernetes activities against clustersim's API server: idempotent applies, CRDs, the HF
token Secret, snapshots and restore, deletes. Each runs twice and the second run is a no-op."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

import manifests
from activities import kube
from k8s import owned_selector
from k8s.client import KubeClient
from k8s.snapshot import decode_snapshot
from spec.activity_io import (
    ApplyCrdsInput,
    ApplyModelServiceInput,
    DeleteObjectsInput,
    EnsureNamespaceInput,
    FailureEvidence,
    HfTokenSecretInput,
    MarkLastKnownGoodInput,
    ObjectRef,
    RestoreInput,
    SnapshotInput,
    SnapshotLookupInput,
)
from spec.rollout import CrdBundle, EnvVar, HfToken, RolloutSpec
from tests.activities.conftest import SimCluster
from tests.activities.specs import apply_objects, demo_spec, environment, prepared


def versions(client: KubeClient, spec: RolloutSpec) -> dict[str, str]:
    found = {}
    for obj in manifests.render_model_service(spec):
        live = client.get(ObjectRef.of(obj))
        assert live is not None
        found[str(ObjectRef.of(obj))] = live["metadata"]["resourceVersion"]
    return found


def error_evidence(error: ApplicationError) -> FailureEvidence:
    found = FailureEvidence.from_details(error.details)
    assert found is not None
    return found


async def test_apply_model_service_twice_changes_nothing_the_second_time(
    kube_api: SimCluster,
) -> None:
    spec = await prepared(kube_api.kubeconfig, "apply-twice")
    env = environment()
    first = await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=spec))
    assert first.apply.count("created") == len(manifests.render_model_service(spec))
    client = kube_api.client()
    before = versions(client, spec)
    second = await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=spec))
    assert {o.action for o in second.apply.outcomes} == {"unchanged"}
    assert not second.apply.changed
    assert versions(client, spec) == before
    assert second.revision == first.revision == manifests.spec_revision(spec)


async def test_a_changed_role_reconfigures_only_what_changed(kube_api: SimCluster) -> None:
    spec = await prepared(kube_api.kubeconfig, "apply-change")
    env = environment()
    await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=spec, part="decode"))
    changed = spec.model_copy(
        update={
            "model_service": spec.model_service.model_copy(
                update={"vllm_image": "ghcr.io/llm-d/llm-d:v0.2.0"}
            )
        }
    )
    result = await env.run(
        kube.apply_model_service, ApplyModelServiceInput(spec=changed, part="decode", partition=1)
    )
    assert [o.action for o in result.apply.outcomes] == ["configured"]
    lws = kube_api.client().get(result.apply.outcomes[0].ref)
    assert lws is not None
    configuration = lws["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]
    assert configuration["partition"] == 1


async def test_namespace_and_crds_are_unchanged_on_a_second_run(kube_api: SimCluster) -> None:
    spec = await prepared(kube_api.kubeconfig, "crds-twice")
    env = environment()
    namespace = await env.run(kube.ensure_namespace, EnsureNamespaceInput(target=spec.target))
    assert [o.action for o in namespace.outcomes] == ["unchanged"]
    again = await env.run(
        kube.apply_crds,
        ApplyCrdsInput(
            target=spec.target, bundle=CrdBundle(version="v1.3.0"), bundle_name="gateway-api"
        ),
    )
    assert {o.action for o in again.apply.outcomes} == {"unchanged"}
    assert "gateways.gateway.networking.k8s.io" in again.established


async def test_crds_from_a_local_directory_and_already_installed_ones(
    kube_api: SimCluster, tmp_path: Any
) -> None:
    spec = await prepared(kube_api.kubeconfig, "crds-local")
    for crd in manifests.builtin_crds("inference-extension"):
        (tmp_path / f"{crd['metadata']['name']}.yaml").write_text(manifests.to_yaml([crd]))
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")
    env = environment()
    local = await env.run(
        kube.apply_crds,
        ApplyCrdsInput(
            target=spec.target,
            bundle=CrdBundle(version="v0.5.1", source=str(tmp_path)),
            bundle_name="inference-extension",
        ),
    )
    assert len(local.apply.outcomes) == 2
    checked = await env.run(
        kube.apply_crds,
        ApplyCrdsInput(
            target=spec.target,
            bundle=CrdBundle(version="v0.5.1", already_installed=True),
            bundle_name="inference-extension",
            expected=["inferencepools.inference.networking.x-k8s.io"],
        ),
    )
    assert checked.skipped and checked.established == [
        "inferencepools.inference.networking.x-k8s.io"
    ]


async def test_missing_crd_fails_with_missing_crd(kube_api: SimCluster) -> None:
    spec = demo_spec(kube_api.kubeconfig, "no-crd")
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "no-crd"},
    }
    with pytest.raises(ApplicationError) as raised:
        await apply_objects(spec.target, [widget])
    assert raised.value.type == "MissingCRD" and raised.value.non_retryable


async def test_a_field_owned_by_helm_is_a_conflict_unless_forced(kube_api: SimCluster) -> None:
    spec = await prepared(kube_api.kubeconfig, "conflicts")
    client = kube_api.client()
    helm_owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "infra-values", "namespace": "conflicts"},
        "data": {"gatewayClassName": "istio"},
    }
    client.request(
        "PATCH",
        "/api/v1/namespaces/conflicts/configmaps/infra-values",
        [("fieldManager", "helm")],
        body=helm_owned,
        content_type="application/apply-patch+yaml",
    )
    ours = {**helm_owned, "data": {"gatewayClassName": "kgateway"}}
    with pytest.raises(ApplicationError) as raised:
        await apply_objects(spec.target, [ours])
    assert raised.value.type == "ApplyConflict"
    assert "helm" in str(raised.value)
    assert error_evidence(raised.value).data["conflicts"]
    forced = await apply_objects(spec.target, [ours], force=True)
    assert [o.action for o in forced.outcomes] == ["configured"]


async def test_hf_token_secret_never_shows_its_value(
    kube_api: SimCluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    token_value = "hf_KnownTestTokenValue0123456789"
    monkeypatch.setenv("LLMD_TEST_HF_TOKEN", token_value)
    spec = await prepared(kube_api.kubeconfig, "secrets")
    token = HfToken(from_env="LLMD_TEST_HF_TOKEN")
    request = HfTokenSecretInput(target=spec.target, hf_token=token)
    heartbeats: list[Any] = []
    env = environment(heartbeats)
    caplog.set_level(logging.DEBUG)
    created = await env.run(kube.ensure_hf_token_secret, request)
    again = await env.run(kube.ensure_hf_token_secret, request)
    assert (created.action, again.action) == ("created", "unchanged")
    verified = await env.run(
        kube.ensure_hf_token_secret,
        HfTokenSecretInput(target=spec.target, hf_token=HfToken(existing_secret=True)),
    )
    assert verified.action == "verified"
    monkeypatch.setenv("LLMD_TEST_HF_TOKEN", token_value + "-rotated")
    rotated = await env.run(kube.ensure_hf_token_secret, request)
    assert rotated.action == "configured"
    # The rest of a rollout's objects, and their snapshot, only name the Secret.
    applied = await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=spec))
    snapshot = await env.run(
        kube.snapshot_objects,
        SnapshotInput(target=spec.target, rollout="wide-ep", revision="s1", spec=spec),
    )
    stored = kube_api.client().get(
        ObjectRef(api_version="v1", kind="ConfigMap", name=snapshot.config_map, namespace="secrets")
    )
    objects = decode_snapshot(stored or {})
    assert snapshot.spec == spec
    everything = " ".join(
        [
            json.dumps((stored or {}).get("data")),
            request.model_dump_json(),
            created.model_dump_json(),
            again.model_dump_json(),
            rotated.model_dump_json(),
            applied.model_dump_json(),
            snapshot.model_dump_json(),
            json.dumps(objects),
            repr(heartbeats),
            caplog.text,
        ]
    )
    encoded = base64.b64encode(token_value.encode()).decode()
    assert token_value not in everything and encoded not in everything
    monkeypatch.delenv("LLMD_TEST_HF_TOKEN")
    with pytest.raises(ApplicationError) as raised:
        await env.run(kube.ensure_hf_token_secret, request)
    assert raised.value.type == "SecretMissing"
    assert token_value not in str(raised.value) + repr(raised.value.details)
    assert os.environ.get("LLMD_TEST_HF_TOKEN") is None


async def test_an_existing_secret_without_the_key_is_refused(kube_api: SimCluster) -> None:
    spec = await prepared(kube_api.kubeconfig, "secret-key")
    kube_api.client().apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "llm-d-hf-token", "namespace": "secret-key"},
            "data": {"OTHER": "eA=="},
        },
        force=False,
    )
    with pytest.raises(ApplicationError) as raised:
        await environment().run(
            kube.ensure_hf_token_secret,
            HfTokenSecretInput(target=spec.target, hf_token=HfToken(existing_secret=True)),
        )
    assert raised.value.type == "SecretMissing" and "HF_TOKEN" in str(raised.value)


async def test_restore_returns_to_the_snapshot_and_deletes_what_came_after(
    kube_api: SimCluster,
) -> None:
    spec = await prepared(kube_api.kubeconfig, "restore")
    env = environment()
    await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=spec))
    good = manifests.spec_revision(spec)
    taking = SnapshotInput(target=spec.target, rollout="wide-ep", revision=good, spec=spec)
    snapshot = await env.run(kube.snapshot_objects, taking)
    assert snapshot.action == "created" and len(snapshot.objects) == len(
        manifests.render_model_service(spec)
    )
    again = await env.run(kube.snapshot_objects, taking)
    assert again.action == "unchanged"
    marked = await env.run(
        kube.mark_last_known_good,
        MarkLastKnownGoodInput(target=spec.target, rollout="wide-ep", revision=good),
    )
    assert marked.revision == good and marked.spec == spec
    lookup = await env.run(
        kube.read_last_known_good, SnapshotLookupInput(target=spec.target, rollout="wide-ep")
    )
    assert lookup.revision == good and lookup.snapshot is not None
    # The spec comes back with the record: a rollback waits for the old version by its names.
    assert lookup.spec == spec and lookup.snapshot.spec == spec

    client = kube_api.client()
    decode = ObjectRef.of(manifests.render_role(spec, "decode"))
    original = client.get(decode)
    assert original is not None
    newer = spec.model_copy(
        update={
            "model_service": spec.model_service.model_copy(
                update={"vllm_image": "ghcr.io/llm-d/llm-d:v0.2.0"}
            )
        }
    )
    await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=newer))
    stray = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "added-later",
            "namespace": "restore",
            "labels": dict(label.split("=") for label in owned_selector("wide-ep").split(",")),
        },
    }
    await apply_objects(spec.target, [stray], force=True)

    restored = await env.run(
        kube.restore_snapshot, RestoreInput(target=spec.target, rollout="wide-ep")
    )
    assert restored.revision == good
    assert [o.ref.name for o in restored.deleted] == ["added-later"]
    now = client.get(decode)
    assert now is not None
    container = now["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
    assert container["image"] == spec.model_service.vllm_image
    assert client.get(ObjectRef.of({**stray, "apiVersion": "v1"})) is None

    second = await env.run(
        kube.restore_snapshot, RestoreInput(target=spec.target, rollout="wide-ep")
    )
    assert not second.changed


LWS_API = "leaderworkerset.x-k8s.io/v1"


def with_image(spec: RolloutSpec, image: str, **decode: Any) -> RolloutSpec:
    service = spec.model_service
    return spec.model_copy(
        update={
            "model_service": service.model_copy(
                update={"vllm_image": image, "decode": service.decode.model_copy(update=decode)}
            )
        }
    )


def comparable(obj: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """A live object without what differs between two equal histories of writes: identity
    (uid, creation time), versions (resourceVersion, generation), timestamps of managedFields,
    allocated cluster IPs; `renames` map one namespace's names and revisions to the other's."""
    text = json.dumps(obj, sort_keys=True)
    for old, new in renames.items():
        text = text.replace(old, new)
    clean: dict[str, Any] = json.loads(text)
    metadata = clean["metadata"]
    for key in ("uid", "resourceVersion", "generation", "creationTimestamp"):
        metadata.pop(key, None)
    for entry in metadata.get("managedFields") or []:
        entry.pop("time", None)
    metadata["managedFields"] = sorted(
        metadata.get("managedFields") or [], key=lambda e: (e["manager"], e["operation"])
    )
    for key in ("clusterIP", "clusterIPs"):
        (clean.get("spec") or {}).pop(key, None)
    return clean


def owned_by_us(obj: dict[str, Any]) -> dict[str, Any]:
    for entry in obj["metadata"].get("managedFields") or []:
        if entry["manager"] == "llmd-rollout" and entry["operation"] == "Apply":
            fields: dict[str, Any] = entry["fieldsV1"]
            return fields
    raise AssertionError(f"llmd-rollout applied nothing to {ObjectRef.of(obj)}")


async def test_after_a_restore_the_next_apply_succeeds_as_after_a_direct_upgrade(
    kube_api: SimCluster,
) -> None:
    """v1 -> snapshot -> v2 -> restore -> v3 leaves every object (and who owns each field)
    as v1 -> v3 does: the restore takes no ownership of fields the server defaulted, e.g. the
    LWS webhook's networkConfig.subdomainPolicy, which v3's apply would otherwise try to remove
    (and the webhook refuse: ApplyRejected)."""
    env = environment()
    client = kube_api.client()
    rolled = await prepared(kube_api.kubeconfig, "rolled-back")
    direct = await prepared(kube_api.kubeconfig, "upgraded")
    extra = [EnvVar(name="V2_ONLY", value="1")]

    def versions(spec: RolloutSpec) -> tuple[RolloutSpec, RolloutSpec, RolloutSpec]:
        return (
            spec,
            with_image(spec, "ghcr.io/llm-d/llm-d:v0.2.0", env=extra, replicas=2),
            with_image(spec, "ghcr.io/llm-d/llm-d:v0.3.0"),
        )

    v1, v2, v3 = versions(rolled)
    await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=v1, partition=0))
    good = manifests.spec_revision(v1)
    await env.run(
        kube.snapshot_objects,
        SnapshotInput(target=v1.target, rollout="wide-ep", revision=good, spec=v1),
    )
    decode = ObjectRef.of(manifests.render_role(v1, "decode"))
    before = client.get(decode)
    assert before is not None
    # The webhook defaulted it; it is nobody's applied configuration.
    assert before["spec"]["networkConfig"]["subdomainPolicy"] == "Shared"
    assert "f:networkConfig" not in owned_by_us(before)["f:spec"]

    await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=v2, partition=0))
    restored = await env.run(
        kube.restore_snapshot, RestoreInput(target=v1.target, rollout="wide-ep", revision=good)
    )
    assert restored.apply.count("configured") >= 1
    after_restore = client.get(decode)
    assert after_restore is not None
    # Back to v1, owned exactly as v1's apply left it.
    assert owned_by_us(after_restore) == owned_by_us(before)
    assert comparable(after_restore, {}) == comparable(before, {})

    upgraded = await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=v3, partition=0))
    assert upgraded.apply.changed

    d1, _, d3 = versions(direct)
    await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=d1, partition=0))
    await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=d3, partition=0))
    renames = {
        manifests.spec_revision(v3): manifests.spec_revision(d3),
        "rolled-back": "upgraded",
    }
    for rendered in manifests.render_model_service(v3):
        ref = ObjectRef.of(rendered)
        ours = client.get(ref)
        theirs = client.get(ref.model_copy(update={"namespace": "upgraded"}))
        assert ours is not None and theirs is not None, ref
        assert comparable(ours, renames) == comparable(theirs, {}), ref


async def test_delete_by_rollout_waits_until_gone_and_is_idempotent(kube_api: SimCluster) -> None:
    spec = await prepared(kube_api.kubeconfig, "deleting")
    env = environment()
    await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=spec))
    result = await env.run(
        kube.delete_objects, DeleteObjectsInput(target=spec.target, rollout="wide-ep")
    )
    assert result.changed and {o.action for o in result.outcomes} == {"deleted"}
    items, _ = kube_api.client().list_objects(
        "leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "deleting", owned_selector("wide-ep")
    )
    assert items == []
    again = await env.run(
        kube.delete_objects, DeleteObjectsInput(target=spec.target, rollout="wide-ep")
    )
    assert not again.changed


@pytest.fixture
def crd_file_server(tmp_path: Any) -> Iterator[str]:
    """A loopback HTTP server handing out one multi-document CRD YAML file."""
    (tmp_path / "crds.yaml").write_text(manifests.to_yaml(manifests.builtin_crds("gateway-api")))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/crds.yaml"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


async def test_crds_from_a_yaml_url_are_fetched_and_applied(
    kube_api: SimCluster, crd_file_server: str
) -> None:
    spec = demo_spec(kube_api.kubeconfig, "crds-url")
    request = ApplyCrdsInput(
        target=spec.target,
        bundle=CrdBundle(version="v1.3.0", source=crd_file_server),
        bundle_name="gateway-api",
    )
    result = await environment().run(kube.apply_crds, request)
    assert "httproutes.gateway.networking.k8s.io" in result.established
    assert {o.action for o in result.apply.outcomes} <= {"created", "unchanged"}
    again = await environment().run(kube.apply_crds, request)
    assert not again.apply.changed
