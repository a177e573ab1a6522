"""Fixtures of the adapter contract suite: one test body, every backend."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from mcrepl.adapters.base import ReplicaAdapter

from .backends import BACKENDS, Backend


@pytest.fixture(params=BACKENDS, ids=[b.id for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param


@pytest.fixture
def endpoints(backend: Backend, request: pytest.FixtureRequest) -> dict[str, str]:
    """Local-stack endpoints; the memory backend needs none, so it never starts emulators."""
    if backend.endpoint_key is None:
        return {}
    stack = request.getfixturevalue("local_stack")
    return {backend.endpoint_key: stack.endpoint(backend.endpoint_key)}


@pytest.fixture
def open_store(backend: Backend, endpoints: dict[str, str]) -> Iterator[Callable[..., ReplicaAdapter]]:
    """Open fresh, empty stores on this backend; each is dropped after the test."""
    opened: list[ReplicaAdapter] = []

    def _open(**kw: object) -> ReplicaAdapter:
        adapter = backend.open(endpoints, **kw)
        opened.append(adapter)
        return adapter

    yield _open
    for adapter in opened:
        try:
            adapter.drop()
        finally:
            adapter.close()


@pytest.fixture
def store(open_store: Callable[..., ReplicaAdapter]) -> ReplicaAdapter:
    """A fresh document store with partition key ``pk`` (string)."""
    return open_store()
