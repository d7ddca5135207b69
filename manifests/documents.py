"""Rendered objects as text and as identities: multi-document YAML and `group/Kind/ns/name` keys.

Snapshots of what a rollout applied are stored and compared as this YAML, so it is
deterministic: the builders' key order, block literals for multi-line strings, no line folding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

CORE_GROUP = "core"


class _ManifestDumper(yaml.SafeDumper):
    """Block literals for multi-line strings (scripts, configs), plain style for the rest."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def to_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """Multi-document YAML, byte-identical for equal objects (keys in the builders' order)."""
    return yaml.dump_all(
        [dict(obj) for obj in objects],
        Dumper=_ManifestDumper,
        explicit_start=True,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
    )


def object_key(obj: Mapping[str, Any]) -> str:
    """`<group>/<Kind>/<namespace>/<name>`, e.g. `apps/Deployment/llm-d-wide-ep/ms-epp`.

    The core group is spelled `core`; a cluster-scoped object has an empty namespace part.
    """
    api_version = str(obj["apiVersion"])
    group = api_version.rpartition("/")[0] or CORE_GROUP
    metadata = obj["metadata"]
    return f"{group}/{obj['kind']}/{metadata.get('namespace', '')}/{metadata['name']}"
