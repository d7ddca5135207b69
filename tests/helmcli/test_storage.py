"""helm's release records decoded as `helm history -o json` lists them (the equivalence with the
real helm v3 and v4 on clustersim is in tests/activities/test_helm.py)."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest

from helmcli.storage import UnreadableRecord, history_entries, record_selector, storage_kind

RECORD = {
    "name": "lws",
    "namespace": "lws-system",
    "version": 3,
    "info": {
        "status": "pending-upgrade",
        "description": "llmd-rollout digest=abc writer=rollout/c/ns/r",
        "last_deployed": "2026-12-07T10:30:55.589079438Z",
    },
    "chart": {"metadata": {"name": "lws", "version": "0.7.0", "appVersion": "v0.7.0"}},
}
ENTRY = {
    "revision": 3,
    "updated": "2026-12-07T10:30:55.589079438Z",
    "status": "pending-upgrade",
    "chart": "lws-0.7.0",
    "app_version": "v0.7.0",
    "description": "llmd-rollout digest=abc writer=rollout/c/ns/r",
}


def helm_encoded(record: dict[str, Any], *, zipped: bool = True) -> str:
    data = json.dumps(record).encode()
    return base64.b64encode(gzip.compress(data) if zipped else data).decode()


def stored(kind: str, text: str) -> dict[str, Any]:
    # A Secret's data is base64 again; a ConfigMap holds helm's text as it is.
    data = base64.b64encode(text.encode()).decode() if kind == "Secret" else text
    name = "sh.helm.release.v1.lws.v3"
    return {"kind": kind, "metadata": {"name": name}, "data": {"release": data}}


@pytest.mark.parametrize("kind", ["Secret", "ConfigMap"])
@pytest.mark.parametrize("zipped", [True, False])
def test_a_record_reads_as_its_history_entry(kind: str, zipped: bool) -> None:
    assert history_entries([stored(kind, helm_encoded(RECORD, zipped=zipped))]) == [ENTRY]


def test_a_record_without_a_chart_reads_as_helm_prints_it() -> None:
    record = {key: value for key, value in RECORD.items() if key != "chart"}
    (entry,) = history_entries([stored("Secret", helm_encoded(record))])
    assert (entry["chart"], entry["app_version"]) == ("MISSING", "")


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        ({"kind": "Secret", "metadata": {"name": "s"}, "data": {}}, "Secret s has no release data"),
        (stored("ConfigMap", "not base64!"), "sh.helm.release.v1.lws.v3: not a helm release"),
        (stored("ConfigMap", base64.b64encode(b"[1]").decode()), "not a helm release record"),
    ],
)
def test_an_unreadable_record_is_named(obj: dict[str, Any], problem: str) -> None:
    with pytest.raises(UnreadableRecord, match=problem):
        history_entries([obj])


def test_the_drivers_kept_in_the_cluster_and_the_others() -> None:
    assert [storage_kind(d) for d in ("", "secret", "Secrets", "configmap", "configmaps")] == [
        "Secret", "Secret", "Secret", "ConfigMap", "ConfigMap",
    ]
    assert storage_kind("memory") is None and storage_kind("sql") is None
    assert record_selector("lws") == "owner=helm,name=lws"
