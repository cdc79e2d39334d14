"""Two hosts on one machine, for the capture job across hosts: two network namespaces joined by a veth pair.

Each namespace is a host to MPI (hydra starts one proxy per host; each host gets its own shared-memory
communicator and its own rings). The launcher script plays ssh for hydra (HYDRA_LAUNCHER_EXEC): it runs hydra's
proxy in the namespace that owns the address it is given, as `ssh host command` would on a second machine.
Used by tests/mpi_jobs/test_hosts.py and benchmarks/bench_capture.py (root only).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

LAUNCHER = """#!/bin/sh
# ssh stand-in for hydra: skip ssh's options, run the command in the namespace of the host's address
while [ $# -gt 0 ]; do case "$1" in -o|-p|-l) shift 2;; -*) shift;; *) break;; esac; done
host=$1; shift
case $host in
{cases}
  *) echo "launcher: unknown host $host" >&2; exit 1;;
esac
exec ip netns exec $ns sh -c "$*"
"""


class NoNamespaces(RuntimeError):
    """Network namespaces cannot be made here (not root, no iproute2, or the kernel refuses)."""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@contextlib.contextmanager
def two_namespaces(tag: int) -> Iterator[dict[str, str]]:
    """Namespaces `fa<tag>a`, `fa<tag>b` (name -> address 10.77.<tag>.1/.2) and a veth pair; removed after."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        raise NoNamespaces("network namespaces need root and iproute2 (`ip`)")
    names = [f"fa{tag}a", f"fa{tag}b"]
    hosts = {name: f"10.77.{tag}.{i + 1}" for i, name in enumerate(names)}
    made = _ip("netns", "add", names[0])
    if made.returncode != 0:
        raise NoNamespaces(f"cannot create a network namespace here ({made.stderr.strip()})")
    try:
        steps = [
            ("netns", "add", names[1]),
            ("link", "add", f"{names[0]}v", "type", "veth", "peer", "name", f"{names[1]}v"),
            *[step for name in names for step in (
                ("link", "set", f"{name}v", "netns", name),
                ("-n", name, "addr", "add", f"{hosts[name]}/24", "dev", f"{name}v"),
                ("-n", name, "link", "set", f"{name}v", "up"),
                ("-n", name, "link", "set", "lo", "up"),
            )],
        ]  # fmt: skip
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                raise RuntimeError(f"ip {' '.join(step)}: {done.stderr.strip()}")
        yield hosts
    finally:
        for name in names:
            _ip("netns", "del", name)


def write_launcher(path: Path, hosts: dict[str, str]) -> Path:
    cases = "\n".join(f"  {address}) ns={name};;" for name, address in hosts.items())
    path.write_text(LAUNCHER.format(cases=cases))
    path.chmod(0o755)
    return path


def mpi_env(launcher: Path) -> dict[str, str]:
    """The environment of an mpiexec across the namespaces: the launcher, and TCP between the hosts (MPICH
    would otherwise see one machine and move the data through shared memory, FACTS.md)."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HYDRA_LAUNCHER": "ssh",
        "HYDRA_LAUNCHER_EXEC": str(launcher),
        "MPIR_CVAR_CH4_NETMOD": "ofi",
        "FI_PROVIDER": "tcp",
    }


def tx_bytes(namespace: str) -> int:
    """Bytes sent on the namespace's end of the veth pair (its link to the other host)."""
    (link,) = json.loads(_ip("-j", "-s", "-n", namespace, "link", "show", "dev", f"{namespace}v").stdout)
    return int(link["stats64"]["tx"]["bytes"])
