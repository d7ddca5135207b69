"""Workflow payloads: maintenance windows, spec sources, and the wire spelling."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from spec.workflow_io import MaintenanceWindow, SpecSource, UpgradeInput
from tests.workflows.specs import demo_spec


def test_maintenance_window_that_crosses_midnight_is_open_the_next_morning() -> None:
    window = MaintenanceWindow(days=["sun"], start=time(22, 0), duration=timedelta(hours=6))
    sunday_night = datetime(2025, 7, 6, 23, 30, tzinfo=UTC)
    monday_early = datetime(2025, 7, 7, 3, 59, tzinfo=UTC)
    monday_late = datetime(2025, 7, 7, 4, 0, tzinfo=UTC)
    saturday_night = datetime(2025, 7, 5, 23, 0, tzinfo=UTC)
    assert window.contains(sunday_night)
    assert window.contains(monday_early)
    assert not window.contains(monday_late)
    assert not window.contains(saturday_night)
    assert window.describe() == "sun 22:00 UTC for 6h"


def test_maintenance_window_reads_other_time_zones_as_the_same_instant() -> None:
    window = MaintenanceWindow(start=time(2, 0), duration=timedelta(hours=1))
    berlin_summer = datetime.fromisoformat("2025-07-07T04:30:00+02:00")
    assert window.contains(berlin_summer)
    assert window.contains(datetime(2025, 7, 7, 2, 30))


def test_spec_source_needs_exactly_one_of_path_or_spec() -> None:
    with pytest.raises(ValidationError, match="exactly one of path or spec"):
        SpecSource()
    with pytest.raises(ValidationError, match="exactly one of path or spec"):
        SpecSource(path="/a.yaml", spec=demo_spec("io"))


def test_upgrade_input_round_trips_as_camel_case_json() -> None:
    request = UpgradeInput(
        target="c/n/x",
        source=SpecSource(path="/specs/x.yaml"),
        maintenance_window=MaintenanceWindow(start=time(1, 30), duration=timedelta(hours=2)),
    )
    text = request.model_dump_json()
    assert '"maintenanceWindow"' in text and '"duration":"2h"' in text
    assert UpgradeInput.model_validate_json(text) == request
