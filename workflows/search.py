"""Typed keys of the custom search attributes (target, phase, model, image, outcome), and the
one way workflow code updates them.

Where it sits: RolloutWorkflow and TeardownWorkflow upsert them as they progress (`announce` at
their start, `update` as the phase or outcome changes); the client side sets the first values at
start so a rollout is findable before its first workflow task. The names are those
embedded.search_attributes registers on every Temporal we run (a test keeps them in step).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

TARGET = SearchAttributeKey.for_keyword("LlmdTarget")
PHASE = SearchAttributeKey.for_keyword("LlmdPhase")
MODEL = SearchAttributeKey.for_keyword("LlmdModel")
IMAGE = SearchAttributeKey.for_keyword("LlmdImage")
OUTCOME = SearchAttributeKey.for_keyword("LlmdOutcome")

KEYS = (TARGET, PHASE, MODEL, IMAGE, OUTCOME)


def announce(target: str, model: str, image: str, phase: str) -> None:
    """Workflow code: what the run is about, at its start (one upsert)."""
    workflow.upsert_search_attributes(
        [
            TARGET.value_set(target),
            MODEL.value_set(model),
            IMAGE.value_set(image),
            PHASE.value_set(phase),
            OUTCOME.value_set("running"),
        ]
    )


def update(*, phase: str | None = None, outcome: str | None = None) -> None:
    """Workflow code: a new phase and/or outcome (one upsert)."""
    updates: list[SearchAttributeUpdate[str]] = []
    if phase is not None:
        updates.append(PHASE.value_set(phase))
    if outcome is not None:
        updates.append(OUTCOME.value_set(outcome))
    workflow.upsert_search_attributes(updates)


def initial(target: str, model: str, image: str, phase: str) -> TypedSearchAttributes:
    """What a rollout or teardown carries from its start, before the workflow upserts more."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(TARGET, target),
            SearchAttributePair(PHASE, phase),
            SearchAttributePair(MODEL, model),
            SearchAttributePair(IMAGE, image),
            SearchAttributePair(OUTCOME, "running"),
        ]
    )
