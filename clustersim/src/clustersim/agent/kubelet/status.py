"""The v1.PodStatus a kubelet reports for a pod worker: phase, conditions, IPs, containers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clustersim.agent.fit import container_requests
from clustersim.agent.meta import KubeObject, find_condition, rfc3339, set_condition
from clustersim.agent.quantity import parse_resource_list

if TYPE_CHECKING:
    from clustersim.agent.kubelet.podworker import PodWorker


def qos_class(pod: KubeObject) -> str:
    """Guaranteed, Burstable or BestEffort, from requests and limits of cpu and memory."""
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for container in containers:
        limits = parse_resource_list((container.get("resources") or {}).get("limits"))
        requests = container_requests(container)
        for name in ("cpu", "memory"):
            any_set = any_set or name in requests
            if name not in limits or requests.get(name) != limits[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _phase(worker: PodWorker) -> str:
    if worker.failed is not None:
        return "Failed"
    if not worker.initialized:
        return "Pending"
    main = worker.main
    terminated = [c for c in main if "terminated" in c.state]
    if worker.restart_policy != "Always" and main and len(terminated) == len(main):
        if all(c.state["terminated"].get("exitCode") == 0 for c in terminated):
            return "Succeeded"
        if worker.restart_policy == "Never":
            return "Failed"
    if any(c.started_once for c in main):
        return "Running"
    return "Pending"


def pod_status(worker: PodWorker) -> KubeObject:
    conditions = worker.conditions
    scheduled = find_condition((worker.pod.get("status") or {}).get("conditions"), "PodScheduled")
    set_condition(
        conditions, "PodReadyToStartContainers", "True" if worker.sandbox_ready else "False", "", ""
    )
    if worker.initialized:
        set_condition(conditions, "Initialized", "True", "", "")
    else:
        waiting = [c.name for c in worker.init if not (c.completed or c.started)]
        set_condition(
            conditions,
            "Initialized",
            "False",
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(waiting)}]",
        )
    unready = [
        c.name for c in worker.main + [i for i in worker.init if i.is_sidecar] if not c.ready
    ]
    if not unready and worker.initialized:
        for kind in ("ContainersReady", "Ready"):
            set_condition(conditions, kind, "True", "", "")
    else:
        message = f"containers with unready status: [{' '.join(unready)}]"
        for kind in ("ContainersReady", "Ready"):
            set_condition(conditions, kind, "False", "ContainersNotReady", message)
    rendered = [{k: v for k, v in c.items() if v != ""} for c in conditions]
    # The pod is bound to this node, so it is scheduled whatever our copy of it says yet.
    if scheduled is None or scheduled.get("status") != "True":
        scheduled = {
            "type": "PodScheduled",
            "status": "True",
            "lastTransitionTime": worker.start_time or rfc3339(),
        }
    rendered.append(scheduled)
    status: KubeObject = {
        "phase": _phase(worker),
        "conditions": rendered,
        "hostIP": worker.node.ip,
        "hostIPs": [{"ip": worker.node.ip}],
        "qosClass": qos_class(worker.pod),
        "containerStatuses": [c.status() for c in worker.main],
    }
    if worker.init:
        status["initContainerStatuses"] = [c.status() for c in worker.init]
    if worker.ip:
        status["podIP"] = worker.ip
        status["podIPs"] = [{"ip": worker.ip}]
    if worker.start_time:
        status["startTime"] = worker.start_time
    if worker.failed is not None:
        status["reason"], status["message"] = worker.failed
    return status
