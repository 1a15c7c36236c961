"""Shared fixtures: every test runs on a fresh node, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import actornet

from .cluster import Cluster, cluster_fixture


@pytest.fixture(autouse=True)
def node() -> Iterator[actornet.Node]:
    """A fresh local node that the module-level API acts on during the test."""
    n = actornet.Node("test@localhost")
    try:
        yield n
    finally:
        n.stop(timeout=5.0)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """Starts child nodes (real OS processes); every one is killed at the end, pass or fail."""
    yield from cluster_fixture()
