"""Rollout side effects as Temporal activities, one module per system touched."""
