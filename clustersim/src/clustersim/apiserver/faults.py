"""API fault injection: errors, latency, watch cuts and connection resets on chosen requests.

Rules are added through the admin endpoint (`/clustersim/admin/faults`) or the
`python -m clustersim fault api` CLI. Every rule matches a verb set and a path regex, fires with
a probability, and is bounded by a count of firings or a duration (or both). No rule exists by
default.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from clustersim.apiserver.errors import ApiError, bad_request

JsonObject = dict[str, Any]

KINDS = ("error", "latency", "watch-cut", "reset")
MAX_COUNT = 1_000_000
MAX_DURATION_SECONDS = 7 * 24 * 3600
_REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            502: "BadGateway", 503: "ServiceUnavailable", 504: "Timeout"}


@dataclass
class FaultRule:
    """One fault: what it does, which requests it hits, and how long it lasts."""

    kind: str
    verbs: frozenset[str]
    path: re.Pattern[str]
    rate: float
    remaining: int | None
    expires_at: float | None
    code: int = 500
    retry_after_seconds: int | None = None
    latency_ms: int = 0
    after_events: int = 0
    message: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    fired: int = 0

    def expired(self, now: float) -> bool:
        return (self.remaining is not None and self.remaining <= 0) or (
            self.expires_at is not None and now >= self.expires_at)

    def matches(self, verb: str, path: str) -> bool:
        return (not self.verbs or verb in self.verbs) and bool(self.path.search(path))

    def describe(self, now: float) -> JsonObject:
        body: JsonObject = {
            "id": self.id, "kind": self.kind, "verbs": sorted(self.verbs),
            "path": self.path.pattern, "rate": self.rate, "fired": self.fired,
            "remaining": self.remaining,
            "secondsLeft": None if self.expires_at is None else max(self.expires_at - now, 0.0),
        }
        if self.kind == "error":
            body["code"] = self.code
            body["retryAfterSeconds"] = self.retry_after_seconds
            body["message"] = self.message
        elif self.kind == "latency":
            body["latencyMs"] = self.latency_ms
        elif self.kind == "watch-cut":
            body["afterEvents"] = self.after_events
        return body

    def error(self) -> ApiError:
        reason = _REASONS.get(self.code, "InternalError")
        message = self.message or f"clustersim injected fault {self.id} ({self.code} {reason})"
        details: JsonObject | None = None
        headers: dict[str, str] = {}
        if self.retry_after_seconds is not None:
            details = {"retryAfterSeconds": self.retry_after_seconds}
            headers["Retry-After"] = str(self.retry_after_seconds)
        return ApiError(self.code, reason, message, details, headers)


@dataclass
class Decision:
    """What the faults decided for one request."""

    latency_seconds: float = 0.0
    error: ApiError | None = None
    reset: bool = False
    cut_watch_after: int | None = None


def _number(body: JsonObject, key: str, kind: type, default: Any = None) -> Any:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_request(f"fault field {key} must be a number")
    return kind(value)


def parse_rule(body: Any, now: float) -> FaultRule:
    """A rule from its admin-API JSON form; every rule must be bounded."""
    if not isinstance(body, dict):
        raise bad_request("a fault is a JSON object")
    kind = body.get("kind")
    if kind not in KINDS:
        raise bad_request(f"fault kind must be one of {', '.join(KINDS)}")
    count = _number(body, "count", int)
    duration = _number(body, "durationSeconds", float)
    if count is None and duration is None:
        raise bad_request("a fault needs a bound: set count, durationSeconds or both")
    if count is not None and not 0 < count <= MAX_COUNT:
        raise bad_request(f"count must be between 1 and {MAX_COUNT}")
    if duration is not None and not 0 < duration <= MAX_DURATION_SECONDS:
        raise bad_request(f"durationSeconds must be between 0 and {MAX_DURATION_SECONDS}")
    rate = _number(body, "rate", float, 1.0)
    if not 0 < rate <= 1:
        raise bad_request("rate must be in (0, 1]")
    verbs = body.get("verbs") or []
    if not isinstance(verbs, list) or not all(isinstance(v, str) for v in verbs):
        raise bad_request("verbs must be a list of strings")
    try:
        path = re.compile(str(body.get("path") or ""))
    except re.error as error:
        raise bad_request(f"path is not a valid regular expression: {error}") from error
    rule = FaultRule(
        kind=kind, verbs=frozenset(v.lower() for v in verbs), path=path, rate=rate,
        remaining=count, expires_at=None if duration is None else now + duration,
        message=str(body.get("message") or ""),
    )
    if kind == "error":
        code = _number(body, "code", int, 500)
        if not 400 <= code <= 599:
            raise bad_request("code must be an HTTP error status (400-599)")
        rule.code = code
        rule.retry_after_seconds = _number(body, "retryAfterSeconds", int)
        if code == 429 and rule.retry_after_seconds is None:
            rule.retry_after_seconds = 1
    elif kind == "latency":
        latency = _number(body, "latencyMs", int)
        if latency is None or not 0 < latency <= 600_000:
            raise bad_request("latencyMs must be between 1 and 600000")
        rule.latency_ms = latency
    elif kind == "watch-cut":
        after = _number(body, "afterEvents", int, 0)
        if after < 0:
            raise bad_request("afterEvents must be 0 or more")
        rule.after_events = after
    return rule


class FaultInjector:
    """The active fault rules and the decision for each incoming request."""

    def __init__(self, seed: int | None = None) -> None:
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)

    def add(self, rule: FaultRule) -> FaultRule:
        self._rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self._rules)
        self._rules = [r for r in self._rules if r.id != rule_id]
        return len(self._rules) != before

    def clear(self) -> int:
        count = len(self._rules)
        self._rules = []
        return count

    def describe(self) -> list[JsonObject]:
        now = time.monotonic()
        self._prune(now)
        return [rule.describe(now) for rule in self._rules]

    def _prune(self, now: float) -> None:
        self._rules = [r for r in self._rules if not r.expired(now)]

    def decide(self, verb: str, path: str) -> Decision:
        decision = Decision()
        if not self._rules:
            return decision
        now = time.monotonic()
        self._prune(now)
        for rule in self._rules:
            if not rule.matches(verb, path) or self._random.random() >= rule.rate:
                continue
            if rule.kind == "watch-cut" and verb != "watch":
                continue
            if rule.kind == "error" and decision.error is not None:
                continue
            rule.fired += 1
            if rule.remaining is not None:
                rule.remaining -= 1
            if rule.kind == "latency":
                decision.latency_seconds += rule.latency_ms / 1000
            elif rule.kind == "error":
                decision.error = rule.error()
            elif rule.kind == "reset":
                decision.reset = True
            elif decision.cut_watch_after is None:
                decision.cut_watch_after = rule.after_events
        self._prune(now)
        return decision
