"""Why a pod will not serve: failure classification from pod, node, event and log data.

Where it sits: pure functions the waits in activities/kube.py and activities/serving.py call on
every watch event (so a failure is named the moment the API shows it, not at a timer), and that
build the evidence of the non-retryable `ApplicationError` they raise. Nothing here does I/O.

Decisive signals fail the wait at once: an image that cannot be pulled, CrashLoopBackOff, an
OOM kill, a missing Secret or key, a pod the scheduler cannot place while nothing of ours is
terminating, a lost node. A single container exit is decisive only when its log names a known
fatal error (CUDA out of memory, NIXL/UCX, NVSHMEM/IBGDA, a gated or unauthorised model): the
LeaderWorkerSet recreates the whole group on any restart, so the pod may never reach
CrashLoopBackOff, and the log is the only place the cause shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spec.activity_io import EventEvidence, FailureEvidence, ObjectEvidence, ObjectRef
from spec.reasons import FailureReason

IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONFIG_REASONS = ("CreateContainerConfigError",)
START_REASONS = ("CreateContainerError", "RunContainerError", "StartError")
LAST_LOG_LINES = 20


@dataclass(frozen=True)
class LogPattern:
    reason: FailureReason
    name: str
    regex: re.Pattern[str]


# Most specific first: a gated-model 401 often shows in a traceback that also mentions CUDA setup.
CRASH_PATTERNS: tuple[LogPattern, ...] = (
    LogPattern(
        FailureReason.HF_UNAUTHORIZED,
        "Hugging Face 401/403 (gated model or bad token)",
        re.compile(
            r"GatedRepoError|Cannot access gated repo|Access to model \S+ is restricted"
            r"|Invalid user token|(?:401|403) Client Error|huggingface\.co.*\b(?:401|403)\b"
            r"|Unauthorized for url: https://huggingface\.co",
            re.IGNORECASE,
        ),
    ),
    LogPattern(
        FailureReason.CUDA_OOM,
        "CUDA out of memory",
        re.compile(
            r"CUDA out of memory|torch\.(?:cuda\.)?OutOfMemoryError|CUDA error: out of memory"
        ),
    ),
    LogPattern(
        FailureReason.NVSHMEM_INIT,
        "NVSHMEM/IBGDA initialisation failure",
        re.compile(
            r"NVSHMEM API called before NVSHMEM initialization|ibgda\w*\s+failed"
            r"|Unable to create ah"
            r"|nvshmem\w*\s*(?:init\w*)?.*\b(?:failed|failure|error)\b|NVSHMEM_ERROR"
            r"|nvshmemi?_init\w* failed",
            re.IGNORECASE,
        ),
    ),
    LogPattern(
        FailureReason.NIXL_TRANSPORT,
        "NIXL/UCX transport error",
        re.compile(
            r"NIXL_ERR_\w+|UCX\s+(?:ERROR|error)|transports? '[^']*'(?:,'[^']*')* (?:are|is) not "
            r"available|ucp_\w+ failed|UCX.*Endpoint timeout|nixl\w*.*\b(?:error|failed)\b",
            re.IGNORECASE,
        ),
    ),
)


# A crash without a known cause that still says the vLLM engine failed (a traceback, an engine
# start failure): decisive at the first exit, as a crash loop with its last log lines.
ENGINE_FAILURE = LogPattern(
    FailureReason.CRASH_LOOP,
    "vLLM engine failure",
    re.compile(
        r"EngineCore failed to start|Engine core initialization failed"
        r"|Traceback \(most recent call last\)"
    ),
)


@dataclass(frozen=True)
class LogMatch:
    reason: FailureReason
    pattern: str
    line: str


def classify_log(lines: Sequence[str]) -> LogMatch | None:
    """The known fatal error a (crashed) container's log shows, most recent line first; an
    engine failure with no known cause only when no known error shows anywhere."""
    for tier in (CRASH_PATTERNS, (ENGINE_FAILURE,)):
        for line in reversed(lines):
            for pattern in tier:
                if pattern.regex.search(line):
                    return LogMatch(pattern.reason, pattern.name, line)
    return None


@dataclass(frozen=True)
class PodFinding:
    """What is wrong with one pod. `decisive`: fail now. Otherwise (a container exited with an
    error once) the caller reads the container's previous log and fails if `classify_log` names
    a known fatal error; `container` says whose log."""

    reason: FailureReason
    message: str
    pod: str
    container: str | None = None
    decisive: bool = True
    data: dict[str, Any] = field(default_factory=dict)


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _statuses(pod: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    status = pod.get("status") or {}
    yield from status.get("initContainerStatuses") or []
    yield from status.get("containerStatuses") or []


def missing_resources(message: str) -> list[str]:
    """What a scheduler message says is short: "2 Insufficient nvidia.com/gpu" -> nvidia.com/gpu;
    also node-affinity, taint and not-ready exclusions, so the reason is never empty."""
    found = [r.rstrip(".") for r in re.findall(r"Insufficient ([\w./-]+)", message)]
    if re.search(r"didn't match Pod's node affinity/selector|node affinity", message):
        found.append("node affinity/selector")
    if re.search(r"untolerated taint|had taint", message):
        found.append("untolerated taint")
    return list(dict.fromkeys(found))


def node_lost(node: Mapping[str, Any] | None) -> str | None:
    """Why a node no longer runs pods, or None while it is Ready."""
    if node is None:
        return "the node no longer exists"
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") == "True":
        return None
    return (
        f"node {_name(node)} is not Ready ({ready.get('status')}, {ready.get('reason', '')}: "
        f"{ready.get('message', '')})"
    )


def diagnose_pod(
    pod: Mapping[str, Any],
    nodes: Mapping[str, Mapping[str, Any]] | None = None,
    others_terminating: bool = False,
) -> PodFinding | None:
    """Classify one pod. `nodes` (by name, when known) lets a lost node be named;
    `others_terminating` says pods that will free resources are still going away, so
    Unschedulable is expected for now and not a failure."""
    name = _name(pod)
    metadata = pod.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return None
    status = pod.get("status") or {}
    node_name = (pod.get("spec") or {}).get("nodeName")
    if status.get("reason") == "NodeLost":
        return PodFinding(
            FailureReason.NODE_LOST,
            str(status.get("message") or "node lost"),
            name,
            data={"node": node_name},
        )
    if node_name and nodes is not None and node_name in nodes:
        lost = node_lost(nodes[node_name])
        if lost:
            return PodFinding(
                FailureReason.NODE_LOST, f"pod {name}: {lost}", name, data={"node": node_name}
            )
    for container in _statuses(pod):
        finding = _diagnose_container(name, container)
        if finding is not None:
            return finding
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
            and not others_terminating
        ):
            message = str(condition.get("message") or "")
            missing = missing_resources(message)
            what = ", ".join(missing) if missing else "no node fits"
            return PodFinding(
                FailureReason.UNSCHEDULABLE,
                f"pod {name} cannot be scheduled ({what}): {message}",
                name,
                data={"missing": missing, "scheduler_message": message},
            )
    return None


def _diagnose_container(pod: str, status: Mapping[str, Any]) -> PodFinding | None:
    container = str(status.get("name", ""))
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = str(waiting.get("reason") or "")
    message = str(waiting.get("message") or "")
    where = f"pod {pod} container {container}"
    if reason in IMAGE_PULL_REASONS:
        return PodFinding(
            FailureReason.IMAGE_PULL,
            f"{where}: {reason}: {message or status.get('image', '')}",
            pod,
            container,
            data={"image": status.get("image"), "waiting_reason": reason},
        )
    if reason in CONFIG_REASONS:
        return PodFinding(
            FailureReason.CREATE_CONTAINER_CONFIG,
            f"{where}: {reason}: {message}",
            pod,
            container,
            data=_secret_reference(message),
        )
    for terminated in (state.get("terminated"), status.get("lastState", {}).get("terminated")):
        if terminated and terminated.get("reason") == "OOMKilled":
            return PodFinding(
                FailureReason.OOM_KILLED,
                f"{where} was OOMKilled (exit code {terminated.get('exitCode')}): it needs more "
                "memory than its limit",
                pod,
                container,
                data={"exit_code": terminated.get("exitCode")},
            )
    if reason == "CrashLoopBackOff":
        return PodFinding(
            FailureReason.CRASH_LOOP,
            f"{where} is in CrashLoopBackOff (restarted {status.get('restartCount', 0)} times)",
            pod,
            container,
            data={"restart_count": status.get("restartCount", 0)},
        )
    if reason in START_REASONS:
        return PodFinding(FailureReason.CRASH_LOOP, f"{where}: {reason}: {message}", pod, container)
    exits = (
        (state.get("terminated"), False),
        ((status.get("lastState") or {}).get("terminated"), True),
    )
    for terminated, restarted in exits:
        if terminated and int(terminated.get("exitCode", 0) or 0) != 0:
            return PodFinding(
                FailureReason.CRASH_LOOP,
                f"{where} exited with code {terminated.get('exitCode')} "
                f"({terminated.get('reason', 'Error')})",
                pod,
                container,
                decisive=False,
                data={
                    "exit_code": terminated.get("exitCode"),
                    "exit": terminated.get("containerID") or terminated.get("finishedAt"),
                    # The exited instance is the previous one (the container restarted since).
                    "restarted": restarted,
                },
            )
    return None


def _secret_reference(message: str) -> dict[str, Any]:
    """The Secret (and key) a CreateContainerConfigError names, for the evidence."""
    key = re.search(r"couldn't find key (\S+) in Secret (\S+)", message)
    if key:
        return {"secret": key.group(2).split("/")[-1], "key": key.group(1)}
    secret = re.search(r'secret "([^"]+)" not found', message)
    return {"secret": secret.group(1)} if secret else {}


def killed_by_startup_probe(events: Iterable[EventEvidence]) -> bool:
    """The kubelet says it restarted the container because its startup probe kept failing."""
    return any(
        "startup probe" in event.message.lower()
        and (event.reason in ("Killing", "Unhealthy") or "restarted" in event.message)
        for event in events
    )


def crash_finding(finding: PodFinding, log_lines: Sequence[str]) -> PodFinding | None:
    """Refine a crash with the container's log: a known fatal error names the reason and is
    decisive; otherwise the finding stands as it was (decisive only at CrashLoopBackOff)."""
    match = classify_log(log_lines)
    if match is None:
        return finding if finding.decisive else None
    return PodFinding(
        match.reason,
        f"{finding.message}: {match.pattern}: {match.line.strip()}",
        finding.pod,
        finding.container,
        data={**finding.data, "matched_pattern": match.pattern, "matched_line": match.line},
    )


def pod_summary(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a pod's status a person needs to see in the evidence."""
    status = pod.get("status") or {}
    return {
        "phase": status.get("phase"),
        "reason": status.get("reason"),
        "node": (pod.get("spec") or {}).get("nodeName"),
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message") if c.get(k)}
            for c in status.get("conditions") or []
        ],
        "containers": [
            {
                "name": c.get("name"),
                "ready": c.get("ready"),
                "restartCount": c.get("restartCount"),
                "state": c.get("state"),
                "lastState": c.get("lastState"),
            }
            for c in _statuses(pod)
        ],
    }


def events_about(name: str, events: Iterable[Mapping[str, Any]]) -> list[EventEvidence]:
    """Events whose involved object is `name`, oldest first, warnings and normal alike."""
    found = []
    for event in events:
        involved = event.get("involvedObject") or event.get("regarding") or {}
        if involved.get("name") != name:
            continue
        found.append(
            EventEvidence(
                object=f"{involved.get('kind', '')}/{name}",
                type=str(event.get("type") or ""),
                reason=str(event.get("reason") or ""),
                message=str(event.get("message") or event.get("note") or ""),
                count=int(event.get("count") or 1),
            )
        )
    return found


def evidence(
    finding: PodFinding,
    pods: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    log_lines: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> FailureEvidence:
    """The failure's evidence: the failing pod first, the role's other pods, their events."""
    pods = sorted(pods, key=lambda p: _name(p) != finding.pod)
    events = list(events)
    return FailureEvidence(
        reason=finding.reason.value,
        message=finding.message,
        objects=[
            ObjectEvidence(
                ref=ObjectRef.of({"apiVersion": "v1", "kind": "Pod", **p}), status=pod_summary(p)
            )
            for p in pods
        ],
        events=[e for p in pods for e in events_about(_name(p), events)][-40:],
        log_lines=list(log_lines)[-LAST_LOG_LINES:],
        matched_pattern=finding.data.get("matched_pattern"),
        data={**finding.data, **(extra or {})},
    )
