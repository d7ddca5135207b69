"""Names of the ConfigMaps llmd-rollout keeps for itself in a target namespace: one snapshot per
recorded revision and the last-known-good pointer.

Where it sits: the snapshot, last-known-good and restore activities write and read them
(k8s/snapshot.py, activities/kube.py); teardown deletes the pointer by name
(workflows/teardown.py). Pure, importable from workflow code.
"""

from __future__ import annotations

import re

SNAPSHOT_PREFIX = "llmd-rollout-snapshot"
LAST_KNOWN_GOOD_PREFIX = "llmd-rollout-last-known-good"


def dns_name(*parts: str) -> str:
    """A DNS-1123 subdomain made of `parts` (lower-cased, other characters as '-')."""
    joined = "-".join(parts).lower()
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", joined).strip("-.")
    return cleaned[:253].rstrip("-.")


def snapshot_name(rollout: str, revision: str) -> str:
    return dns_name(SNAPSHOT_PREFIX, rollout, revision)


def last_known_good_name(rollout: str) -> str:
    return dns_name(LAST_KNOWN_GOOD_PREFIX, rollout)
