"""The workflows call activities by name (workflows/calls.py); the worker must register each one
under that name, taking the input and returning the result type the workflows expect."""

from __future__ import annotations

import inspect
from typing import Any, get_type_hints

from activities.registry import activities
from tests.workflows.fakes import FakeCluster
from workflows import calls


def registered(functions: list[Any]) -> dict[str, Any]:
    return {fn.__temporal_activity_definition.name: fn for fn in functions}


def test_every_activity_the_workflows_call_is_registered_with_matching_types() -> None:
    worker = registered(activities())
    missing = sorted(ref.name for ref in calls.ALL if ref.name not in worker)
    assert not missing, f"activities/registry.py registers no activity named {missing}"
    for ref in calls.ALL:
        hints = get_type_hints(worker[ref.name])
        parameters = list(inspect.signature(worker[ref.name]).parameters)
        assert hints[parameters[-1]] is ref.input_type, ref.name
        assert hints["return"] is ref.result_type, ref.name


def test_the_test_stand_ins_cover_exactly_the_activities_the_workflows_call() -> None:
    assert set(registered(FakeCluster().activities())) == {ref.name for ref in calls.ALL}
