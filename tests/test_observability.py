"""Redacting logs, Prometheus metrics and the hash-chained audit trail."""

from __future__ import annotations

import base64
import json
import logging
import multiprocessing
import os
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from mcrepl.adapters.base import RetryPolicy, ThrottledError, call_with_retry
from mcrepl.orchestrator.cli import app
from mcrepl.orchestrator.observability.audit import GENESIS, AuditTrail, canonical_json
from mcrepl.orchestrator.observability.logging import configure_logging, redact, set_sensitive_fields
from mcrepl.orchestrator.observability.metrics import SyncMetrics

COSMOS_KEY = base64.b64encode(bytes(range(7, 71))).decode()          # 88 chars, like a real key
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
SECRETS = (COSMOS_KEY, AWS_KEY_ID, AWS_SECRET, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "sv-sig-value",
           "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc", "123-45-6789")


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    set_sensitive_fields(())


def _log_everything() -> None:
    log = logging.getLogger("mcrepl.test")
    log.info("cosmos key %s in an arg", COSMOS_KEY)
    log.info("aws %s / %s", AWS_KEY_ID, AWS_SECRET)
    log.info("conn AccountEndpoint=https://a/;AccountKey=%s;", COSMOS_KEY)
    log.info("sas https://x.blob/c?sv=2020&sig=sv-sig-value&se=1")
    log.info("auth header: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc")
    log.info("record %s", {"id": "k1", "ssn": "123-45-6789", "nested": {"password": "hunter2x"}})
    log.info("key material\n%s", PRIVATE_KEY)
    log.warning("applied batch", extra={"replica": "cosmos:westeurope", "ssn": "123-45-6789",
                                         "ctx": {"master_key": COSMOS_KEY, "count": 3}})
    try:
        raise RuntimeError(f"connect failed with key {COSMOS_KEY}")
    except RuntimeError:
        log.exception("store call failed")


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "console"])
def test_logs_never_print_credentials_or_sensitive_fields(as_json: bool, capsys, root_logging) -> None:
    configure_logging("INFO", sensitive_fields=["ssn"], json=as_json)
    _log_everything()
    err = capsys.readouterr().err
    for secret in SECRETS + ("hunter2x",):
        assert secret not in err, f"{secret[:12]}… leaked into the log"
    assert "cosmos:westeurope" in err and "applied batch" in err and "k1" in err
    assert "store call failed" in err and "RuntimeError" in err
    if as_json:
        lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        batch = next(line for line in lines if line["msg"] == "applied batch")
        assert batch["ssn"] == "***" and batch["ctx"] == {"master_key": "***", "count": 3}
        assert batch["level"] == "WARNING" and batch["ts"].endswith("+00:00")


def test_configure_logging_replaces_its_handler(root_logging) -> None:
    configure_logging(json=True)
    configure_logging(json=False)
    assert sum(1 for h in logging.getLogger().handlers if getattr(h, "_mcrepl", False)) == 1
    with pytest.raises(ValueError, match="log level"):
        configure_logging("LOUD")


def test_redact_masks_values_but_keeps_digests_and_shape() -> None:
    digest = "ab12" * 16                                   # a sha256 hex digest stays readable
    out = redact({"hash": digest, "token": "t", "list": [COSMOS_KEY, 1, None], "blob": b"\x00" * 4,
                  "Client-Secret": "s", "t": (AWS_KEY_ID,)}, sensitive_fields=["email"])
    assert out == {"hash": digest, "token": "***", "list": ["***", 1, None], "blob": "<4 bytes>",
                   "Client-Secret": "***", "t": ("***",)}
    assert redact({"Email": "a@b.c", "email_note": "x"}, ["email"]) == {"Email": "***", "email_note": "x"}


# -- metrics ---------------------------------------------------------------------------

def test_metrics_count_outcomes_lag_breaker_and_adapter_retries() -> None:
    metrics, other = SyncMetrics(), SyncMetrics()
    metrics.changes("orders", "cosmos:westeurope", "applied", 5)
    metrics.changes("orders", "cosmos:westeurope", "stale")
    metrics.lag("orders", "gcs:europe-west1", seconds=12.5, changes=40)
    metrics.breaker("orders", "gcs:europe-west1", "open")
    metrics.breaker("orders", "gcs:europe-west1", "half_open")
    lane = {"dataset": "orders", "replica": "cosmos:westeurope"}
    assert metrics.value("mcrepl_changes_total", **lane, outcome="applied") == 5
    assert metrics.value("mcrepl_changes_total", **lane, outcome="stale") == 1
    gcs = {"dataset": "orders", "replica": "gcs:europe-west1"}
    assert metrics.value("mcrepl_replica_lag_seconds", **gcs) == 12.5
    assert metrics.value("mcrepl_replica_lag_changes", **gcs) == 40
    assert metrics.value("mcrepl_breaker_state", **gcs, mcrepl_breaker_state="half_open") == 1
    assert metrics.value("mcrepl_breaker_state", **gcs, mcrepl_breaker_state="open") == 0
    assert metrics.value("mcrepl_breaker_transitions_total", **gcs, state="half_open") == 1

    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ThrottledError("429 from the emulator", provider="cosmos")
        return "ok"

    assert call_with_retry(flaky, RetryPolicy(deadline_s=5, initial_s=0.001, max_backoff_s=0.01)) == "ok"
    assert metrics.value("mcrepl_retries_total", provider="cosmos") == 2
    assert other.value("mcrepl_retries_total", provider="cosmos") == 2      # every live instance counts
    assert other.value("mcrepl_changes_total", **lane, outcome="applied") == 0   # registries are separate

    with pytest.raises(ValueError, match="outcome"):
        metrics.changes("orders", "cosmos:westeurope", "lost")
    with pytest.raises(ValueError, match="breaker state"):
        metrics.breaker("orders", "cosmos:westeurope", "ajar")


def test_metrics_endpoint_serves_prometheus_text() -> None:
    metrics = SyncMetrics()
    metrics.changes("orders", "gcs:europe-west1", "quarantined", 2)
    stop = metrics.serve(0)
    try:
        body = urllib.request.urlopen(stop.url, timeout=5).read().decode()  # type: ignore[attr-defined]
    finally:
        stop()
    assert 'mcrepl_changes_total{dataset="orders",outcome="quarantined",replica="gcs:europe-west1"} 2.0' in body
    with pytest.raises(OSError):
        urllib.request.urlopen(stop.url, timeout=2)  # type: ignore[attr-defined]


# -- audit trail -----------------------------------------------------------------------

def _trail(tmp_path: Path, n: int = 10, key: bytes | None = None) -> AuditTrail:
    trail = AuditTrail(tmp_path / "audit.jsonl", key=key)
    for i in range(n):
        trail.append("sync.batch", {"dataset": "orders", "batch": i, "applied": 100})
    return trail


def _rewrite(trail: AuditTrail, edit) -> None:  # type: ignore[no-untyped-def]
    lines = trail.path.read_text().splitlines()
    trail.path.write_text("\n".join(edit(lines)) + "\n")


def test_intact_trail_verifies_and_chains(tmp_path: Path) -> None:
    trail = _trail(tmp_path)
    verdict = trail.verify()
    assert (verdict.ok, verdict.entries, verdict.first_bad_seq) == (True, 10, None)
    entries = list(trail.entries())
    assert entries[0]["prev"] == GENESIS and entries[0]["seq"] == 0
    assert all(b["prev"] == a["hash"] for a, b in zip(entries, entries[1:]))
    assert trail.head()["seq"] == 9


@pytest.mark.parametrize("tamper, first_bad", [
    ("edit_payload", 4), ("delete_entry", 6), ("reorder", 2), ("cut_line", 5), ("rechain_one", 7),
])
def test_verify_reports_first_tampered_entry(tmp_path: Path, tamper: str, first_bad: int) -> None:
    trail = _trail(tmp_path)

    def edit(lines: list[str]) -> list[str]:
        if tamper == "edit_payload":
            entry = json.loads(lines[4])
            entry["payload"]["applied"] = 99
            lines[4] = canonical_json(entry)
        elif tamper == "delete_entry":
            del lines[6]
        elif tamper == "reorder":
            lines[2], lines[3] = lines[3], lines[2]
        elif tamper == "cut_line":
            lines[5] = lines[5][: len(lines[5]) // 2]
        else:   # edit entry 7 and recompute its own hash: entry 8 no longer chains to it
            entry = json.loads(lines[7])
            entry["payload"]["applied"] = 0
            entry["hash"] = AuditTrail(trail.path)._digest(entry)
            lines[7] = canonical_json(entry)
        return lines

    _rewrite(trail, edit)
    verdict = trail.verify()
    assert not verdict.ok
    assert verdict.first_bad_seq == (first_bad + 1 if tamper == "rechain_one" else first_bad), verdict.reason
    assert verdict.entries == verdict.first_bad_seq


def test_hmac_key_stops_a_rewritten_tail(tmp_path: Path) -> None:
    key = b"kept-outside-the-host"
    trail = _trail(tmp_path, key=key)
    assert trail.verify().ok
    assert "HMAC" in trail.verify().reason
    plain = AuditTrail(trail.path, key=None)
    assert not plain.verify().ok and "MCREPL_AUDIT_KEY" in plain.verify().reason

    # an attacker without the key rewrites entry 3 onward with plain hashes, chain and all
    lines = trail.path.read_text().splitlines()
    prev = json.loads(lines[2])["hash"]
    for i in range(3, len(lines)):
        entry = json.loads(lines[i])
        entry["payload"]["applied"] = 0
        entry["prev"], entry["alg"] = prev, "sha256"
        entry["hash"] = plain._digest(entry)
        prev = entry["hash"]
        lines[i] = canonical_json(entry)
    trail.path.write_text("\n".join(lines) + "\n")
    verdict = trail.verify()
    assert (verdict.ok, verdict.first_bad_seq) == (False, 3)
    assert "downgrade" in verdict.reason


def test_hmac_key_comes_from_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MCREPL_AUDIT_KEY", "from-env")
    entry = AuditTrail(tmp_path / "a.jsonl").append("config.changed", {"file": "mcrepl.yaml"})
    assert entry["alg"] == "hmac-sha256"
    assert AuditTrail(tmp_path / "a.jsonl").verify().ok
    monkeypatch.setenv("MCREPL_AUDIT_KEY", "wrong")
    assert AuditTrail(tmp_path / "a.jsonl").verify().first_bad_seq == 0


def test_payloads_are_redacted_before_writing(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl", sensitive_fields=["ssn"])
    entry = trail.append("config.changed", {"cosmos": {"key": COSMOS_KEY, "account_key": "x"},
                                            "ssn": "123-45-6789", "dsn": f"AccountKey={COSMOS_KEY};"})
    text = trail.path.read_text()
    assert COSMOS_KEY not in text and "123-45-6789" not in text
    assert entry["payload"]["ssn"] == "***" and trail.verify().ok


def test_torn_final_line_is_reported_then_repaired(tmp_path: Path) -> None:
    trail = _trail(tmp_path, n=3)
    with open(trail.path, "ab") as fh:
        fh.write(b'{"seq":3,"kind":"sync.ba')          # a crash in the middle of a write
    verdict = trail.verify()
    assert (verdict.ok, verdict.first_bad_seq) == (False, 3)
    trail.append("sync.batch", {"batch": 3})
    kinds = [e["kind"] for e in trail.entries()]
    assert kinds == ["sync.batch"] * 3 + ["audit.repaired", "sync.batch"]
    assert trail.verify().ok


def _append_many(path: str, worker: int, n: int) -> None:
    trail = AuditTrail(path)
    for i in range(n):
        trail.append("sync.batch", {"worker": worker, "i": i})


def test_concurrent_appends_from_threads_and_processes_keep_one_chain(tmp_path: Path) -> None:
    import threading
    path = str(tmp_path / "audit.jsonl")
    ctx = multiprocessing.get_context("spawn" if os.name != "posix" else "fork")
    procs = [ctx.Process(target=_append_many, args=(path, w, 25)) for w in range(2)]
    threads = [threading.Thread(target=_append_many, args=(path, 10 + w, 25)) for w in range(3)]
    for worker in (*procs, *threads):
        worker.start()
    for worker in (*procs, *threads):
        worker.join(60)
    assert all(p.exitcode == 0 for p in procs)
    verdict = AuditTrail(path).verify()
    assert (verdict.ok, verdict.entries) == (True, 125), verdict.reason


def test_cli_audit_verify_and_show(tmp_path: Path) -> None:
    runner = CliRunner()
    trail = _trail(tmp_path, n=5)
    ok = runner.invoke(app, ["audit", "verify", "--state-dir", str(tmp_path)])
    assert ok.exit_code == 0 and "5 entries" in ok.output
    shown = runner.invoke(app, ["audit", "show", "--state-dir", str(tmp_path), "--tail", "2", "--json"])
    assert [json.loads(line)["seq"] for line in shown.output.splitlines()] == [3, 4]

    config = tmp_path / "cfg" / "mcrepl.yaml"
    config.parent.mkdir()
    config.write_text("state_dir: ../\ndatasets:\n  orders:\n    key: {partition: id}\n"
                      "    primary: dynamodb:eu-west-1\n    replicas: [gcs:europe-west1]\n")
    _rewrite(trail, lambda lines: lines[:1] + lines[2:])
    bad = runner.invoke(app, ["audit", "verify", "--config", str(config)])
    assert bad.exit_code == 1 and "seq 1" in bad.output
    missing = runner.invoke(app, ["audit", "verify", "--state-dir", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no audit trail" in missing.output


def test_series_exist_from_the_start_and_readyz_follows_passes_and_breakers() -> None:
    import json as _json
    from types import SimpleNamespace
    metrics = SyncMetrics()
    metrics.prepare({"orders": ["dynamodb:eu-west-1", "gcs:europe-west1"]}, ["dynamodb", "gcs"],
                    [{"dataset": "orders", "replica": "gcs:europe-west1", "lag_seconds": 42.0, "lag_changes": 7,
                      "breaker": "closed"}])
    metrics.schedule({"orders": 30.0}, grace_s=60)
    server = metrics.serve(0)
    base = server.url.removesuffix("/metrics")

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    try:
        body = get("/metrics")[1]
        for outcome in ("applied", "quarantined", "withheld"):
            assert (f'mcrepl_changes_total{{dataset="orders",outcome="{outcome}",replica="gcs:europe-west1"}} 0.0'
                    in body), "counters are created at zero before any change"
        assert 'mcrepl_retries_total{provider="gcs"} 0.0' in body
        assert 'mcrepl_last_success_timestamp_seconds{dataset="orders"} 0.0' in body
        assert 'mcrepl_replica_lag_changes{dataset="orders",replica="gcs:europe-west1"} 7.0' in body, \
            "lag comes from the state file at start, not a hopeful zero"
        assert get("/healthz") == (200, "ok\n")
        status, text = get("/readyz")
        assert status == 503 and "first pass not finished" in _json.loads(text)["problems"][0]

        lane = SimpleNamespace(caught_up=True)
        ds = SimpleNamespace(capture_error=None, lanes={"gcs:europe-west1": lane}, captured=3)
        metrics.observe_pass(SimpleNamespace(datasets={"orders": ds}, seconds=0.5), None, ["orders"])
        assert get("/readyz")[0] == 200
        assert metrics.value("mcrepl_last_success_timestamp_seconds", dataset="orders") > 0
        assert metrics.value("mcrepl_passes_total", dataset="orders", outcome="ok") == 1

        metrics.breaker("orders", "gcs:europe-west1", "open")
        status, text = get("/readyz")
        assert status == 503 and "circuit breaker open" in text
        metrics.breaker("orders", "gcs:europe-west1", "closed")
        lane.caught_up = False
        metrics.observe_pass(SimpleNamespace(datasets={"orders": ds}, seconds=0.5), None, ["orders"])
        assert metrics.value("mcrepl_passes_total", dataset="orders", outcome="not_caught_up") == 1
        assert get("/readyz")[0] == 200, "ready: a pass ran within its period and no breaker is open"
    finally:
        server.stop()


def test_outbox_flushes_many_entries_under_one_append_and_never_twice(tmp_path: Path) -> None:
    """A follower's many small batches: one ``append_many`` per flush, chained, each entry once."""
    from mcrepl.orchestrator.observability.audit import AuditTrail
    from mcrepl.orchestrator.state.db import Database
    from mcrepl.orchestrator.state.outbox import OUTBOX_ID, AuditOutbox
    trail = AuditTrail(tmp_path / "audit.jsonl")
    trail.append("config.changed", {"why": "first"})
    db = Database(tmp_path / "state.db")
    outbox = AuditOutbox(db, lambda: 0.0, trail)
    for n in range(5):
        outbox.add("batch", {"n": n})
    assert outbox.flush() == 5 and outbox.pending() == 0
    # a crash after the file append and before the delete: the next flush deletes, appends nothing again
    outbox.add("batch", {"n": 5})
    outbox.add("batch", {"n": 6})
    staged = [(str(r["kind"]), {**json.loads(r["payload"]), OUTBOX_ID: r["id"]})
              for r in db.rows("SELECT id, kind, payload FROM audit_outbox ORDER BY id")]
    trail.append_many(staged)
    assert outbox.flush() == 0 and outbox.pending() == 0
    verdict = trail.verify()
    assert verdict.ok and verdict.entries == 8, verdict.reason
    assert [e["payload"].get("n") for e in trail.entries()] == [None, 0, 1, 2, 3, 4, 5, 6]
    # a torn last line (a crash mid-write) is cut off and the repair recorded, as append does
    with open(trail.path, "ab") as fh:
        fh.write(b'{"seq": 8, "half')
    trail.append_many([("batch", {"n": 7})])
    assert trail.verify().ok and [e["kind"] for e in trail.tail(2)] == ["audit.repaired", "batch"]
