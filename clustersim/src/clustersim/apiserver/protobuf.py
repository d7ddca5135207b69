"""Decoding of Kubernetes protobuf request bodies for the kinds typed Go clients send that way.

client-go's typed clients (kubectl's `create namespace|secret|configmap|serviceaccount|token`,
`auth can-i|whoami`, helm's release storage, DeleteOptions of typed deletes) send
`application/vnd.kubernetes.protobuf`.
The server answers JSON (those clients accept it); request bodies of these kinds are decoded
here into the same JSON objects a JSON body would give. Other kinds answer 415.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from clustersim.apiserver.errors import ApiError, bad_request

JsonObject = dict[str, Any]
MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"

# (field number, wire type, value as raw int or bytes)
Field = tuple[int, int, Any]


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if position >= len(data):
            raise bad_request("protobuf body is truncated")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise bad_request("protobuf varint is too long")


def fields(data: bytes) -> list[Field]:
    """Every (field number, wire type, value) of one message."""
    result: list[Field] = []
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 2:
            size, position = _varint(data, position)
            value = data[position:position + size]
            position += size
        elif wire == 1:
            value = data[position:position + 8]
            position += 8
        elif wire == 5:
            value = data[position:position + 4]
            position += 4
        else:
            raise bad_request(f"unsupported protobuf wire type {wire}")
        result.append((number, wire, value))
    return result


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(value: bytes) -> str:
    return value.decode("utf-8")


def _time(value: bytes) -> str:
    seconds = 0
    for number, _, raw in fields(value):
        if number == 1:
            seconds = _signed(raw)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _map_entry(value: bytes, decode_value: Callable[[bytes], Any]) -> tuple[str, Any]:
    key = ""
    item: Any = decode_value(b"")
    for number, _, raw in fields(value):
        if number == 1:
            key = _text(raw)
        elif number == 2:
            item = decode_value(raw)
    return key, item


def _bytes_value(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


Decoder = Callable[[bytes], JsonObject]
Spec = dict[int, tuple[str, str, Any]]


def _message(spec: Spec) -> Decoder:
    """A decoder for a message described as {number: (json name, kind, detail)}.

    kinds: string, int, bool, bytes, time, message (detail: decoder), strings (repeated),
    messages (repeated; detail: decoder), map (detail: value decoder).
    """

    def decode(data: bytes) -> JsonObject:
        result: JsonObject = {}
        for number, _, raw in fields(data):
            if number not in spec:
                continue
            name, kind, detail = spec[number]
            if kind == "string":
                result[name] = _text(raw)
            elif kind == "int":
                result[name] = _signed(raw)
            elif kind == "bool":
                result[name] = bool(raw)
            elif kind == "time":
                result[name] = _time(raw)
            elif kind == "message":
                result[name] = detail(raw)
            elif kind == "strings":
                result.setdefault(name, []).append(_text(raw))
            elif kind == "messages":
                result.setdefault(name, []).append(detail(raw))
            elif kind == "map":
                key, value = _map_entry(raw, detail)
                result.setdefault(name, {})[key] = value
        return result

    return decode


_OWNER_REFERENCE = _message({
    1: ("kind", "string", None), 3: ("name", "string", None), 4: ("uid", "string", None),
    5: ("apiVersion", "string", None), 6: ("controller", "bool", None),
    7: ("blockOwnerDeletion", "bool", None),
})
_OBJECT_META = _message({
    1: ("name", "string", None), 2: ("generateName", "string", None),
    3: ("namespace", "string", None), 5: ("uid", "string", None),
    6: ("resourceVersion", "string", None), 7: ("generation", "int", None),
    8: ("creationTimestamp", "time", None), 9: ("deletionTimestamp", "time", None),
    10: ("deletionGracePeriodSeconds", "int", None),
    11: ("labels", "map", lambda raw: _text(raw)),
    12: ("annotations", "map", lambda raw: _text(raw)),
    13: ("ownerReferences", "messages", _OWNER_REFERENCE),
    14: ("finalizers", "strings", None),
})
_OBJECT_REFERENCE = _message({
    1: ("kind", "string", None), 2: ("namespace", "string", None), 3: ("name", "string", None),
    4: ("uid", "string", None), 5: ("apiVersion", "string", None),
    6: ("resourceVersion", "string", None), 7: ("fieldPath", "string", None),
})
_LOCAL_REFERENCE = _message({1: ("name", "string", None)})
# authorization.k8s.io/v1 and authentication.k8s.io/v1: what `kubectl auth can-i`, `kubectl auth
# whoami` and `kubectl create token` send
_RESOURCE_ATTRIBUTES = _message({
    1: ("namespace", "string", None), 2: ("verb", "string", None), 3: ("group", "string", None),
    4: ("version", "string", None), 5: ("resource", "string", None),
    6: ("subresource", "string", None), 7: ("name", "string", None),
})
_NON_RESOURCE_ATTRIBUTES = _message({1: ("path", "string", None), 2: ("verb", "string", None)})
_SUBJECT_ACCESS_REVIEW_SPEC = _message({
    1: ("resourceAttributes", "message", _RESOURCE_ATTRIBUTES),
    2: ("nonResourceAttributes", "message", _NON_RESOURCE_ATTRIBUTES),
    3: ("user", "string", None), 4: ("groups", "strings", None), 6: ("uid", "string", None),
})


def _review(spec: Decoder) -> Decoder:
    return _message({1: ("metadata", "message", _OBJECT_META), 2: ("spec", "message", spec)})

KINDS: dict[tuple[str, str], Decoder] = {
    ("v1", "Secret"): _message({
        1: ("metadata", "message", _OBJECT_META),
        2: ("data", "map", _bytes_value),
        3: ("type", "string", None),
        4: ("stringData", "map", lambda raw: _text(raw)),
        5: ("immutable", "bool", None),
    }),
    ("v1", "ConfigMap"): _message({
        1: ("metadata", "message", _OBJECT_META),
        2: ("data", "map", lambda raw: _text(raw)),
        3: ("binaryData", "map", _bytes_value),
        4: ("immutable", "bool", None),
    }),
    ("v1", "Namespace"): _message({
        1: ("metadata", "message", _OBJECT_META),
        2: ("spec", "message", _message({1: ("finalizers", "strings", None)})),
    }),
    ("v1", "ServiceAccount"): _message({
        1: ("metadata", "message", _OBJECT_META),
        2: ("secrets", "messages", _OBJECT_REFERENCE),
        3: ("imagePullSecrets", "messages", _LOCAL_REFERENCE),
        4: ("automountServiceAccountToken", "bool", None),
    }),
    ("v1", "DeleteOptions"): _message({
        1: ("gracePeriodSeconds", "int", None),
        2: ("preconditions", "message", _message({1: ("uid", "string", None),
                                                  2: ("resourceVersion", "string", None)})),
        3: ("orphanDependents", "bool", None),
        4: ("propagationPolicy", "string", None),
        5: ("dryRun", "strings", None),
    }),
    ("meta.k8s.io/v1", "DeleteOptions"): lambda raw: KINDS[("v1", "DeleteOptions")](raw),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): _review(_SUBJECT_ACCESS_REVIEW_SPEC),
    ("authorization.k8s.io/v1", "SubjectAccessReview"): _review(_SUBJECT_ACCESS_REVIEW_SPEC),
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"):
        _review(_SUBJECT_ACCESS_REVIEW_SPEC),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"):
        _review(_message({1: ("namespace", "string", None)})),
    ("authentication.k8s.io/v1", "SelfSubjectReview"): _review(_message({})),
    ("authentication.k8s.io/v1", "TokenReview"):
        _review(_message({1: ("token", "string", None), 2: ("audiences", "strings", None)})),
    ("authentication.k8s.io/v1", "TokenRequest"): _review(_message({
        1: ("audiences", "strings", None), 4: ("expirationSeconds", "int", None),
        3: ("boundObjectRef", "message", _message({
            1: ("kind", "string", None), 2: ("apiVersion", "string", None),
            3: ("name", "string", None), 4: ("uid", "string", None)})),
    })),
}


def decode(body: bytes) -> JsonObject:
    """A protobuf-encoded Kubernetes object as its JSON form."""
    if not body.startswith(MAGIC):
        raise bad_request("protobuf body does not start with the Kubernetes magic number")
    api_version = kind = ""
    raw = b""
    for number, _, value in fields(body[len(MAGIC):]):
        if number == 1:
            for meta_number, _, meta_value in fields(value):
                if meta_number == 1:
                    api_version = _text(meta_value)
                elif meta_number == 2:
                    kind = _text(meta_value)
        elif number == 2:
            raw = value
    decoder = KINDS.get((api_version, kind))
    if decoder is None:
        supported = ", ".join(sorted({k for _, k in KINDS}))
        raise ApiError(415, "UnsupportedMediaType",
                       f"clustersim decodes protobuf bodies only for {supported}; "
                       f"{kind or 'this object'} ({api_version}) must be sent as JSON")
    obj = decoder(raw)
    obj["apiVersion"] = api_version
    obj["kind"] = kind
    return obj
