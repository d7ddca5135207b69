"""When a release locked in pending-* may be repaired: only when provably abandoned.

Where it sits: pure rules used by activities/helm.py before it repairs a release a killed helm
left in pending-install/-upgrade/-rollback (helm's "another operation is in progress" lock).
Repairing a release whose writer is alive destroys its work (a second rollout once uninstalled
another rollout's live LWS install that way), so a repair needs proof that nobody writes it:

- Every writer of ours is a workflow: a target's own releases are written only under the
  target's workflow ID (one run at a time), the shared ones only by the cluster workflow (one
  operation per release at a time). We record the writer in each revision's description
  (`... by <workflow ID>`), and a helm we start dies with its worker (activities/helm.py), so a
  pending release whose last good revision this same workflow wrote has no live writer but us.
- A pending install has no earlier revision to say who wrote it: it is ours when an earlier
  attempt of this very activity recorded (in its heartbeat) that it started helm on it.
- Anything else (another tool, a person, another workflow) is repaired only once the pending
  revision is older than `PENDING_REPAIR_AGE`, longer than any helm operation we run waits;
  younger, the activity waits and asks again (a retryable error saying why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from helmcli.commands import PENDING_STATUSES
from spec.activity_io import HelmReleaseState

# A pending release nobody of ours can be shown to own is presumed abandoned after this long:
# beyond helm's own --timeout of any operation we start (phase budgets are minutes) plus margin.
PENDING_REPAIR_AGE = timedelta(minutes=30)
WRITER_MARK = " by "


@dataclass(frozen=True)
class Verdict:
    repair: bool
    why: str


def writer_suffix(writer: str) -> str:
    """What follows the digest in a revision's description: who wrote it."""
    return f"{WRITER_MARK}{writer}" if writer else ""


def written_by(description: str) -> str | None:
    if WRITER_MARK not in description:
        return None
    return description.rsplit(WRITER_MARK, 1)[1].strip() or None


def parse_updated(value: str) -> datetime | None:
    """helm's `updated` (RFC 3339 with nanoseconds, v3 and v4) as an aware datetime."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?", value.strip())
    if not match:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = match.group(3) or "Z"
    zone = "+00:00" if zone == "Z" else zone
    try:
        return datetime.fromisoformat(f"{match.group(1)}{fraction}{zone}")
    except ValueError:
        return None


def verdict(
    state: HelmReleaseState, writer: str, resumed: bool, now: datetime | None = None
) -> Verdict:
    """May `writer` repair `state` now? `resumed`: an earlier attempt of this activity started
    helm on this release (its heartbeat says so)."""
    if state.status == "failed":
        # A failed first install holds no lock: the helm that failed has ended.
        return Verdict(True, "its first install failed: no helm operation holds it")
    # An uninstall cut short may still be running: the same proof as a pending lock.
    if state.status not in (*PENDING_STATUSES, "uninstalling") or not state.history:
        return Verdict(False, "not pending")
    pending = state.history[-1]
    good = [r for r in state.history if r.status in ("deployed", "superseded")]
    if resumed:
        return Verdict(True, "abandoned: an earlier attempt of this step started it and died")
    if good and writer and written_by(good[-1].description) == writer:
        return Verdict(
            True, f"abandoned: its last good revision was written by {writer}, the only writer "
            "of this release, which is not running any other helm on it",
        )
    updated = parse_updated(pending.updated)
    now = now or datetime.now(UTC)
    if updated is not None and now - updated >= PENDING_REPAIR_AGE:
        age = int((now - updated).total_seconds())
        return Verdict(True, f"abandoned: {pending.status} for {age}s, longer than "
                       f"{int(PENDING_REPAIR_AGE.total_seconds())}s")
    since = "an unknown time" if updated is None else f"{int((now - updated).total_seconds())}s"
    return Verdict(
        False,
        f"{state.release_name} is {pending.status} (revision {pending.revision}) since {since}, "
        "by a writer that may still be running; it is repaired only when written by this "
        f"workflow or older than {int(PENDING_REPAIR_AGE.total_seconds())}s",
    )
