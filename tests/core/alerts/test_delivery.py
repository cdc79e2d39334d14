"""Alert delivery through real channels (a real local HTTP server, a real JSONL file, a real DuckDB file)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest

from fundarb_dagster.core import alerts as a

T0 = datetime(2026, 1, 1, 12, 0)


def _alert(minutes: int = 0, subject: str = "BTC binance vs bybit", rule: str = "funding_spread") -> a.Alert:
    return a.Alert(rule, subject, "warning", 0.5, 0.3, T0 + timedelta(minutes=minutes), "spread high")


class _Server:
    """A local HTTP server answering the first `fail_first` POSTs with `fail_status`, then 200."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500) -> None:
        self.bodies: list[dict] = []
        self.attempts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                outer.attempts += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.attempts <= fail_first:
                    self.send_response(fail_status)
                    self.end_headers()
                    return
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook?token=secret"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def conn(tmp_path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "w.duckdb"))
    yield connection
    connection.close()


def test_raise_alerts_across_runs_stores_and_sends_each_condition_once(conn, tmp_path):
    path = tmp_path / "alerts.jsonl"
    channels = [a.JsonlChannel(path)]
    first = a.raise_alerts(conn, [_alert(0)], channels, cooldown=timedelta(hours=1))
    second = a.raise_alerts(conn, [_alert(20)], channels, cooldown=timedelta(hours=1))  # the next run, same condition
    again = a.raise_alerts(conn, [_alert(0)], channels, cooldown=timedelta(0))  # the very same alert re-evaluated
    assert len(first.raised) == 1 and second.raised == [] and again.raised == []
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["rule"] == "funding_spread" and lines[0]["value"] == 0.5
    assert conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == 1
    assert conn.execute("SELECT channel, ok, attempts FROM alert_deliveries").fetchall() == [("jsonl", True, 1)]


def test_webhook_posts_the_alert_as_json_to_a_real_http_server(conn):
    with _Server() as server:
        result = a.raise_alerts(conn, [_alert(0)], [a.WebhookChannel(server.url)], backoff_s=0.01)
    assert result.failed_deliveries == 0
    assert server.bodies[0]["alert_id"] == result.raised[0].alert_id
    assert server.bodies[0]["subject"] == "BTC binance vs bybit"
    assert server.bodies[0]["ts"] == "2026-01-01T12:00:00Z"


def test_webhook_retries_a_failing_server_and_succeeds_on_the_third_attempt(conn):
    sleeps: list[float] = []
    with _Server(fail_first=2, fail_status=503) as server:
        deliveries = a.deliver(
            [_alert(0)], [a.WebhookChannel(server.url)], retries=3, backoff_s=0.01, sleep=sleeps.append
        )
    assert server.attempts == 3 and len(server.bodies) == 1
    assert deliveries[0].ok and deliveries[0].attempts == 3
    assert sleeps == [0.01, 0.02]  # doubling back-off


def test_a_server_that_keeps_failing_is_recorded_not_raised_and_other_channels_still_deliver(conn, tmp_path, caplog):
    with _Server(fail_first=100) as server, caplog.at_level(logging.WARNING, logger="fundarb.alerts"):
        result = a.raise_alerts(
            conn,
            [_alert(0)],
            [a.WebhookChannel(server.url), a.LogChannel(), a.JsonlChannel(tmp_path / "a.jsonl")],
            retries=3,
            backoff_s=0.01,
        )
    assert server.attempts == 3
    rows = conn.execute("SELECT channel, ok, attempts, error FROM alert_deliveries ORDER BY channel").fetchall()
    assert rows[0][:2] == ("jsonl", True) and rows[1][:2] == ("log", True)
    assert rows[2][:3] == ("webhook", False, 3) and "500" in rows[2][3]
    assert "secret" not in rows[2][3]  # the URL's token is never stored
    assert result.failed_deliveries == 1
    assert "ALERT [warning] funding_spread" in caplog.text


def test_a_4xx_webhook_answer_is_not_retried():
    with _Server(fail_first=100, fail_status=404) as server:
        deliveries = a.deliver([_alert(0)], [a.WebhookChannel(server.url)], retries=3, backoff_s=0.01)
    assert server.attempts == 1 and not deliveries[0].ok and "404" in deliveries[0].error


def test_an_unreachable_webhook_fails_with_a_connection_error_after_retries():
    deliveries = a.deliver(
        [_alert(0)], [a.WebhookChannel("http://127.0.0.1:9/x", timeout_s=0.5)], retries=2, backoff_s=0.0
    )
    assert not deliveries[0].ok and deliveries[0].attempts == 2 and "connection failed" in deliveries[0].error
