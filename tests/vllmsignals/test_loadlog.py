"""Reading vLLM's start-up log: weight-loading progress and the API server coming up."""

from __future__ import annotations

from vllmsignals.loadlog import LoadLog, server_up, shard_progress


def test_shard_progress_reads_percent_and_counts() -> None:
    line = "Loading safetensors checkpoint shards:  45% Completed | 73/163 [00:30<00:37,  1.98it/s]"
    progress = shard_progress(line)
    assert progress is not None
    assert (progress.percent, progress.loaded, progress.total) == (45.0, 73, 163)


def test_shard_progress_without_counts() -> None:
    progress = shard_progress("Loading safetensors checkpoint shards: 100% Completed")
    assert progress is not None and progress.percent == 100.0 and progress.total is None


def test_server_up_lines() -> None:
    assert server_up(
        "INFO 07-26 10:09:01 [api_server.py:1818] Starting vLLM API server 0 on http://0.0.0.0:8200"
    )
    assert server_up("INFO:     Application startup complete.")
    assert not server_up("INFO:     Waiting for application startup.")


def test_load_log_reports_changes_only() -> None:
    log = LoadLog()
    assert log.feed(
        "Loading safetensors checkpoint shards:   0% Completed | 0/163 [00:00<?, ?it/s]\n"
    )
    assert not log.feed("Loading safetensors checkpoint shards:   0% Completed | 1/163 [00:01<...]")
    assert log.feed("Loading safetensors checkpoint shards:  12% Completed | 20/163 [00:10<...]")
    assert log.percent == 12.0
    assert not log.feed(
        "INFO 07-26 [loggers.py:122] Engine 000: Avg prompt throughput: 0.0 tokens/s"
    )
    assert log.feed("INFO:     Application startup complete.")
    assert log.server_started
    assert not log.feed("INFO:     Application startup complete.")
    assert list(log.tail)[-1] == "INFO:     Application startup complete."
