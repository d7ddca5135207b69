"""Failing a wait the moment its pods show a failure: diagnosis plus the evidence fetched for it.

Where it sits: the LWS, Deployment and model-load waits call `PodFailureCheck.check` on every
watch event with the pods (and nodes) their informers hold. It classifies each pod with
k8s/diagnosis.py; for a container that exited it reads that container's previous log
(once per restart) to name the error; a decisive finding is raised as a `PodFailure`: its
reason, with the pods, their events and the last log lines as evidence (activities/failures.py
turns it into the non-retryable error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from k8s.client import KubeClient, KubeError
from k8s.diagnosis import PodFinding, classify_log, crash_finding, diagnose_pod, evidence
from spec.activity_io import FailureEvidence
from spec.reasons import FailureReason

LOG_TAIL = 100
# Container exits (without a known fatal error) of one role's pods that make a crash loop: the
# LWS recreates the whole group on a restart, so the same pod seldom reaches CrashLoopBackOff.
CRASH_LIMIT = 2
# Exits more that are waited for when none of their logs could be read (a crash is then only
# CrashLoop, though its log might have named it).
UNREAD_EXITS = 2


class PodFailure(Exception):
    """A pod shows a failure waiting cannot fix: why, and the evidence a person acts on."""

    def __init__(self, reason: FailureReason, message: str, evidence: FailureEvidence) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.evidence = evidence


class PodFailureCheck:
    """Checks a set of pods for failures; remembers which crash logs it already read."""

    def __init__(self, client: KubeClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._crash_logs: dict[tuple[str, str, int], list[str]] = {}
        self._crashes: dict[tuple[str, str, str], PodFinding] = {}
        self.last_finding: PodFinding | None = None

    async def check(
        self,
        pods: Sequence[Mapping[str, Any]],
        nodes: Mapping[str, Mapping[str, Any]] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Raise the failure the pods show, if any is decisive."""
        terminating = any((p.get("metadata") or {}).get("deletionTimestamp") for p in pods)
        for pod in pods:
            finding = diagnose_pod(pod, nodes, terminating)
            if finding is None:
                continue
            lines: list[str] = []
            if finding.container and finding.reason in (
                FailureReason.CRASH_LOOP,
                FailureReason.OOM_KILLED,
            ):
                lines = await self._logs(pod, finding.container, finding.data.get("restarted"))
            decided = (
                crash_finding(finding, lines)
                if finding.reason == FailureReason.CRASH_LOOP
                else finding
            )
            exited = "exit_code" in finding.data or "restart_count" in finding.data
            if (
                decided is not None
                and decided.reason == FailureReason.CRASH_LOOP
                and exited
                and not lines
            ):
                # No log to name the crash by (the endpoint failed, or the pod we saw was
                # already replaced): the next exit's log may name it; count this one meanwhile.
                decided = None
            if decided is None:
                self.last_finding = finding
                self._crashes[_crash_key(pod, finding)] = finding
                unread = 0 if lines or not exited else UNREAD_EXITS
                if len(self._crashes) < CRASH_LIMIT + unread:
                    continue
                decided = PodFinding(
                    FailureReason.CRASH_LOOP,
                    f"{finding.message}; {len(self._crashes)} container exits so far "
                    "(the group is recreated after each)",
                    finding.pod,
                    finding.container,
                    data={**finding.data, "exits": len(self._crashes)},
                )
            raise await self._failure(decided, pods, lines, extra)

    async def _logs(
        self, pod: Mapping[str, Any], container: str, restarted: bool | None = True
    ) -> list[str]:
        name = str(pod["metadata"]["name"])
        restarts = _restart_count(pod, container)
        key = (str(pod["metadata"].get("uid", name)), container, restarts)
        if key not in self._crash_logs:
            self._crash_logs[key] = await asyncio.to_thread(
                self._read_logs, name, container, restarted is not False
            )
        return self._crash_logs[key]

    def _read_logs(self, pod: str, container: str, restarted: bool) -> list[str]:
        """The exited instance's log. Which instance that is depends on whether the container
        restarted since the status was read: the previous one when it had, else the current one
        (which, by the time we ask, may have restarted: then it is the previous one). Both are
        read, the likelier first, and the one naming a fatal error wins; under load the restart
        races the read, and the new instance's log names nothing."""
        found: list[str] = []
        for previous in (True, False) if restarted else (False, True):
            try:
                lines = self.client.pod_log(self.namespace, pod, container, previous, LOG_TAIL)
            except KubeError as error:
                # No log is no evidence, but a refused one is a missing RBAC rule: say so.
                if error.status == 403:
                    raise
                continue
            if lines and classify_log(lines) is not None:
                return lines
            found = found or (lines or [])
        return found

    async def _failure(
        self,
        finding: PodFinding,
        pods: Sequence[Mapping[str, Any]],
        lines: list[str],
        extra: Mapping[str, Any] | None,
    ) -> PodFailure:
        try:
            events, _ = await asyncio.to_thread(
                self.client.list_objects, "v1", "Event", self.namespace
            )
        except KubeError as error:
            # As with the logs: no events are no evidence, refused ones a missing RBAC rule.
            if error.status == 403:
                raise
            events = []
        found = evidence(finding, pods, events, lines, extra)
        return PodFailure(finding.reason, finding.message, found)


def _crash_key(pod: Mapping[str, Any], finding: PodFinding) -> tuple[str, str, str]:
    """One container exit, the same whether it shows as `state` or, restarted, `lastState`."""
    uid = str((pod.get("metadata") or {}).get("uid", finding.pod))
    container = finding.container or ""
    exit_id = finding.data.get("exit") or _restart_count(pod, container)
    return uid, container, str(exit_id)


def _restart_count(pod: Mapping[str, Any], container: str) -> int:
    status = pod.get("status") or {}
    for item in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        if item.get("name") == container:
            return int(item.get("restartCount") or 0)
    return 0
