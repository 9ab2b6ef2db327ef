"""Fixtures of the training tests."""

import pytest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The synthesised demo corpus, written once per test module."""
    from encodec_train.data.synth import ensure_demo_corpus

    root = tmp_path_factory.mktemp("demo_corpus")
    ensure_demo_corpus(root)
    return root
