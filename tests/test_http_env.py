"""The SDK sessions read proxies and netrc from the environment only when the process has them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcrepl.adapters.base.http_env import ca_bundle, environment_needed

_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "NO_PROXY",
              "no_proxy", "NETRC", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture()
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No proxy, no netrc (a home without one), no CA variable."""
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch


def test_nothing_configured_means_no_per_request_lookups(bare: pytest.MonkeyPatch) -> None:
    assert environment_needed() is False and ca_bundle() is None
    bare.setenv("NO_PROXY", "127.0.0.1")           # exceptions alone need no proxy lookups
    assert environment_needed() is False


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_keeps_the_environment_on(bare: pytest.MonkeyPatch, name: str) -> None:
    bare.setenv(name, "http://proxy.internal:3128")
    assert environment_needed() is True


def test_a_netrc_keeps_the_environment_on(bare: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".netrc").write_text("machine example.com login a password b\n")
    assert environment_needed() is True
    bare.setenv("NETRC", str(tmp_path / "missing"))
    assert environment_needed() is False


def test_a_ca_bundle_is_read_once_and_given_to_the_gcs_session(bare: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mcrepl.adapters.gcs.client import make_client
    bare.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    assert environment_needed() is False and ca_bundle() == str(tmp_path / "ca.pem")
    session = make_client({"local": True, "endpoint": "http://127.0.0.1:1"})._http
    assert session.trust_env is False and session.verify == str(tmp_path / "ca.pem")
    bare.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    session = make_client({"local": True, "endpoint": "http://127.0.0.1:1"})._http
    assert session.trust_env is True, "with a proxy, requests' own environment handling (no_proxy included)"
