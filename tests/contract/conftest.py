"""Fixtures of the in-repo contract run: the shipped suite, parametrised over every backend."""

from __future__ import annotations

from typing import Iterator

import pytest

from mcrepl.testing.contract import StoreFactory, dropping

from .backends import BACKENDS, Backend


@pytest.fixture(params=BACKENDS, ids=[b.id for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param


@pytest.fixture
def endpoints(backend: Backend, request: pytest.FixtureRequest) -> dict[str, str]:
    """Local-stack endpoints; the memory backend needs none, so it never starts emulators."""
    if backend.service is None:
        return {}
    stack = request.getfixturevalue("local_stack")
    return {backend.service: stack.endpoint(backend.service)}


@pytest.fixture
def backend_stores(backend: Backend, endpoints: dict[str, str]) -> Iterator[StoreFactory]:
    """Open fresh, empty stores on this backend; each is dropped after the test."""
    from mcrepl.adapters import open_adapter
    with dropping(lambda **kw: open_adapter(backend.target(endpoints, **kw))) as factory:
        yield factory
