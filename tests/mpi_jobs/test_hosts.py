"""The capture job across two hosts: two network namespaces joined by a veth pair, MPI over TCP between them
(see hosts.py); the launcher runs in the first namespace, as `fundarb capture` would on the first machine."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fundarb_dagster.core.schema import StreamCode

from .conftest import assert_trades_match_the_sim, landed, landed_so_far, run_until, write_config
from .hosts import NoNamespaces, mpi_env, two_namespaces, tx_bytes, write_launcher

pytestmark = [pytest.mark.mpi, pytest.mark.slow]


@pytest.fixture
def two_hosts() -> Iterator[dict[str, str]]:
    try:
        with two_namespaces(os.getpid() % 250 + 1) as hosts:
            yield hosts
    except NoNamespaces as exc:
        pytest.skip(f"{exc}: run as root to test capture across hosts")


def test_watchers_on_one_host_land_through_the_flusher_of_another_exactly_what_the_sim_emitted(
    tmp_path: Path, two_hosts: dict[str, str]
) -> None:
    (first, landing_host), (second, watcher_host) = two_hosts.items()
    hostfile = tmp_path / "hosts"
    hostfile.write_text(f"{landing_host}:1\n{watcher_host}:2\n")  # the first host: the flusher alone
    env = mpi_env(write_launcher(tmp_path / "launcher.sh", two_hosts))
    config = write_config(tmp_path, capture={"hostfile": str(hostfile), "landing": "first_host"})
    sent_before = tx_bytes(second)
    fundarb = str(Path(sys.executable).with_name("fundarb"))
    command = ["ip", "netns", "exec", first, fundarb, "capture", "--config", str(config), "--ranks", "3"]
    data = tmp_path / "data"
    # until 500 trades landed, then SIGTERM to the launcher (it forwards it), not a fixed --duration: start-up
    # across two namespaces at load takes most of a few seconds
    proc = run_until(config, 3, lambda d: len(landed_so_far(d, "trades", ["trade_id"])) > 500, env=env, command=command)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on 2 node(s) [1, 2]" in proc.stdout and "1 other host(s) forward over MPI" in proc.stdout

    counts = assert_trades_match_the_sim(config, data, proc.stdout)  # landed = emitted, row for row
    assert sum(counts.values()) > 500
    # Only the first host wrote files: one writer name, its flusher's (world rank 0)
    writers = {path.name.rsplit("-", 1)[0] for path in (data / "landing").rglob("*.parquet")}
    assert len(writers) == 1, writers
    # The watcher (world rank 2) ran on the second host (node 1); its stats crossed with its records
    stats = landed(data, "capture_stats")
    watcher_stats = stats[stats["stream"] == int(StreamCode.TRADES)]
    assert set(watcher_stats["rank"]) == {2} and set(watcher_stats["node"]) == {1}
    trades = len(landed(data, "trades"))
    assert int(watcher_stats["messages"].max()) == trades
    # ... over the link: the second host sent at least the trades' own bytes over the veth pair
    assert tx_bytes(second) - sent_before > trades * 40  # ts, recv_ts, trade id, price, amount: 5 x 8 bytes
