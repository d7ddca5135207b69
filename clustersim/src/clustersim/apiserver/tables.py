"""`meta.k8s.io/v1` Table answers for `kubectl get`: built-in columns and CRD printer columns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clustersim.apiserver.clock import human_age
from clustersim.apiserver.jsonpath import evaluate
from clustersim.apiserver.kinds import ResourceType
from clustersim.apiserver.objects import selector_string

JsonObject = dict[str, Any]
Cells = Callable[[JsonObject], list[Any]]

NAME_COLUMN = {"name": "Name", "type": "string", "format": "name", "priority": 0,
               "description": "Name must be unique within a namespace."}


def _column(name: str, kind: str = "string", priority: int = 0, description: str = "",
            fmt: str = "") -> JsonObject:
    return {"name": name, "type": kind, "format": fmt, "description": description or name,
            "priority": priority}


def _meta(obj: JsonObject) -> JsonObject:
    return obj.get("metadata") or {}


def _age(obj: JsonObject) -> str:
    return human_age(_meta(obj).get("creationTimestamp"))


def _name(obj: JsonObject) -> str:
    return str(_meta(obj).get("name", ""))


# -- pods ---------------------------------------------------------------------------------------


def _restartable(container: JsonObject | None) -> bool:
    """A native sidecar: an init container with `restartPolicy: Always`."""
    return bool(container) and (container or {}).get("restartPolicy") == "Always"


def _later(current: str, candidate: Any) -> str:
    # RFC 3339 UTC timestamps of one server compare in time order as strings
    return candidate if isinstance(candidate, str) and candidate > current else current


def _last_terminated(container: JsonObject) -> Any:
    return (((container.get("lastState") or {}).get("terminated")) or {}).get("finishedAt")


def _pod_cells(pod: JsonObject) -> list[Any]:
    """The row `kubectl get pods` shows, computed as the API server's pod printer does
    (printPod in pkg/printers/internalversion): native sidecars count in READY and RESTARTS."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    phase = status.get("phase") or ""
    reason = str(status.get("reason") or phase)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and \
                condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    total = len(spec.get("containers") or [])
    init_specs = {str(c.get("name")): c for c in spec.get("initContainers") or []}
    total += sum(1 for c in init_specs.values() if _restartable(c))
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart = ""
    last_sidecar_restart = ""
    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for index, container in enumerate(init_statuses):
        restarts += int(container.get("restartCount") or 0)
        last_restart = _later(last_restart, _last_terminated(container))
        sidecar = _restartable(init_specs.get(str(container.get("name"))))
        if sidecar:
            sidecar_restarts += int(container.get("restartCount") or 0)
            last_sidecar_restart = _later(last_sidecar_restart, _last_terminated(container))
        state = container.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting") or {}
        if terminated is not None and terminated.get("exitCode") == 0:
            continue
        if sidecar and container.get("started"):
            if container.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            if terminated.get("reason"):
                reason = "Init:" + str(terminated["reason"])
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode')}"
        elif waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + str(waiting["reason"])
        else:
            reason = f"Init:{index}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break
    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True"
                      for c in status.get("conditions") or [])
    if not initializing or initialized:
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        running = False
        for container in reversed(status.get("containerStatuses") or []):
            restarts += int(container.get("restartCount") or 0)
            last_restart = _later(last_restart, _last_terminated(container))
            state = container.get("state") or {}
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif terminated is not None and terminated.get("reason"):
                reason = str(terminated["reason"])
            elif terminated is not None:
                reason = f"Signal:{terminated['signal']}" if terminated.get("signal") else \
                    f"ExitCode:{terminated.get('exitCode')}"
            elif container.get("ready") and state.get("running") is not None:
                running = True
                ready += 1
        if reason == "Completed" and running:
            has_ready = any(c.get("type") == "Ready" for c in status.get("conditions") or [])
            reason = "Running" if has_ready else "NotReady"
    if _meta(pod).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    shown_restarts = str(restarts)
    if restarts and last_restart:
        shown_restarts = f"{restarts} ({human_age(last_restart)} ago)"
    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0].get("ip") if pod_ips else None) or status.get("podIP") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_shown = "<none>"
    if gates:
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        passing = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
        gates_shown = f"{passing}/{len(gates)}"
    return [_name(pod), f"{ready}/{total}", reason, shown_restarts, _age(pod), pod_ip,
            spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
            gates_shown]


def _pod_conditions(pod: JsonObject) -> list[JsonObject]:
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed",
                 "message": "The pod failed."}]
    return []


_POD_COLUMNS = [NAME_COLUMN, _column("Ready"), _column("Status"),
                _column("Restarts", "string"), _column("Age"),
                _column("IP", priority=1), _column("Node", priority=1),
                _column("Nominated Node", priority=1), _column("Readiness Gates", priority=1)]


# -- workloads ----------------------------------------------------------------------------------


def _containers(obj: JsonObject) -> tuple[str, str]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = spec.get("containers") or []
    return (",".join(str(c.get("name")) for c in containers),
            ",".join(str(c.get("image")) for c in containers))


def _deployment_cells(obj: JsonObject) -> list[Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    names, images = _containers(obj)
    return [_name(obj), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(obj),
            names, images, selector_string(spec.get("selector")) or "<none>"]


def _replicaset_cells(obj: JsonObject) -> list[Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    names, images = _containers(obj)
    return [_name(obj), spec.get("replicas", 0), status.get("replicas", 0),
            status.get("readyReplicas", 0), _age(obj), names, images,
            selector_string(spec.get("selector")) or "<none>"]


def _statefulset_cells(obj: JsonObject) -> list[Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    names, images = _containers(obj)
    return [_name(obj), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            _age(obj), names, images]


_WORKLOAD_WIDE = [_column("Containers", priority=1), _column("Images", priority=1)]
_SELECTOR_WIDE = [_column("Selector", priority=1)]


# -- everything else ----------------------------------------------------------------------------


def _service_cells(obj: JsonObject) -> list[Any]:
    spec = obj.get("spec") or {}
    ports = []
    for port in spec.get("ports") or []:
        text = str(port.get("port"))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        ports.append(f"{text}/{port.get('protocol', 'TCP')}")
    external = ",".join(spec.get("externalIPs") or []) or (
        spec.get("externalName") if spec.get("type") == "ExternalName" else "<none>")
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [_name(obj), spec.get("type", ""), spec.get("clusterIP") or "<none>", external,
            ",".join(ports) or "<none>", _age(obj), selector or "<none>"]


def _endpoints_cells(obj: JsonObject) -> list[Any]:
    addresses = []
    for subset in obj.get("subsets") or []:
        for address in subset.get("addresses") or []:
            for port in subset.get("ports") or [{}]:
                suffix = f":{port['port']}" if port.get("port") else ""
                addresses.append(f"{address.get('ip')}{suffix}")
    return [_name(obj), ",".join(addresses) or "<none>", _age(obj)]


def _endpointslice_cells(obj: JsonObject) -> list[Any]:
    ports = ",".join(str(p.get("port")) for p in obj.get("ports") or []) or "<unset>"
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    return [_name(obj), obj.get("addressType", ""), ports, ",".join(addresses) or "<unset>",
            _age(obj)]


def _node_cells(obj: JsonObject) -> list[Any]:
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = _meta(obj).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    info = status.get("nodeInfo") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    return [_name(obj), state, ",".join(roles) or "<none>", _age(obj),
            info.get("kubeletVersion", ""), addresses.get("InternalIP", "<none>"),
            addresses.get("ExternalIP", "<none>"), info.get("osImage", "<unknown>"),
            info.get("kernelVersion", "<unknown>"), info.get("containerRuntimeVersion", "")]


def _event_cells(obj: JsonObject) -> list[Any]:
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    last = obj.get("lastTimestamp") or obj.get("eventTime") or _meta(obj).get(
        "creationTimestamp")
    return [human_age(last), obj.get("type", ""), obj.get("reason", ""),
            f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
            obj.get("message") or obj.get("note") or ""]


def _revision_cells(obj: JsonObject) -> list[Any]:
    controller = "<none>"
    for reference in _meta(obj).get("ownerReferences") or []:
        if reference.get("controller"):
            group = str(reference.get("apiVersion", "")).split("/")[0]
            controller = f"{str(reference.get('kind')).lower()}.{group}/{reference.get('name')}"
    return [_name(obj), controller, obj.get("revision", 0), _age(obj)]


def _binding_cells(obj: JsonObject) -> list[Any]:
    role = obj.get("roleRef") or {}
    subjects = obj.get("subjects") or []

    def of(kind: str) -> str:
        return ",".join(
            (f"{s.get('namespace')}/{s.get('name')}" if kind == "ServiceAccount" else
             str(s.get("name"))) for s in subjects if s.get("kind") == kind)

    return [_name(obj), f"{role.get('kind')}/{role.get('name')}", _age(obj), of("User"),
            of("Group"), of("ServiceAccount")]


_BUILTIN: dict[str, tuple[list[JsonObject], Cells]] = {
    "Pod": (_POD_COLUMNS, _pod_cells),
    "Deployment": ([NAME_COLUMN, _column("Ready"), _column("Up-to-date", "integer"),
                    _column("Available", "integer"), _column("Age"), *_WORKLOAD_WIDE,
                    *_SELECTOR_WIDE], _deployment_cells),
    "ReplicaSet": ([NAME_COLUMN, _column("Desired", "integer"), _column("Current", "integer"),
                    _column("Ready", "integer"), _column("Age"), *_WORKLOAD_WIDE,
                    *_SELECTOR_WIDE], _replicaset_cells),
    "StatefulSet": ([NAME_COLUMN, _column("Ready"), _column("Age"), *_WORKLOAD_WIDE],
                    _statefulset_cells),
    "Service": ([NAME_COLUMN, _column("Type"), _column("Cluster-IP"), _column("External-IP"),
                 _column("Port(s)"), _column("Age"), *_SELECTOR_WIDE], _service_cells),
    "Endpoints": ([NAME_COLUMN, _column("Endpoints"), _column("Age")], _endpoints_cells),
    "EndpointSlice": ([NAME_COLUMN, _column("AddressType"), _column("Ports"),
                       _column("Endpoints"), _column("Age")], _endpointslice_cells),
    "Node": ([NAME_COLUMN, _column("Status"), _column("Roles"), _column("Age"),
              _column("Version"), _column("Internal-IP", priority=1),
              _column("External-IP", priority=1), _column("OS-Image", priority=1),
              _column("Kernel-Version", priority=1), _column("Container-Runtime", priority=1)],
             _node_cells),
    "Namespace": ([NAME_COLUMN, _column("Status"), _column("Age")],
                  lambda o: [_name(o), (o.get("status") or {}).get("phase", ""), _age(o)]),
    "ConfigMap": ([NAME_COLUMN, _column("Data", "integer"), _column("Age")],
                  lambda o: [_name(o), len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                             _age(o)]),
    "Secret": ([NAME_COLUMN, _column("Type"), _column("Data", "integer"), _column("Age")],
               lambda o: [_name(o), o.get("type", ""), len(o.get("data") or {}), _age(o)]),
    "ServiceAccount": ([NAME_COLUMN, _column("Secrets", "integer"), _column("Age")],
                       lambda o: [_name(o), len(o.get("secrets") or []), _age(o)]),
    "Event": ([_column("Last Seen"), _column("Type"), _column("Reason"), _column("Object"),
               _column("Message")], _event_cells),
    "ControllerRevision": ([NAME_COLUMN, _column("Controller"), _column("Revision", "integer"),
                            _column("Age")], _revision_cells),
    "RoleBinding": ([NAME_COLUMN, _column("Role"), _column("Age"),
                     _column("Users", priority=1), _column("Groups", priority=1),
                     _column("ServiceAccounts", priority=1)], _binding_cells),
    "ClusterRoleBinding": ([NAME_COLUMN, _column("Role"), _column("Age"),
                            _column("Users", priority=1), _column("Groups", priority=1),
                            _column("ServiceAccounts", priority=1)], _binding_cells),
    "Role": ([NAME_COLUMN, _column("Created At", "date")],
             lambda o: [_name(o), _meta(o).get("creationTimestamp")]),
    "ClusterRole": ([NAME_COLUMN, _column("Created At", "date")],
                    lambda o: [_name(o), _meta(o).get("creationTimestamp")]),
    "CustomResourceDefinition": ([NAME_COLUMN, _column("Created At", "date")],
                                 lambda o: [_name(o), _meta(o).get("creationTimestamp")]),
    "Lease": ([NAME_COLUMN, _column("Holder"), _column("Age")],
              lambda o: [_name(o), (o.get("spec") or {}).get("holderIdentity", ""), _age(o)]),
}


def _custom_cell(obj: JsonObject, column: JsonObject) -> Any:
    values = evaluate(obj, str(column.get("jsonPath", "")))
    if not values:
        return None
    # the CRD table convertor prints the first result only: `.items[*].name` shows the first
    # name, as kubectl does against a real server
    value = values[0]
    if column.get("type") == "date" and isinstance(value, str):
        return human_age(value)
    return value


def _custom_columns(resource: ResourceType) -> tuple[list[JsonObject], Cells]:
    printer = resource.printer_columns or [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    columns = [NAME_COLUMN] + [
        _column(str(c.get("name")), str(c.get("type", "string")), int(c.get("priority", 0)),
                str(c.get("description", "")), str(c.get("format", "")))
        for c in printer]

    def cells(obj: JsonObject) -> list[Any]:
        return [_name(obj)] + [_custom_cell(obj, c) for c in printer]

    return columns, cells


def _columns(resource: ResourceType) -> tuple[list[JsonObject], Cells]:
    if resource.is_custom:
        return _custom_columns(resource)
    return _BUILTIN.get(resource.kind, ([NAME_COLUMN, _column("Age")],
                                        lambda o: [_name(o), _age(o)]))


def _row_object(obj: JsonObject, include: str) -> JsonObject | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}


def table(resource: ResourceType, objects: list[JsonObject], resource_version: str,
          include: str, continue_token: str = "", with_columns: bool = True) -> JsonObject:
    columns, cells = _columns(resource)
    conditions = _pod_conditions if resource.kind == "Pod" and not resource.is_custom else None
    rows = []
    for obj in objects:
        row: JsonObject = {"cells": cells(obj)}
        if conditions is not None and (found := conditions(obj)):
            row["conditions"] = found
        embedded = _row_object(obj, include)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    metadata: JsonObject = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    body: JsonObject = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
                        "columnDefinitions": columns if with_columns else [], "rows": rows}
    return body
