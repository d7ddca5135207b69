"""Deterministic rollout orchestration: Temporal workflows only (no I/O, no Kubernetes imports)."""
