"""Deterministic rollout orchestration: Temporal workflows only (no I/O, no Kubernetes imports).

Where it sits: run by worker.py; started, queried and updated from rollouts/ (the Temporal client
side), which this package never imports. Activities are named, not imported (`calls`). See
workflows/README.md for the modules and docs/architecture.md for the phases and layers.

Nothing is imported here: the worker's sandbox imports this package again for every workflow
run, and each run should pay only for the modules its own workflow uses. Import by module path
(`workflows.registry.WORKFLOWS`, `workflows.ids.rollout_workflow_id`, ...).
"""
