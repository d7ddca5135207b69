"""The custom search attributes that make rollouts findable in Temporal.

Where it sits: the embedded dev server registers them at start (`embedded.temporal`),
docker-compose.yml registers the same names through a one-shot admin-tools service (a test keeps
the two in step), and workflows upsert them. This module imports nothing, so workflow code can use
it inside the sandbox.
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
