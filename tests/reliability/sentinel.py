"""A private Redis master, one replica and one Sentinel on free loopback ports.

Built from Debian's ``redis-server`` and ``redis-sentinel`` (one binary: without the
``redis-sentinel`` package, ``redis-server --sentinel`` runs the same Sentinel). The replica
starts with ``replica-priority 0``: the Sentinel may not promote it until the test allows
it (:meth:`SentinelCluster.promote`), so "no master is known" lasts exactly as long as the
test needs to observe it, whatever the machine's speed.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from tests.conftest import free_port

MASTER_NAME = "mymaster"
#: Sentinel timings, in milliseconds: small, so that a failover takes about a second.
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 2000


def _binary(name: str = "redis-server") -> str:
    binary = shutil.which(name)
    if binary is None:
        raise RuntimeError(f"{name} is not installed (scripts/test installs it)")
    return binary


def _sentinel_command(conf: Path) -> list[str]:
    if shutil.which("redis-sentinel"):
        return [_binary("redis-sentinel"), str(conf)]
    return [_binary(), str(conf), "--sentinel"]


def _wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float = 10) -> None:
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"redis process on port {port} exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis process on port {port} did not listen in time")


class SentinelCluster:
    """Master, replica and Sentinel; :meth:`kill_master` and :meth:`promote` fail it over."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def host_entry(self) -> dict[str, object]:
        """The channels-redis host entry of this cluster (what the settings carry)."""
        return {"sentinels": [("127.0.0.1", self.sentinel_port)], "master_name": MASTER_NAME}

    def _start(self, name: str, port: int, command: list[str]) -> None:
        with (self.workdir / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        self.processes[name] = process
        _wait_listening(port, process)

    def _data_server(self, name: str, port: int, extra: list[str]) -> None:
        self._start(
            name,
            port,
            [_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--dbfilename", f"{name}.rdb",
             *extra],
        )  # fmt: skip

    def start(self) -> None:
        """Start all three and wait until the Sentinel sees the replica in sync."""
        self._data_server("master", self.master_port, [])
        self._data_server(
            "replica",
            self.replica_port,
            ["--replicaof", "127.0.0.1", str(self.master_port), "--replica-priority", "0"],
        )
        conf = self.workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.workdir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
        )
        self._start("sentinel", self.sentinel_port, _sentinel_command(conf))
        self.wait_for(self._replica_known, "the Sentinel never saw the replica in sync")

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, socket_timeout=2, decode_responses=True)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2)

    def _replica_known(self) -> bool:
        with self.sentinel() as sentinel:
            replicas = sentinel.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
        return any(
            int(r["port"]) == self.replica_port and r["master-link-status"] == "ok"
            for r in replicas
        )

    def master_port_now(self) -> int | None:
        """The master's port as the Sentinel names it, or ``None`` while it considers it down."""
        with self.sentinel() as sentinel:
            state = sentinel.sentinel_master(MASTER_NAME)
        if state["is_sdown"] or state["is_odown"] or not state["is_master"]:
            return None
        return int(state["port"])

    def kill_master(self) -> None:
        """SIGKILL the master: no goodbye to its clients, its replica or the Sentinel."""
        process = self.processes.pop("master")
        process.kill()
        process.wait(timeout=10)

    def promote(self) -> None:
        """Let the replica be promoted and wait until the Sentinel names it the master."""
        with self.client(self.replica_port) as replica:
            replica.config_set("replica-priority", 100)

        def promoted() -> bool:
            if self.master_port_now() == self.replica_port:
                return True
            # The Sentinel may also retry on its own: both ways end in the same state.
            with self.sentinel() as sentinel, contextlib.suppress(redis.ResponseError):
                sentinel.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
            return False

        self.wait_for(promoted, "the Sentinel never promoted the replica", deadline=20)

    def switch_quietly(self) -> None:
        """Make the replica the master while the old one stays up and keeps its clients.

        What a Sentinel does not do on its own (it kills the clients of a demoted master),
        but what a partition or an operator's manual switch can leave behind: clients still
        connected to a master the Sentinels no longer name.
        """
        with self.client(self.replica_port) as replica:
            replica.execute_command("REPLICAOF", "NO", "ONE")
        with self.sentinel() as sentinel:
            sentinel.execute_command("SENTINEL", "REMOVE", MASTER_NAME)
            sentinel.execute_command(
                "SENTINEL", "MONITOR", MASTER_NAME, "127.0.0.1", self.replica_port, 1
            )
        self.wait_for(lambda: self.master_port_now() == self.replica_port, "not switched")

    @staticmethod
    def wait_for(condition: object, message: str, deadline: float = 15) -> None:
        give_up = time.monotonic() + deadline
        while not condition():  # type: ignore[operator]
            if time.monotonic() > give_up:
                raise AssertionError(message)
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()
