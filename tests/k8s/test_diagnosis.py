"""Failure classification from what the API shows: pod states, scheduler messages, crash logs."""

from __future__ import annotations

from k8s.diagnosis import (
    classify_log,
    crash_finding,
    diagnose_pod,
    evidence,
    missing_resources,
)
from spec.reasons import FailureReason
from tests.activities.builders import event, node, pod, unschedulable

CUDA_OOM_LOG = [
    "INFO 07-26 10:01:12 [gpu_model_runner.py:1892] Model loading took 83.58 GiB",
    "ERROR 07-26 10:01:40 [core.py:586] EngineCore failed to start.",
    "ERROR 07-26 10:01:40 [core.py:586] torch.OutOfMemoryError: CUDA out of memory. Tried to "
    "allocate 7.00 GiB. GPU 0 has a total capacity of 139.81 GiB of which 1.46 GiB is free.",
    "RuntimeError: Engine core initialization failed. See root cause above.",
]
NIXL_LOG = [
    "INFO 07-26 10:01:12 [nixl_connector.py:411] Initializing NIXL wrapper",
    "[1753524192.912331] [decode-0:187  :0]     ucp_context.c:2339 UCX  ERROR   transports "
    "'cuda_ipc','cuda_copy' are not available, please use one or more of: cma, posix, tcp",
    "ERROR 07-26 10:01:40 [core.py:586] nixl._bindings.nixlBackendError: NIXL_ERR_BACKEND",
]
NVSHMEM_LOG = [
    "NVSHMEM INFO [0] bootstrap: using UID socket interface eth0",
    "/workspace/nvshmem/src/modules/transport/ibgda/ibgda.cpp:2089: NULL value "
    "Unable to create ah.",
    "/workspace/nvshmem/src/modules/transport/ibgda/ibgda.cpp:3033: non-zero status: 22 "
    "ibgda_rc_init2rtr failed",
    "ERROR 07-26 10:01:40 [core.py:586] RuntimeError: DeepEP error: NVSHMEM initialization failed",
]
HF_LOG = [
    "huggingface_hub.errors.GatedRepoError: 401 Client Error. (Request ID: Root=1-6884d3f1)",
    "Cannot access gated repo for url https://huggingface.co/deepseek-ai/DeepSeek-R1-0528/"
    "resolve/main/config.json.",
    "Access to model deepseek-ai/DeepSeek-R1-0528 is restricted. You must have access to it.",
]
GENERIC_LOG = [
    "INFO 07-26 10:01:12 [core.py:526] Waiting for init message from front-end.",
    "Killed",
]
ENGINE_LOG = [
    "ERROR 07-26 10:01:40 [core.py:586] EngineCore failed to start.",
    "ERROR 07-26 10:01:40 [core.py:586] Traceback (most recent call last):",
    "ERROR 07-26 10:01:40 [core.py:586] RuntimeError: something nobody has seen before",
]


def crashed(**extra: object) -> dict[str, object]:
    return pod(
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting"}},
        last_state={"terminated": {"exitCode": 1, "reason": "Error"}},
        restarts=1,
        **extra,  # type: ignore[arg-type]
    )


def test_image_pull_backoff_names_the_image() -> None:
    finding = diagnose_pod(
        pod(
            state={
                "waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}
            }
        )
    )
    assert finding is not None and finding.decisive
    assert finding.reason == FailureReason.IMAGE_PULL
    assert finding.data["image"] == "ghcr.io/llm-d/llm-d-dev:v0.2.0-rc.1"


def test_err_image_pull_fails_at_once() -> None:
    finding = diagnose_pod(
        pod(
            state={
                "waiting": {
                    "reason": "ErrImagePull",
                    "message": "failed to pull: httpReadSeeker: failed open: unexpected EOF",
                }
            }
        )
    )
    assert finding is not None and finding.reason == FailureReason.IMAGE_PULL
    assert "httpReadSeeker" in finding.message


def test_crash_loop_with_cuda_oom_log_is_named_cuda_oom() -> None:
    finding = diagnose_pod(crashed())
    assert finding is not None and finding.reason == FailureReason.CRASH_LOOP
    refined = crash_finding(finding, CUDA_OOM_LOG)
    assert refined is not None and refined.reason == FailureReason.CUDA_OOM
    assert refined.data["matched_pattern"] == "CUDA out of memory"
    assert "torch.OutOfMemoryError" in refined.data["matched_line"]


def test_each_known_crash_pattern_is_recognised() -> None:
    cases = {
        FailureReason.CUDA_OOM: CUDA_OOM_LOG,
        FailureReason.NIXL_TRANSPORT: NIXL_LOG,
        FailureReason.NVSHMEM_INIT: NVSHMEM_LOG,
        FailureReason.HF_UNAUTHORIZED: HF_LOG,
    }
    for reason, lines in cases.items():
        match = classify_log(lines)
        assert match is not None and match.reason == reason, (reason, match)


def test_nvshmem_info_lines_are_not_failures() -> None:
    assert classify_log(["NVSHMEM INFO [0] bootstrap: using UID socket interface eth0"]) is None


def test_unpatterned_crash_loop_stays_a_crash_loop_with_its_log() -> None:
    finding = diagnose_pod(crashed())
    assert finding is not None
    refined = crash_finding(finding, GENERIC_LOG)
    assert refined is not None and refined.reason == FailureReason.CRASH_LOOP


def test_an_engine_failure_without_known_cause_is_decisive_at_the_first_exit() -> None:
    finding = diagnose_pod(pod(state={"terminated": {"exitCode": 1, "reason": "Error"}}))
    assert finding is not None
    named = crash_finding(finding, ENGINE_LOG)
    assert named is not None and named.decisive and named.reason == FailureReason.CRASH_LOOP
    assert named.data["matched_pattern"] == "vLLM engine failure"
    # A known error wins over the generic engine failure printed after it.
    assert classify_log([*CUDA_OOM_LOG, *ENGINE_LOG]).reason == FailureReason.CUDA_OOM  # type: ignore[union-attr]


def test_single_unpatterned_exit_is_not_decisive() -> None:
    exited = pod(
        state={"terminated": {"exitCode": 1, "reason": "Error"}},
    )
    finding = diagnose_pod(exited)
    assert finding is not None and not finding.decisive
    assert crash_finding(finding, GENERIC_LOG) is None
    named = crash_finding(finding, NIXL_LOG)
    assert named is not None and named.decisive and named.reason == FailureReason.NIXL_TRANSPORT


def test_oom_killed_in_last_state() -> None:
    finding = diagnose_pod(
        pod(
            state={"waiting": {"reason": "CrashLoopBackOff"}},
            last_state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            restarts=1,
        )
    )
    assert finding is not None and finding.reason == FailureReason.OOM_KILLED
    assert finding.data["exit_code"] == 137


def test_unschedulable_names_the_missing_resource() -> None:
    message = (
        "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are "
        "available: 2 No preemption victims found for incoming pod."
    )
    finding = diagnose_pod(
        pod(
            node=None,
            state={"waiting": {"reason": "ContainerCreating"}},
            conditions=unschedulable(message),
            phase="Pending",
        )
    )
    assert finding is not None and finding.reason == FailureReason.UNSCHEDULABLE
    assert finding.data["missing"] == ["nvidia.com/gpu"]
    assert finding.data["scheduler_message"] == message


def test_unschedulable_is_expected_while_old_pods_terminate() -> None:
    waiting = pod(
        node=None,
        state={"waiting": {"reason": "ContainerCreating"}},
        conditions=unschedulable("0/2 nodes are available: 2 Insufficient nvidia.com/gpu."),
        phase="Pending",
    )
    assert diagnose_pod(waiting, others_terminating=True) is None


def test_affinity_mismatch_is_named() -> None:
    message = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    assert missing_resources(message) == ["node affinity/selector"]


def test_missing_secret_key_is_create_container_config_error() -> None:
    finding = diagnose_pod(
        pod(
            state={
                "waiting": {
                    "reason": "CreateContainerConfigError",
                    "message": "couldn't find key HF_TOKEN in Secret llm-d-wide-ep/llm-d-hf-token",
                }
            }
        )
    )
    assert finding is not None and finding.reason == FailureReason.CREATE_CONTAINER_CONFIG
    assert finding.data == {"secret": "llm-d-hf-token", "key": "HF_TOKEN"}


def test_missing_secret_is_named() -> None:
    finding = diagnose_pod(
        pod(
            state={
                "waiting": {
                    "reason": "CreateContainerConfigError",
                    "message": 'secret "llm-d-hf-token" not found',
                }
            }
        )
    )
    assert finding is not None and finding.data == {"secret": "llm-d-hf-token"}


def test_pod_on_a_not_ready_node_is_node_lost() -> None:
    nodes = {"h200-node-0": node("h200-node-0", ready="Unknown")}
    finding = diagnose_pod(pod(), nodes)
    assert finding is not None and finding.reason == FailureReason.NODE_LOST
    assert finding.data["node"] == "h200-node-0"


def test_pod_status_node_lost() -> None:
    lost = pod()
    lost["status"]["reason"] = "NodeLost"
    lost["status"]["message"] = "Node h200-node-0 which was running pod is unresponsive"
    finding = diagnose_pod(lost)
    assert finding is not None and finding.reason == FailureReason.NODE_LOST


def test_terminating_pods_and_healthy_pods_are_not_failures() -> None:
    assert diagnose_pod(crashed(deleting=True)) is None
    assert diagnose_pod(pod()) is None
    assert diagnose_pod(pod(ready=True), {"h200-node-0": node("h200-node-0")}) is None


def test_evidence_puts_the_failing_pod_first_with_its_events_and_log() -> None:
    failing = crashed(name="decode-0-1")
    finding = crash_finding(diagnose_pod(failing), CUDA_OOM_LOG)  # type: ignore[arg-type]
    assert finding is not None
    found = evidence(
        finding,
        [pod(name="decode-0"), failing],
        [
            event("decode-0-1", "BackOff", "Back-off restarting failed container"),
            event("other", "BackOff", "unrelated"),
        ],
        CUDA_OOM_LOG,
    )
    assert found.reason == "CudaOutOfMemory"
    assert found.objects[0].ref.name == "decode-0-1"
    assert [e.object for e in found.events] == ["Pod/decode-0-1"]
    assert found.log_lines[-1].startswith("RuntimeError")
    assert found.matched_pattern == "CUDA out of memory"
