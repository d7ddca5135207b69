"""The `llmd-rollout` command line, behind starter.py.

Where it sits: the top of the product (docs/architecture.md, "Layers"), above rollouts/ (the
Temporal client side, through which it starts, queries and updates workflows), workflows (its
IDs, search attributes and the pure `plan`), activities (whose pure functions `plan` calls
directly), spec and manifests. Nothing imports it but starter.py.

- `parser`, `main`: the verbs and their flags, dispatch, and the error boundary.
- `exit_codes`, `errors`: the exit codes and the one-sentence errors a user can meet.
- `output`, `documents`: JSON for scripts (a versioned envelope) and text for people.
- `live`, `follow`: the live view of a running rollout, and following it to its end.
- `commands/`: one module per verb.
"""
