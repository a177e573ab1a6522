"""The shipped contract suite (:mod:`mcrepl.testing.contract`) against every in-repo backend.

This module is what a third party's test module looks like: subclass, override the
fixtures. Ids read ``TestContract::test_replay_is_noop[cosmos-emulator]``.
"""

from __future__ import annotations

from typing import Mapping

import pytest

from mcrepl.testing import AdapterContract, StoreFactory

from .backends import Backend


class TestContract(AdapterContract):
    @pytest.fixture
    def open_store(self, backend_stores: StoreFactory) -> StoreFactory:
        return backend_stores

    @pytest.fixture
    def rejections(self, backend: Backend) -> Mapping[str, str]:
        return backend.rejections
