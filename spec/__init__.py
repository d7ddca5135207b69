"""The rollout spec, its validation, and the shared vocabulary (failure reasons)."""

from spec.loader import SpecError, load_spec, parse_spec
from spec.reasons import FailureReason
from spec.rollout import ROLES, RoleName, RolloutSpec
from spec.validation import Problem

__all__ = [
    "ROLES",
    "FailureReason",
    "Problem",
    "RoleName",
    "RolloutSpec",
    "SpecError",
    "load_spec",
    "parse_spec",
]
