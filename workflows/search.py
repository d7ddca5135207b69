"""Typed keys of the custom search attributes (target, phase, model, image, outcome).

Where it sits: RolloutWorkflow and TeardownWorkflow upsert them as they progress; the client side
sets the first values at start so a rollout is findable before its first workflow task. The names
are those embedded.search_attributes registers on every Temporal we run (a test keeps them in
step).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

TARGET = SearchAttributeKey.for_keyword("LlmdTarget")
PHASE = SearchAttributeKey.for_keyword("LlmdPhase")
MODEL = SearchAttributeKey.for_keyword("LlmdModel")
IMAGE = SearchAttributeKey.for_keyword("LlmdImage")
OUTCOME = SearchAttributeKey.for_keyword("LlmdOutcome")

KEYS = (TARGET, PHASE, MODEL, IMAGE, OUTCOME)


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
