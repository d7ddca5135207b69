"""One module per verb of `llmd-rollout`; each exports `run(args, output) -> int`."""
