"""vLLM /metrics counters, summed over label sets."""

from __future__ import annotations

from vllmsignals.metrics import (
    GENERATION_TOKENS,
    PROMPT_TOKENS,
    REQUEST_SUCCESS,
    counter_sums,
    delta,
)

METRICS = """# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="deepseek-ai/DeepSeek-R1-0528"} 120.0
vllm:prompt_tokens_total{engine="1",model_name="deepseek-ai/DeepSeek-R1-0528"} 30.0
vllm:generation_tokens_total{engine="0",model_name="deepseek-ai/DeepSeek-R1-0528"} 64.0
vllm:request_success_total{engine="0",finished_reason="length"} 2.0
vllm:request_success_total{engine="0",finished_reason="stop"} 1.0
vllm:num_requests_running{engine="0"} 0.0
"""


def test_counters_are_summed_over_label_sets() -> None:
    sums = counter_sums(METRICS)
    assert sums == {PROMPT_TOKENS: 150.0, GENERATION_TOKENS: 64.0, REQUEST_SUCCESS: 3.0}


def test_absent_counters_are_zero_and_deltas_subtract() -> None:
    before = counter_sums("")
    assert before == {PROMPT_TOKENS: 0.0, GENERATION_TOKENS: 0.0, REQUEST_SUCCESS: 0.0}
    assert delta(before, counter_sums(METRICS))[PROMPT_TOKENS] == 150.0
