"""Runtime plumbing shared by the entry points: nothing here knows about rollouts.

- `temporal`: the embedded Temporal dev server (the demo's and the tests' default).
- `search_attributes`: the custom search attribute names and types every Temporal we use carries.
- `connect`: connection settings from flags and environment, and the client factory.
- `logging`: structlog configuration (JSON lines off a TTY, console on one).
- `process_exit`: the hard exit our short-lived entry points leave through.
"""
