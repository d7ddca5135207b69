"""Structural knowledge of object fields: which lists merge by key, which maps are atomic.

Server-side apply (field ownership), strategic merge patch (merge keys and strategies) and
unknown-field handling all need to know the shape of an object. For custom resources the shape
comes from the CRD's openAPIV3Schema (see `crd_schema`); for built-in kinds it is written down
here, only as far as the stack needs it. Unknown parts of a shape are "deduced", as the real
server does for untyped data: maps merge field by field, lists are atomic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

NodeKind = Literal["object", "map", "list", "scalar", "any"]
ListType = Literal["atomic", "set", "map"]


@dataclass
class Shape:
    """The shape of one node of an object (a JSON value) for merging and ownership."""

    kind: NodeKind = "any"
    fields: dict[str, Shape] = field(default_factory=dict)
    # map values, or list items
    element: Shape | None = None
    list_type: ListType = "atomic"
    map_keys: tuple[str, ...] = ()
    # defaults of list-map keys, e.g. ports[].protocol = TCP
    key_defaults: dict[str, Any] = field(default_factory=dict)
    # an atomic object/map is owned and replaced as a whole
    atomic: bool = False
    # closed objects know all their fields: others are unknown (pruned or rejected)
    closed: bool = False
    # strategic merge patch: merge key of a list, and "retainKeys" for union structs
    smp_merge_key: str | None = None
    smp_retain_keys: bool = False

    def child(self, name: str) -> Shape:
        if self.kind == "object":
            found = self.fields.get(name)
            if found is not None:
                return found
            if self.element is not None:
                return self.element
            return ANY
        if self.kind == "map" and self.element is not None:
            return self.element
        return ANY

    def item(self) -> Shape:
        return self.element if self.element is not None else ANY


ANY = Shape()
SCALAR = Shape(kind="scalar")
ATOMIC_LIST = Shape(kind="list", list_type="atomic")
STRING_MAP = Shape(kind="map", element=SCALAR)
SET_LIST = Shape(kind="list", list_type="set", element=SCALAR)


def obj(closed: bool = False, atomic: bool = False, retain_keys: bool = False,
        **fields: Shape) -> Shape:
    return Shape(kind="object", fields=fields, closed=closed, atomic=atomic,
                 smp_retain_keys=retain_keys)


def atomic_obj() -> Shape:
    return Shape(kind="object", atomic=True)


def keyed(keys: tuple[str, ...], item: Shape, smp_key: str | None = None,
          key_defaults: dict[str, Any] | None = None) -> Shape:
    return Shape(kind="list", list_type="map", map_keys=keys, element=item,
                 smp_merge_key=smp_key if smp_key is not None else keys[0],
                 key_defaults=key_defaults or {})


OWNER_REFERENCE = obj(
    apiVersion=SCALAR, kind=SCALAR, name=SCALAR, uid=SCALAR, controller=SCALAR,
    blockOwnerDeletion=SCALAR,
)

OBJECT_META = obj(
    closed=True,
    name=SCALAR, generateName=SCALAR, namespace=SCALAR, selfLink=SCALAR, uid=SCALAR,
    resourceVersion=SCALAR, generation=SCALAR, creationTimestamp=SCALAR,
    deletionTimestamp=SCALAR, deletionGracePeriodSeconds=SCALAR,
    labels=STRING_MAP, annotations=STRING_MAP,
    ownerReferences=keyed(("uid",), OWNER_REFERENCE),
    finalizers=Shape(kind="list", list_type="set", element=SCALAR, smp_merge_key=""),
    managedFields=ATOMIC_LIST,
)

# metadata of embedded templates: same fields, but never strict
TEMPLATE_META = obj(labels=STRING_MAP, annotations=STRING_MAP,
                    ownerReferences=keyed(("uid",), OWNER_REFERENCE),
                    finalizers=Shape(kind="list", list_type="set", element=SCALAR,
                                     smp_merge_key=""))

LABEL_SELECTOR = atomic_obj()

CONDITIONS = keyed(("type",), obj())

CONTAINER_PORTS = keyed(("containerPort", "protocol"), obj(), smp_key="containerPort",
                        key_defaults={"protocol": "TCP"})

CONTAINER = obj(
    name=SCALAR, image=SCALAR,
    command=ATOMIC_LIST, args=ATOMIC_LIST,
    ports=CONTAINER_PORTS,
    env=keyed(("name",), obj()),
    envFrom=ATOMIC_LIST,
    volumeMounts=keyed(("mountPath",), obj()),
    volumeDevices=keyed(("devicePath",), obj()),
    resizePolicy=ATOMIC_LIST,
    resources=obj(limits=STRING_MAP, requests=STRING_MAP, claims=keyed(("name",), obj())),
)

POD_SPEC = obj(
    containers=keyed(("name",), CONTAINER),
    initContainers=keyed(("name",), CONTAINER),
    ephemeralContainers=keyed(("name",), CONTAINER),
    volumes=Shape(kind="list", list_type="map", map_keys=("name",),
                  element=obj(retain_keys=True), smp_merge_key="name"),
    imagePullSecrets=keyed(("name",), obj()),
    hostAliases=keyed(("ip",), obj()),
    tolerations=ATOMIC_LIST,
    topologySpreadConstraints=keyed(("topologyKey", "whenUnsatisfiable"), obj(),
                                    smp_key="topologyKey"),
    schedulingGates=keyed(("name",), obj()),
    resourceClaims=keyed(("name",), obj(retain_keys=True)),
    readinessGates=ATOMIC_LIST,
    nodeSelector=STRING_MAP,
    overhead=STRING_MAP,
)

POD_TEMPLATE = obj(metadata=TEMPLATE_META, spec=POD_SPEC)

POD_STATUS = obj(
    conditions=CONDITIONS,
    podIPs=keyed(("ip",), obj()),
    hostIPs=keyed(("ip",), obj()),
    containerStatuses=ATOMIC_LIST,
    initContainerStatuses=ATOMIC_LIST,
)


def top(*names: str, **shaped: Shape) -> Shape:
    """The shape of a whole built-in object: every top-level field named, metadata strict."""
    fields: dict[str, Shape] = {"apiVersion": SCALAR, "kind": SCALAR, "metadata": OBJECT_META}
    fields.update({name: ANY for name in names})
    fields.update(shaped)
    return Shape(kind="object", fields=fields, closed=True)


WORKLOAD_STATUS = obj(conditions=CONDITIONS)

CORE_EVENT_FIELDS = (
    "involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp", "count",
    "type", "eventTime", "series", "action", "related", "reportingComponent",
    "reportingInstance",
)

BUILTIN_SHAPES: dict[str, Shape] = {
    "Namespace": top(spec=obj(finalizers=SET_LIST), status=obj(conditions=CONDITIONS)),
    "Node": top(
        spec=obj(podCIDRs=SET_LIST, taints=ATOMIC_LIST),
        status=obj(conditions=CONDITIONS,
                   addresses=keyed(("type",), obj()),
                   capacity=STRING_MAP, allocatable=STRING_MAP, images=ATOMIC_LIST),
    ),
    "Pod": top(spec=POD_SPEC, status=POD_STATUS),
    "Service": top(
        spec=obj(
            ports=keyed(("port", "protocol"), obj(), smp_key="port",
                        key_defaults={"protocol": "TCP"}),
            selector=Shape(kind="map", element=SCALAR, atomic=True),
            clusterIPs=ATOMIC_LIST, ipFamilies=ATOMIC_LIST, externalIPs=ATOMIC_LIST,
        ),
        status=obj(conditions=CONDITIONS),
    ),
    "Endpoints": top(subsets=ATOMIC_LIST),
    "EndpointSlice": top(endpoints=ATOMIC_LIST, ports=ATOMIC_LIST, addressType=SCALAR),
    "ConfigMap": top(data=STRING_MAP, binaryData=STRING_MAP, immutable=SCALAR),
    "Secret": top(data=STRING_MAP, stringData=STRING_MAP, type=SCALAR, immutable=SCALAR),
    "ServiceAccount": top(secrets=keyed(("name",), obj()),
                          imagePullSecrets=ATOMIC_LIST,
                          automountServiceAccountToken=SCALAR),
    "Deployment": top(
        spec=obj(selector=LABEL_SELECTOR, template=POD_TEMPLATE,
                 strategy=obj(retain_keys=True)),
        status=WORKLOAD_STATUS,
    ),
    "ReplicaSet": top(spec=obj(selector=LABEL_SELECTOR, template=POD_TEMPLATE),
                      status=WORKLOAD_STATUS),
    "StatefulSet": top(
        spec=obj(selector=LABEL_SELECTOR, template=POD_TEMPLATE,
                 volumeClaimTemplates=ATOMIC_LIST, updateStrategy=obj(retain_keys=True)),
        status=WORKLOAD_STATUS,
    ),
    "ControllerRevision": top("data", revision=SCALAR),
    "Role": top(rules=ATOMIC_LIST),
    "ClusterRole": top("aggregationRule", rules=ATOMIC_LIST),
    "RoleBinding": top(subjects=ATOMIC_LIST, roleRef=atomic_obj()),
    "ClusterRoleBinding": top(subjects=ATOMIC_LIST, roleRef=atomic_obj()),
    "Event": top(*CORE_EVENT_FIELDS),
    "Lease": top("spec"),
    "CustomResourceDefinition": top(
        spec=obj(versions=ATOMIC_LIST, names=obj(shortNames=ATOMIC_LIST,
                                                 categories=ATOMIC_LIST)),
        status=obj(conditions=CONDITIONS, storedVersions=ATOMIC_LIST),
    ),
    "Scale": top("spec", "status"),
}


def builtin_shape(kind: str) -> Shape:
    """The shape of a built-in kind (an open `spec` and `status` when not written down)."""
    return BUILTIN_SHAPES.get(kind, top("spec", "status"))
