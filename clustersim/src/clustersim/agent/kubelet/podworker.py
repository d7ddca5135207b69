"""The life of one pod on a simulated node, from sandbox to deletion.

Volumes are checked (FailedMount), a pod IP is allocated, init containers run in order (native
sidecars, `restartPolicy: Always`, start and keep running; regular ones run to completion), then
the app containers start. Each container pulls its image (ErrImagePull / ImagePullBackOff with
back-off), resolves its environment (CreateContainerConfigError), starts its process and probes,
and restarts per the pod's restartPolicy with CrashLoopBackOff back-off (10 s doubling to 5 min,
times the time scale). Deletion stops app containers, then sidecars in reverse order, and removes
the pod with gracePeriodSeconds=0, as the kubelet does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from clustersim.agent.faults import Fault
from clustersim.agent.kubelet.container import ContainerRuntime
from clustersim.agent.kubelet.env import ContainerConfigError, check_volumes, resolve_env
from clustersim.agent.kubelet.images import go_duration, normalized_reference, pull_policy
from clustersim.agent.kubelet.probes import ProbeWorker
from clustersim.agent.kubelet.status import pod_status
from clustersim.agent.meta import KubeObject, name_of, namespace_of, rfc3339, uid_of
from clustersim.agent.workloads import vllm_logs
from clustersim.agent.workloads.detect import process_for
from clustersim.agent.workloads.process import ExitStatus, Process, ProcessContext
from clustersim.agent.workloads.vllm import VllmProcess, parse_vllm_command

if TYPE_CHECKING:
    from clustersim.agent.kubelet.kubelet import Kubelet, SimNode

log = logging.getLogger("clustersim.agent.kubelet")

_PROBES = (
    ("startupProbe", "startup"),
    ("readinessProbe", "readiness"),
    ("livenessProbe", "liveness"),
)
_PROBE_KEY = {kind: key for key, kind in _PROBES}
_PROBE_TITLE = {"startup": "Startup", "readiness": "Readiness", "liveness": "Liveness"}


class PodWorker:
    def __init__(self, kubelet: Kubelet, node: SimNode, pod: KubeObject) -> None:
        self.kubelet = kubelet
        self.ctx = kubelet.ctx
        self.node = node
        self.pod = pod
        self.uid = uid_of(pod)
        self.namespace = namespace_of(pod)
        self.name = name_of(pod)
        spec = pod.get("spec") or {}
        self.restart_policy = str(spec.get("restartPolicy") or "Always")
        has_init = bool(spec.get("initContainers"))
        self.init = [
            ContainerRuntime(c, init=True, waiting_reason="PodInitializing")
            for c in spec.get("initContainers") or []
        ]
        self.main = [
            ContainerRuntime(
                c, init=False, waiting_reason="PodInitializing" if has_init else "ContainerCreating"
            )
            for c in spec.get("containers") or []
        ]
        self.ip: str | None = None
        self.start_time: str | None = None
        self.sandbox_ready = False
        self.initialized = False
        self.failed: tuple[str, str] | None = None
        self.conditions: list[KubeObject] = []
        self.terminating = False
        self.node_down = node.down
        self.gone = False
        self._lifecycle: asyncio.Task[None] | None = None
        self._loops: set[asyncio.Task[ExitStatus | None]] = set()

    # ---- wiring -------------------------------------------------------------------------

    @property
    def containers(self) -> list[ContainerRuntime]:
        return self.init + self.main

    def container(self, name: str) -> ContainerRuntime | None:
        for runtime in self.containers:
            if runtime.name == name:
                return runtime
        return None

    def start(self) -> None:
        if not self.node_down and self._lifecycle is None:
            self._lifecycle = asyncio.create_task(self._run(), name=f"pod {self.name}")

    def update(self, pod: KubeObject) -> None:
        self.pod = pod

    def dirty(self) -> None:
        if not self.node_down and not self.gone:
            self.kubelet.mark_dirty(self)

    def status(self) -> KubeObject:
        return pod_status(self)

    def event(
        self, type_: str, reason: str, message: str, runtime: ContainerRuntime | None = None
    ) -> None:
        field_path = None
        if runtime is not None:
            section = "initContainers" if runtime.is_init else "containers"
            field_path = f"spec.{section}{{{runtime.name}}}"
        self.ctx.recorder.emit(
            self.pod,
            type_,
            reason,
            message,
            component="kubelet",
            host=self.node.name,
            field_path=field_path,
        )

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    # ---- lifecycle ----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._sandbox()
            for runtime in self.init:
                if runtime.is_sidecar:
                    self._spawn(self._container_loop(runtime))
                    await runtime.started_event.wait()
                elif not await self._run_init(runtime):
                    return
            self.initialized = True
            self.dirty()
            for runtime in self.main:
                self._spawn(self._container_loop(runtime))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s lifecycle failed", self.namespace, self.name)

    def _spawn(self, coroutine: Coroutine[Any, Any, ExitStatus | None]) -> None:
        task = asyncio.create_task(coroutine)
        self._loops.add(task)
        task.add_done_callback(self._loop_done)

    def _loop_done(self, task: asyncio.Task[ExitStatus | None]) -> None:
        self._loops.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "container loop of %s/%s failed",
                self.namespace,
                self.name,
                exc_info=task.exception(),
            )
        self.dirty()

    async def _sandbox(self) -> None:
        retry = self.ctx.scale.period(self.ctx.profile.durations.crash_backoff_initial)
        while True:
            message = await check_volumes(self.ctx.client, self.pod)
            if message is None:
                break
            self.event("Warning", "FailedMount", message)
            await self._sleep(retry)
        self.ip = self.ctx.ipam.allocate(self.uid)
        self.start_time = self.start_time or rfc3339()
        self.sandbox_ready = True
        self.dirty()

    async def _run_init(self, runtime: ContainerRuntime) -> bool:
        """A regular init container to completion; False when the pod failed for good."""
        while True:
            status = await self._run_once(runtime)
            if status.code == 0:
                runtime.completed = True
                self.dirty()
                return True
            if self.restart_policy == "Never":
                self.failed = ("Failed", f"init container {runtime.name} failed")
                self.dirty()
                return False
            await self._crash_backoff(runtime)

    async def _container_loop(self, runtime: ContainerRuntime) -> ExitStatus | None:
        while True:
            status = await self._run_once(runtime)
            restart = (
                runtime.is_sidecar
                or self.restart_policy == "Always"
                or (self.restart_policy == "OnFailure" and status.code != 0)
            )
            if not restart:
                self.dirty()
                return status
            await self._crash_backoff(runtime)

    async def _crash_backoff(self, runtime: ContainerRuntime) -> None:
        durations = self.ctx.profile.durations
        ran = time.monotonic() - runtime.run_started
        if ran >= self.ctx.scale.delay(2 * durations.crash_backoff_max):
            runtime.crash_step = 0
        step = runtime.crash_step
        runtime.crash_step += 1
        if step == 0:
            return
        simulated = min(
            durations.crash_backoff_initial * 2 ** (step - 1), durations.crash_backoff_max
        )
        runtime.last_state = runtime.state
        runtime.wait(
            "CrashLoopBackOff",
            f"back-off {go_duration(simulated)} restarting failed container={runtime.name} "
            f"pod={self.name}_{self.namespace}({self.uid})",
        )
        self.event(
            "Warning",
            "BackOff",
            f"Back-off restarting failed container {runtime.name} in pod "
            f"{self.name}_{self.namespace}({self.uid})",
            runtime,
        )
        self.dirty()
        await self._sleep(self.ctx.scale.delay(simulated))

    # ---- one container instance ---------------------------------------------------------

    async def _pull(self, runtime: ContainerRuntime) -> None:
        image = str(runtime.spec.get("image") or "")
        policy = pull_policy(runtime.spec)
        images = self.node.images
        profile = self.ctx.profile
        while True:
            if (image in images.present and policy == "IfNotPresent") or policy == "Never":
                if image in images.present:
                    self.event(
                        "Normal",
                        "Pulled",
                        f'Container image "{image}" already present on machine',
                        runtime,
                    )
                    runtime.image_ref = image
                    return
                message = f'Container image "{image}" is not present with pull policy of Never'
                runtime.wait("ErrImageNeverPull", message)
                self.event("Warning", "ErrImageNeverPull", message, runtime)
                self.dirty()
                await self._sleep(self.ctx.scale.period(profile.durations.crash_backoff_initial))
                continue
            self.event("Normal", "Pulling", f'Pulling image "{image}"', runtime)
            queued = time.monotonic()
            fault = self.ctx.faults.take("image_pull", self.pod, runtime.spec)
            async with images.slot:
                began = time.monotonic()
                # Planned once the slot is ours: a pod queued behind another pod's pull of the
                # same image finds it in the store then, and its own pull only resolves the
                # reference, as containerd does for content it already holds. One full pull per
                # image per node.
                plan = images.plan(profile, image)
                await self._sleep(self.ctx.scale.delay(plan.simulated_seconds))
            failure = fault is not None or not plan.known
            if not failure:
                images.present.add(image)
                runtime.image_ref = image
                runtime.pull_step = 0
                factor = self.ctx.scale.factor or 1.0
                pulled = plan.simulated_seconds
                waited = pulled + (began - queued) / factor
                self.event(
                    "Normal",
                    "Pulled",
                    f'Successfully pulled image "{image}" in {go_duration(pulled)} '
                    f"({go_duration(waited)} including waiting). "
                    f"Image size: {plan.size_bytes} bytes.",
                    runtime,
                )
                return
            await self._pull_failed(runtime, image, fault)

    async def _pull_failed(
        self, runtime: ContainerRuntime, image: str, fault: Fault | None
    ) -> None:
        reference = normalized_reference(image)
        detail = (
            fault.message
            if fault is not None and fault.message
            else (
                f'failed to pull and unpack image "{reference}": failed to resolve reference '
                f'"{reference}": {reference}: not found'
            )
        )
        error = f"rpc error: code = NotFound desc = {detail}"
        runtime.wait("ErrImagePull", error)
        self.event("Warning", "Failed", f'Failed to pull image "{image}": {error}', runtime)
        self.event("Warning", "Failed", "Error: ErrImagePull", runtime)
        self.dirty()
        durations = self.ctx.profile.durations
        step = runtime.pull_step
        runtime.pull_step += 1
        simulated = min(durations.crash_backoff_initial * 2**step, durations.crash_backoff_max)
        # The ErrImagePull state shows until the next sync, then the back-off does.
        await self._sleep(min(self.ctx.scale.delay(simulated) / 2, 1.0))
        runtime.wait("ImagePullBackOff", f'Back-off pulling image "{image}"')
        self.event("Normal", "BackOff", f'Back-off pulling image "{image}"', runtime)
        self.event("Warning", "Failed", "Error: ImagePullBackOff", runtime)
        self.dirty()
        await self._sleep(self.ctx.scale.delay(simulated) / 2)

    async def _environment(self, runtime: ContainerRuntime) -> dict[str, str]:
        retry = self.ctx.scale.period(self.ctx.profile.durations.crash_backoff_initial)
        while True:
            try:
                return await resolve_env(
                    self.ctx.client, self.pod, runtime.spec, self.ip or "", self.node.ip
                )
            except ContainerConfigError as error:
                runtime.wait("CreateContainerConfigError", str(error))
                self.event("Warning", "Failed", f"Error: {error}", runtime)
                self.dirty()
                await self._sleep(retry)

    def _instance_faults(self, runtime: ContainerRuntime) -> list[Fault]:
        faults: list[Fault] = []
        for kind in ("crash", "oom", "slow_load", "load_hang", "degrade"):
            if kind == "oom" and any(f.kind == "crash" for f in faults):
                continue
            fault = self.ctx.faults.take(kind, self.pod, runtime.spec)
            if fault is not None:
                faults.append(fault)
        return faults

    async def _run_once(self, runtime: ContainerRuntime) -> ExitStatus:
        await self._pull(runtime)
        env = await self._environment(runtime)
        await self._sleep(self.ctx.scale.delay(self.ctx.profile.durations.container_start) / 2)
        self.event("Normal", "Created", f"Created container: {runtime.name}", runtime)
        probes = {key: runtime.spec[key] for key, _ in _PROBES if runtime.spec.get(key)}
        log_buffer = runtime.begin_instance(probes)
        faults = self._instance_faults(runtime)
        process = process_for(
            ProcessContext(
                pod=self.pod,
                container=runtime.spec,
                pod_ip=self.ip or "",
                env=env,
                log=log_buffer,
                scale=self.ctx.scale,
                durations=self.ctx.profile.durations,
                registry=self.ctx.registry,
                http=self.ctx.http,
                gateway=self.ctx.gateway,
                faults=faults,
                is_init=runtime.is_init,
                is_sidecar=runtime.is_sidecar,
            )
        )
        runtime.process = process
        self.event("Normal", "Started", f"Started container {runtime.name}", runtime)
        self.dirty()
        task = asyncio.create_task(self._supervise(process, runtime, faults))
        runtime.process_task = task
        first = "startupProbe" if "startupProbe" in probes else None
        for key, kind in _PROBES:
            if key in probes and (first is None or key == first):
                runtime.probe_tasks.append(asyncio.create_task(self._probe(runtime, kind)))
        # Shielded: cancelling the container loop (deletion, node loss) must not kill the
        # process silently; termination stops it explicitly.
        status = await asyncio.shield(task)
        runtime.process_task = None
        runtime.end_instance(status)
        self.dirty()
        return status

    async def _supervise(
        self, process: Process, runtime: ContainerRuntime, faults: list[Fault]
    ) -> ExitStatus:
        """Run the process until it exits, a probe kills it, or an injected crash fires.

        Fake vLLM plays crash faults itself (its error lines land mid-load); for every other
        process the crash is applied here.
        """
        run = asyncio.create_task(process.run())
        kill = asyncio.create_task(runtime.kill_event.wait())
        waiters: set[asyncio.Task[Any]] = {run, kill}
        crash = next((f for f in faults if f.kind in ("crash", "oom")), None)
        if crash is not None and not isinstance(process, VllmProcess):
            waiters.add(
                asyncio.create_task(asyncio.sleep(self.ctx.scale.delay(crash.after_seconds)))
            )
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if waiter is not run and not waiter.done():
                    waiter.cancel()
        if run in done:
            return run.result()
        process.stop()
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(run), timeout=2.0)
        if not run.done():
            run.cancel()
        if runtime.kill_reason is not None or crash is None:
            return ExitStatus(137, "Error")
        if crash.kind == "oom":
            return ExitStatus(crash.exit_code, "OOMKilled")
        if runtime.log is not None:
            command = parse_vllm_command(runtime.spec, {})
            model = command.model if command else "model"
            runtime.log.write("\n".join(vllm_logs.crash_lines(crash.error, model, self.name)))
        return ExitStatus(crash.exit_code, "Error")

    async def _probe(self, runtime: ContainerRuntime, kind: str) -> None:
        spec = runtime.spec[_PROBE_KEY[kind]]

        def failed(probe_kind: str, message: str) -> None:
            self.event(
                "Warning",
                "Unhealthy",
                f"{_PROBE_TITLE[probe_kind]} probe failed: {message}",
                runtime,
            )

        worker = ProbeWorker(
            kind,
            spec,
            runtime.spec,
            self.ip or "",
            self.ctx.scale,
            self.ctx.http,
            lambda probe_kind, ok: self._probe_changed(runtime, probe_kind, ok),
            failed,
        )
        await worker.run()

    def _probe_changed(self, runtime: ContainerRuntime, kind: str, ok: bool) -> None:
        if kind == "startup" and ok:
            runtime.startup_ok = True
            runtime.started_event.set()
            for key, other in _PROBES[1:]:
                if key in runtime.spec:
                    runtime.probe_tasks.append(asyncio.create_task(self._probe(runtime, other)))
        elif kind == "readiness":
            runtime.readiness_ok = ok
        elif not ok:
            runtime.kill_reason = kind
            self.event(
                "Normal",
                "Killing",
                f"Container {runtime.name} failed {kind} probe, will be restarted",
                runtime,
            )
            runtime.kill_event.set()
        self.dirty()

    # ---- termination and node loss ------------------------------------------------------

    def _cancel_loops(self) -> None:
        if self._lifecycle is not None:
            self._lifecycle.cancel()
            self._lifecycle = None
        for task in list(self._loops):
            task.cancel()

    async def _stop_container(self, runtime: ContainerRuntime, grace: float) -> None:
        task = runtime.process_task
        if task is None or runtime.process is None:
            return
        runtime.process.stop()
        try:
            status = await asyncio.wait_for(asyncio.shield(task), timeout=max(grace, 0.05))
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
            status = ExitStatus(137, "Error")
        runtime.process_task = None
        runtime.end_instance(status)

    async def terminate(self) -> None:
        """Graceful deletion: SIGTERM app containers, then sidecars in reverse order, then delete.

        Stopping takes the profile's container_stop time (bounded by the pod's grace period).
        A pod on a failed node is finished the same way once evicted, as if the node had been
        fenced, so its controller can replace it.
        """
        if self.terminating:
            return
        self.terminating = True
        self._cancel_loops()
        metadata = self.pod.get("metadata") or {}
        grace = float(metadata.get("deletionGracePeriodSeconds") or 30)
        wall = self.ctx.scale.delay(min(grace, self.ctx.profile.durations.container_stop))
        sidecars = [c for c in reversed(self.init) if c.is_sidecar]
        for runtime in self.main + sidecars:
            if runtime.process_task is not None and not self.node_down:
                self.event("Normal", "Killing", f"Stopping container {runtime.name}", runtime)
        await self._sleep(wall)
        await asyncio.gather(*(self._stop_container(c, wall) for c in self.main))
        for runtime in sidecars:
            await self._stop_container(runtime, wall)
        if not self.node_down:
            await self.kubelet.flush_now(self)
        await self.kubelet.remove_pod(self)

    async def stop_everything(self) -> None:
        """The pod object is gone (force delete): stop at once, no events."""
        self.terminating = True
        self._cancel_loops()
        for runtime in self.containers:
            await self._stop_container(runtime, 0.05)

    async def lose_node(self) -> None:
        """The node failed: everything stops without a word; the API keeps the last status."""
        self.node_down = True
        self._cancel_loops()
        for runtime in self.containers:
            if runtime.process is not None:
                runtime.process.stop()
            task = runtime.process_task
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                runtime.process_task = None
            runtime.lose_instance()

    def recover_node(self) -> None:
        """The node is back (rebooted): the sandbox and every container start again."""
        self.node_down = False
        self.initialized = False
        self.sandbox_ready = False
        for runtime in self.containers:
            runtime.completed = False
            if "terminated" in runtime.state:
                runtime.last_state = runtime.state
            runtime.wait("ContainerCreating")
        self.dirty()
        if not self.terminating:
            self.start()
