"""The fleet spec: one rollout spec rolled out to targets on several clusters, wave after wave.

Where it sits: a person writes a `kind: Fleet` document; `load_fleet` (here) expands it into a
`FleetPlan` of fully validated per-target RolloutSpecs, which is what FleetWorkflow
(workflows/fleet.py) receives. So every target's spec is checked by the same rules as a single
rollout before anything starts, and the workflow never parses YAML.

    apiVersion: llmd-rollout.llm-d.ai/v1alpha1
    kind: Fleet
    metadata: {name: wide-ep-fleet}
    rollout: {...}                 # a Rollout document (its `target` may be left out)
    # or rolloutFile: rollout.yaml # the same, from a file beside this one
    targets:
      - {name: a, cluster: east, namespace: llm-d, kubeconfig: east.yaml, context: admin}
      - {name: b, cluster: west, namespace: llm-d, overrides: {modelService: {decode: ...}}}
    waves:
      - {name: canary, targets: [a]}
      - {name: rest, targets: [b, c], maxParallel: 1}
    betweenWaves: {pause: 10m, approval: true}
    onFailure: rollbackWave        # or rollbackAll

`overrides` are merged into the rollout document for that target (mappings key by key, any other
value replaced). A target's rollout keeps its own workflow ID,
`rollout/<cluster>/<namespace>/<name>`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from spec.loader import SpecError, pydantic_problem, resolve_local_paths, validate_document
from spec.rollout import API_VERSION, Gate, Metadata, RolloutSpec, SpecModel
from spec.types import DNS1123Label
from spec.validation import Problem

FLEET_KIND = "Fleet"
OnFailure = Literal["rollbackWave", "rollbackAll"]


class FleetTargetEntry(SpecModel):
    """One target of the fleet as written: a fleet-local name, where it is, what differs."""

    name: DNS1123Label = Field(description="The name waves use for this target.")
    cluster: DNS1123Label
    namespace: DNS1123Label
    kubeconfig: str | None = None
    context: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)


class WaveEntry(SpecModel):
    name: DNS1123Label
    targets: list[DNS1123Label] = Field(min_length=1)
    max_parallel: int = Field(default=1, ge=1)


class FleetDocument(SpecModel):
    """The `kind: Fleet` document as written (the rollout inside is checked per target)."""

    api_version: Literal["llmd-rollout.llm-d.ai/v1alpha1"]
    kind: Literal["Fleet"]
    metadata: Metadata
    rollout: dict[str, Any] | None = None
    rollout_file: str | None = None
    targets: list[FleetTargetEntry] = Field(min_length=1)
    waves: list[WaveEntry] = Field(min_length=1)
    between_waves: Gate = Field(default_factory=Gate)
    on_failure: OnFailure = "rollbackWave"


# --- what the workflow receives ---------------------------------------------------------------


class FleetTarget(SpecModel):
    name: str
    spec: RolloutSpec


class FleetWave(SpecModel):
    name: str
    max_parallel: int
    targets: list[FleetTarget]


class FleetPlan(SpecModel):
    """A fleet expanded: waves in order, each target with its own validated RolloutSpec."""

    name: str
    waves: list[FleetWave]
    between_waves: Gate = Field(default_factory=Gate)
    on_failure: OnFailure = "rollbackWave"


def is_fleet_document(path: str | Path) -> bool:
    """Whether the YAML file at `path` says `kind: Fleet` (anything unreadable: no)."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(document, dict) and document.get("kind") == FLEET_KIND


def load_fleet(path: str | Path) -> FleetPlan:
    source = Path(path)
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise SpecError(str(source), [Problem("", f"cannot be read: {error}")]) from None
    if not isinstance(document, dict):
        raise SpecError(str(source), [Problem("", "must be a YAML mapping (a Fleet document)")])
    return expand_fleet(document, str(source), source.resolve().parent)


def expand_fleet(document: dict[str, Any], source: str, base_dir: Path) -> FleetPlan:
    """Check the fleet document and build each target's RolloutSpec; every problem at once."""
    try:
        fleet = FleetDocument.model_validate(document, extra="forbid")
    except ValidationError as error:
        raise SpecError(source, [pydantic_problem(e) for e in error.errors()]) from None
    problems = _check_waves(fleet)
    base = _base_rollout(fleet, base_dir, problems)
    if problems or base is None:
        raise SpecError(source, problems)
    specs: dict[str, RolloutSpec] = {}
    for index, entry in enumerate(fleet.targets):
        try:
            specs[entry.name] = validate_document(
                _target_document(base, entry, base_dir), f"targets[{index}]", base_dir
            )
        except SpecError as error:
            problems += [
                Problem(f"targets[{index}] ({entry.name}): {p.path}".rstrip(": "), p.message)
                for p in error.problems
            ]
    seen: dict[str, str] = {}
    for name, spec in specs.items():
        if spec.target_id in seen:
            problems.append(
                Problem("targets", f"{name} and {seen[spec.target_id]} are the same target "
                        f"{spec.target_id}")
            )
        seen[spec.target_id] = name
    if problems:
        raise SpecError(source, problems)
    waves = [
        FleetWave(
            name=wave.name, max_parallel=wave.max_parallel,
            targets=[FleetTarget(name=t, spec=specs[t]) for t in wave.targets],
        )
        for wave in fleet.waves
    ]
    return FleetPlan(
        name=fleet.metadata.name, waves=waves,
        between_waves=fleet.between_waves, on_failure=fleet.on_failure,
    )


def _check_waves(fleet: FleetDocument) -> list[Problem]:
    """Each target in exactly one wave, wave names unique, no wave naming an unknown target."""
    problems: list[Problem] = []
    known = [t.name for t in fleet.targets]
    if len(set(known)) != len(known):
        problems.append(Problem("targets", "target names must be unique"))
    placed: dict[str, str] = {}
    wave_names: set[str] = set()
    for index, wave in enumerate(fleet.waves):
        if wave.name in wave_names:
            problems.append(Problem(f"waves[{index}].name", f"wave {wave.name} appears twice"))
        wave_names.add(wave.name)
        for name in wave.targets:
            if name not in known:
                problems.append(Problem(f"waves[{index}].targets", f"no target named {name}"))
            elif name in placed:
                problems.append(
                    Problem(f"waves[{index}].targets", f"{name} is already in wave {placed[name]}")
                )
            placed.setdefault(name, wave.name)
    for name in known:
        if name not in placed:
            problems.append(Problem("waves", f"target {name} is in no wave"))
    return problems


def _base_rollout(
    fleet: FleetDocument, base_dir: Path, problems: list[Problem]
) -> dict[str, Any] | None:
    if (fleet.rollout is None) == (fleet.rollout_file is None):
        problems.append(Problem("rollout", "give exactly one of rollout or rolloutFile"))
        return None
    if fleet.rollout is not None:
        base = copy.deepcopy(fleet.rollout)
        resolve_local_paths(base, base_dir)
        return base
    assert fleet.rollout_file is not None
    path = (base_dir / fleet.rollout_file).resolve()
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        problems.append(Problem("rolloutFile", f"cannot be read: {error}"))
        return None
    if not isinstance(loaded, dict):
        problems.append(Problem("rolloutFile", "must hold a Rollout document"))
        return None
    resolve_local_paths(loaded, path.parent)
    return loaded


def _target_document(
    base: dict[str, Any], entry: FleetTargetEntry, base_dir: Path
) -> dict[str, Any]:
    overrides = copy.deepcopy(entry.overrides)
    resolve_local_paths(overrides, base_dir)
    document = _merged(base, overrides)
    document.setdefault("apiVersion", API_VERSION)
    target: dict[str, Any] = {"cluster": entry.cluster, "namespace": entry.namespace}
    if entry.kubeconfig is not None:
        target["kubeconfig"] = entry.kubeconfig
    if entry.context is not None:
        target["context"] = entry.context
    document["target"] = target
    resolve_local_paths(document["target"], base_dir)
    return document


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged
