"""Shared watches: one informer per (cluster, kind, namespace) in a worker, many subscribers.

Against clustersim's API server: two waits on one collection share one watch and each sees only
what its selectors select; a subscriber joining a synced cache is woken at once; a cut stream
is resumed for all of them; the informer stops once its last subscriber has left and the linger
has passed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from activities import kube, waits
from k8s.client import KubeError
from k8s.informers import (
    SHARED,
    SharedInformers,
    Watched,
    cached_objects,
    connection_identity,
    matches,
    parse_selector,
)
from k8s.watching import Collection, Informer, Wakeup
from spec.activity_io import ApplyCrdsInput, EnsureNamespaceInput, WaitForObjectInput
from tests.activities.conftest import SimCluster
from tests.activities.specs import apply_objects, demo_spec
from tests.activities.test_api_faults import config_map, until


@pytest.fixture
def faults(kube_api: SimCluster) -> Iterator[SimCluster]:
    yield kube_api
    kube_api.api_fault("clear")


def labelled(namespace: str, name: str, team: str) -> dict[str, object]:
    document = config_map(namespace, name)
    document["metadata"] = {"name": name, "namespace": namespace, "labels": {"team": team}}
    return document


def test_equality_selectors_are_evaluated_and_set_based_ones_are_not() -> None:
    obj = {"metadata": {"name": "a", "labels": {"team": "x"}}}
    assert parse_selector("team=x, tier!=db") == [("team", "=", "x"), ("tier", "!=", "db")]
    assert parse_selector("team in (x,y)") is None
    assert matches(obj, [("team", "=", "x")], [("metadata.name", "=", "a")])
    assert not matches(obj, [("team", "!=", "x")], [])


async def test_two_waits_share_one_watch_and_each_sees_its_own_objects(
    faults: SimCluster,
) -> None:
    client = faults.client()
    namespace = "shared-watch"
    await ActivityEnvironment().run(
        kube.ensure_namespace, EnsureNamespaceInput(target=faults.target(namespace))
    )
    registry = SharedInformers(linger_seconds=0.2, namespaced_linger_seconds=0.2)
    red_wakeup, blue_wakeup = Wakeup(), Wakeup()
    red = registry.subscribe(client, Collection("v1", "ConfigMap", namespace, "team=red"),
                             red_wakeup.set)
    blue = registry.subscribe(client, Collection("v1", "ConfigMap", namespace, "team=blue"),
                              blue_wakeup.set)
    try:
        assert registry.watching() == 1
        faults.api_fault("--cut-watch-after", "1", "--verb", "watch", "--path", namespace)
        for index in range(3):
            client.apply(labelled(namespace, f"red-{index}", "red"), force=False)
            client.apply(labelled(namespace, f"blue-{index}", "blue"), force=False)
        await until(lambda: len(red.objects()) == 3, red_wakeup)
        await until(lambda: len(blue.objects()) == 3, blue_wakeup)
        assert {o["metadata"]["labels"]["team"] for o in red.objects()} == {"red"}
        assert blue.get(f"{namespace}/red-0") is None
        assert blue.get(f"{namespace}/blue-0") is not None

        late_wakeup = Wakeup()
        late = registry.subscribe(client, Collection("v1", "ConfigMap", namespace),
                                  late_wakeup.set)
        assert registry.watching() == 1
        assert await late_wakeup.wait(5.0)  # the cache is synced: woken at once
        assert len([o for o in late.objects() if "labels" in o["metadata"]]) == 6
        late.stop()
    finally:
        red.stop()
        blue.stop()
    stopped = Wakeup()
    await until(lambda: registry.watching() == 0, stopped, timeout=5.0)


async def test_reads_from_the_shared_cache_list_once_and_a_refused_watch_is_an_error(
    faults: SimCluster,
) -> None:
    """Preflight's nodes and pods (k8s.informers.cached_objects; namespaces here, the API server
    alone has no nodes): many reads, one list; a watch the API server refuses after its list
    raises (never stale objects), and once the refusal is gone the next read gets a fresh
    informer."""
    client = faults.client()
    await ActivityEnvironment().run(
        kube.ensure_namespace, EnsureNamespaceInput(target=faults.target("cached-read"))
    )
    namespaces = Collection("v1", "Namespace")
    first = cached_objects(client, namespaces)
    assert "cached-read" in {n["metadata"]["name"] for n in first}
    assert all(n["kind"] == "Namespace" for n in first)
    key = (connection_identity(client), "v1", "Namespace", "")
    informer = SHARED._informers[key].informer
    for _ in range(5):
        assert len(cached_objects(client, namespaces)) == len(first)
    assert SHARED._informers[key].informer is informer and informer.relists == 1

    faults.api_fault("--error", "403", "--verb", "watch", "--path", "^/api/v1/namespaces$")
    informer.stop()  # the next read starts a new informer, whose watch is refused
    SHARED._informers.pop(key)
    with pytest.raises(KubeError) as refused:
        for _ in range(50):  # the refusal lands a moment after the list
            cached_objects(client, namespaces)
            time.sleep(0.05)
    assert refused.value.status == 403

    faults.api_fault("clear")
    assert len(cached_objects(client, namespaces)) == len(first)


async def config_map_informers(
    sim: SimCluster, prefix: str, count: int, linger_seconds: float
) -> tuple[SharedInformers, list[Watched], list[Informer]]:
    """A registry of its own with one subscription to the ConfigMaps of each of `count` new
    namespaces; its subscriptions and their informers."""
    client = sim.client()
    namespaces = [f"{prefix}-{index}" for index in range(count)]
    for namespace in namespaces:
        await ActivityEnvironment().run(
            kube.ensure_namespace, EnsureNamespaceInput(target=sim.target(namespace))
        )
    registry = SharedInformers(
        linger_seconds=linger_seconds, namespaced_linger_seconds=linger_seconds
    )
    watched = [
        registry.subscribe(client, Collection("v1", "ConfigMap", namespace), lambda: None)
        for namespace in namespaces
    ]
    return registry, watched, [shared.informer for shared in registry._informers.values()]


async def test_informers_left_by_their_last_subscriber_are_retired_by_one_thread(
    faults: SimCluster,
) -> None:
    """Fifty rollouts, each in its namespace, left some 180 idle informers at once: a timer
    thread each. One thread retires them all after the linger, then ends."""
    registry, watched, informers = await config_map_informers(faults, "retire", 5, 0.5)
    # Subscribing starts watch threads only; the retirer is started by the last leaving.
    threads_before = {thread.ident for thread in threading.enumerate()}
    for subscription in watched:
        subscription.stop()

    waiting = [
        thread for thread in threading.enumerate()
        if thread.ident not in threads_before and not thread.name.startswith("watch-")
    ]
    assert [thread.name for thread in waiting] == ["informer-retirer"]
    assert registry.watching() == 5
    stopped = Wakeup()
    await until(lambda: registry.watching() == 0, stopped, timeout=5.0)
    waiting[0].join(5.0)
    assert not waiting[0].is_alive()
    for informer in informers:
        informer.join(5.0)
        assert not informer._thread.is_alive()


async def test_stop_all_ends_every_watch_thread_subscribed_or_lingering(
    faults: SimCluster,
) -> None:
    """At the process's end (the worker's shutdown): none is left reading while the interpreter
    finalizes, neither one a wait still holds nor one lingering after its last wait."""
    registry, watched, informers = await config_map_informers(faults, "stop-all", 3, 60.0)
    await until(lambda: all(informer.synced for informer in informers), Wakeup(), timeout=5.0)
    watched[0].stop()  # lingering for a minute; the other two still subscribed

    assert registry.stop_all(timeout=5.0) == []
    assert registry.watching() == 0
    assert not any(informer.running for informer in informers)


async def test_a_namespaced_watch_lingers_less_than_a_cluster_wide_one(
    faults: SimCluster,
) -> None:
    """Each target has its own namespace's watches, whose next wait comes at once or not at all
    (fifty targets kept 275 lingering at once); the few cluster-wide ones, nodes or CRDs, serve
    every target and stay for the next."""
    namespace = "short-linger"
    client = faults.client()
    await ActivityEnvironment().run(
        kube.ensure_namespace, EnsureNamespaceInput(target=faults.target(namespace))
    )
    registry = SharedInformers(linger_seconds=60.0, namespaced_linger_seconds=0.2)
    left = [
        registry.subscribe(client, Collection("v1", "ConfigMap", namespace), lambda: None),
        registry.subscribe(client, Collection("v1", "Namespace"), lambda: None),
    ]
    try:
        for subscription in left:
            subscription.stop()
        assert registry.watching() == 2
        await until(lambda: registry.watching() == 1, Wakeup(), timeout=5.0)
        assert [key[2:] for key in registry._informers] == [("Namespace", "")]
    finally:
        registry.stop_all(timeout=5.0)


async def test_a_wait_whose_object_is_ready_at_first_look_starts_no_watch(
    faults: SimCluster,
) -> None:
    """A rollout with nothing to change waits for objects that are already ready: one LIST
    answers, and no watch of the namespace starts (fifty such rollouts kept ~290 watch threads
    open). An object not ready at first look is followed by the shared informer: see
    test_api_faults.test_gateway_wait_sees_programmed_through_cut_streams_and_errors."""
    namespace = "first-look"
    spec = demo_spec(faults.kubeconfig, namespace)
    env = ActivityEnvironment()
    await env.run(kube.ensure_namespace, EnsureNamespaceInput(target=spec.target))
    await env.run(
        kube.apply_crds,
        ApplyCrdsInput(
            target=spec.target, bundle=spec.dependencies.gateway_api_crds, bundle_name="gateway-api"
        ),
    )
    name = "infra-wide-ep-inference-gateway"
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [{"name": "default", "port": 80, "protocol": "HTTP"}],
        },
    }
    await apply_objects(spec.target, [gateway])
    condition = {
        "status": "True", "message": "", "lastTransitionTime": "2025-07-26T10:00:00Z",
        "observedGeneration": 1,
    }
    faults.client().request(
        "PATCH",
        f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/gateways/{name}/status",
        [("fieldManager", "test-gateway-controller"), ("force", "true")],
        body={**gateway, "status": {"conditions": [
            {"type": kind, "reason": kind, **condition} for kind in ("Accepted", "Programmed")
        ]}},
        content_type="application/apply-patch+yaml",
    )

    result = await env.run(
        waits.wait_for_gateway,
        WaitForObjectInput(target=spec.target, name=name, timeout=timedelta(seconds=30)),
    )

    assert "Programmed=True" in result.detail
    # The shared informers' keys are (connection, apiVersion, kind, namespace).
    assert [key for key in SHARED._informers if key[3] == namespace] == []
