"""Every built-in kind the stack touches is served with the right scope and shape."""

from __future__ import annotations

import json

from apiserver_process import RunningApiServer
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException


def test_core_and_events_api_events_are_one_object_in_two_shapes(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"name": "pulled.1"},
            "involvedObject": {"kind": "Pod", "name": "decode-0", "namespace": namespace},
            "reason": "Pulled",
            "message": "Successfully pulled image",
            "type": "Normal",
            "source": {"component": "kubelet"},
            "count": 1,
        },
    )
    shown = apiserver.request(
        "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events/pulled.1"
    ).json()
    assert shown["apiVersion"] == "events.k8s.io/v1"
    assert shown["note"] == "Successfully pulled image"
    assert shown["regarding"]["name"] == "decode-0"
    assert shown["deprecatedSource"] == {"component": "kubelet"}
    selected = core.list_namespaced_event(namespace, field_selector="reason=Pulled")
    assert [e.metadata.name for e in selected.items] == ["pulled.1"]
    k8s.EventsV1Api(api_client).create_namespaced_event(
        namespace,
        {
            "metadata": {"name": "scheduled.1"},
            "eventTime": "2025-07-26T00:00:00.000000Z",
            "reportingController": "default-scheduler",
            "reportingInstance": "sched-1",
            "action": "Binding",
            "reason": "Scheduled",
            "type": "Normal",
            "regarding": {"kind": "Pod", "name": "decode-0", "namespace": namespace},
            "note": "Successfully assigned",
        },
    )
    as_core = core.read_namespaced_event("scheduled.1", namespace)
    assert as_core.message == "Successfully assigned"
    assert as_core.involved_object.name == "decode-0"


def test_cluster_scoped_and_namespaced_kinds(api_client: k8s.ApiClient, namespace: str) -> None:
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    rule = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    rbac.create_cluster_role({"metadata": {"name": f"{namespace}:reader"}, "rules": rule})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "reader"}, "rules": rule})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        },
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": f"{namespace}:reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{namespace}:reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        }
    )
    assert rbac.read_cluster_role(f"{namespace}:reader").metadata.namespace is None
    coordination = k8s.CoordinationV1Api(api_client)
    coordination.create_namespaced_lease(
        namespace,
        {
            "metadata": {"name": "leader"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
        },
    )
    assert coordination.read_namespaced_lease("leader", namespace).spec.holder_identity == "a"
    apps = k8s.AppsV1Api(api_client)
    apps.create_namespaced_controller_revision(
        namespace, {"metadata": {"name": "lws-abc"}, "revision": 1, "data": {"spec": {"x": 1}}}
    )
    assert apps.read_namespaced_controller_revision("lws-abc", namespace).revision == 1
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_endpoints(
        namespace,
        {
            "metadata": {"name": "svc"},
            "subsets": [{"addresses": [{"ip": "127.1.0.1"}], "ports": [{"port": 8000}]}],
        },
    )
    assert core.read_namespaced_endpoints("svc", namespace).subsets[0].ports[0].port == 8000
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "vllm"}})
    names = [a.metadata.name for a in core.list_namespaced_service_account(namespace).items]
    assert names == ["default", "vllm"]


def test_pods_need_their_service_account(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    pod = {
        "metadata": {"name": "p"},
        "spec": {
            "serviceAccountName": "missing",
            "containers": [{"name": "c", "image": "busybox:1"}],
        },
    }
    try:
        core.create_namespaced_pod(namespace, pod)
    except ApiException as error:
        assert error.status == 403
        assert 'serviceaccount "missing" not found' in json.loads(error.body)["message"]
    else:
        raise AssertionError("a pod with a missing service account was admitted")
    created = core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "q"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
        },
    )
    assert created.spec.service_account_name == "default"
    assert created.status.phase == "Pending" and created.status.qos_class == "BestEffort"
    assert created.metadata.generation == 1


def test_graceful_pod_deletion_waits_for_the_kubelet(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    core.create_node({"metadata": {"name": f"grace-{namespace}"}})
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "g"},
            "spec": {
                "nodeName": f"grace-{namespace}",
                "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "c", "image": "busybox:1.36"}],
            },
        },
    )
    core.delete_namespaced_pod("g", namespace)
    terminating = core.read_namespaced_pod("g", namespace)
    assert terminating.metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("g", namespace, grace_period_seconds=0)
    assert core.list_namespaced_pod(namespace).items == []
    core.delete_node(f"grace-{namespace}")
