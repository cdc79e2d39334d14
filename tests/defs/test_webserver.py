"""The real Dagster webserver serves the code location: /graphql returns the warehouse's asset graph."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QUERY = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
EXPECTED_DEPS = {
    "ohlcv_1m": {"raw_trades", "raw_ohlcv"},
    "ohlcv_5m": {"ohlcv_1m", "raw_ohlcv"},
    "ohlcv_1h": {"ohlcv_1m", "raw_ohlcv"},
    "ohlcv_8h": {"ohlcv_1h", "raw_ohlcv"},
    "ohlcv_1d": {"ohlcv_8h", "raw_ohlcv"},
    "indicators": {"ohlcv_1h"},
    "raw_trades": set(),
    "instruments": set(),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, query: str) -> dict:
    body = json.dumps({"query": query}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_webserver_graphql_shows_the_asset_graph(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "config" / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "FUNDARB_DATA_DIR": str(tmp_path / "data")}
    webserver = Path(sys.executable).with_name("dagster-webserver")
    log = (tmp_path / "webserver.log").open("w")
    process = subprocess.Popen(
        [str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        nodes = None
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            try:
                data = _post(f"{base}/graphql", QUERY)
                nodes = (data.get("data") or {}).get("assetNodes")
                if nodes:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert nodes, (tmp_path / "webserver.log").read_text()[-3000:]
        graph = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
        for name, deps in EXPECTED_DEPS.items():
            assert graph[name] == deps, name
        assert {"raw_tickers", "raw_funding", "capture_events", "capture_stats"} <= set(graph)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
