"""The custom search attributes that make rollouts findable in Temporal.

Where it sits: the embedded dev server registers them at start (`embedded.temporal`),
docker-compose.yml registers the same names through a one-shot admin-tools service (a test keeps
the two in step), and workflows upsert them through their own typed keys (workflows/search.py,
kept in step by tests/workflows/test_rollout.py): workflow code never imports this package.
"""

from collections.abc import Mapping
from types import MappingProxyType

SEARCH_ATTRIBUTES: Mapping[str, str] = MappingProxyType(
    {
        "LlmdTarget": "Keyword",
        "LlmdPhase": "Keyword",
        "LlmdModel": "Keyword",
        "LlmdImage": "Keyword",
        "LlmdOutcome": "Keyword",
    }
)
"""Search attribute name -> Temporal indexed value type name (as `--search-attribute` takes it)."""
