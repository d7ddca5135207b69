"""YAML request bodies without the cost of a pure-Python YAML parser.

Server-side apply bodies are YAML by content type, but most clients (kubectl, helm, the Python
client) send JSON in them. JSON is YAML, so a body that parses as JSON is taken as it is; anything
else goes through libyaml's C loader when PyYAML has it, else the pure-Python one.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml_or_json(raw: bytes) -> Any:
    """The document in `raw` (None for an empty body); raises yaml.YAMLError or
    UnicodeDecodeError on bad input."""
    text = raw.decode() if raw else ""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style that is not JSON
    return yaml.load(text, Loader=_LOADER)
