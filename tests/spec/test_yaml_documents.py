"""spec/yaml_documents.py: the worker's YAML goes through libyaml, with the safe loader's
results and refusals."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from manifests.crds import BUNDLE_FILES, builtin_crds, crd_text
from spec.yaml_documents import load_document, load_documents


def test_the_builtin_crd_bundles_are_parsed_without_the_pure_python_loader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every dependencies step parses its bundle; the pure-Python loader took six times as long."""

    def refused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("parsed by the pure-Python loader")

    expected = {
        bundle: [yaml.safe_load(crd_text(name)) for name in names]
        for bundle, names in BUNDLE_FILES.items()
    }
    monkeypatch.setattr(yaml.SafeLoader, "get_single_data", refused)
    monkeypatch.setattr(yaml.SafeLoader, "get_data", refused)

    assert {bundle: builtin_crds(bundle) for bundle in BUNDLE_FILES} == expected


def test_documents_are_read_in_order_and_an_empty_text_is_none() -> None:
    assert load_documents("a: 1\n---\n- b\n") == [{"a": 1}, ["b"]]
    assert load_document("") is None


def test_a_tag_that_would_construct_an_object_is_refused() -> None:
    with pytest.raises(yaml.constructor.ConstructorError):
        load_document("!!python/object/apply:os.system ['true']")
