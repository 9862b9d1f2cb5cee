"""Pytest plugin: real Redis Cluster and Redis Sentinel topologies started from ``redis-server``.

Load it from a test module with ``pytest_plugins = ["tests.topology.servers"]``.

Topologies (each in its own temporary directory, on free loopback ports, every process started
with die-with-parent so a crashed test run leaves nothing behind):

- :class:`ClusterTopology`: 3 masters + 3 replicas made by ``redis-cli --cluster create
  --cluster-replicas 1``; ``cluster-node-timeout`` 1000 ms, so a killed master fails over in
  about 2 s.
- :class:`SentinelTopology`: 1 master, 1 replica and 3 sentinels monitoring service
  :data:`SERVICE_NAME` with quorum 2, ``down-after-milliseconds`` 1000 and ``failover-timeout``
  3000, so a killed master fails over in a few seconds.

Fixtures: ``cluster_topology`` and ``sentinel_topology`` start one topology per session (they
cost seconds) and stop it at the end, even after a failure. ``redis_cluster`` and
``redis_sentinel`` (per test) hand out the same topology healed first: processes a previous test
killed are restarted and the fixture waits until the topology is whole again (every master
with a synced replica, every sentinel agreeing). Both skip the test when ``redis-server`` or
``redis-cli`` is missing. When a test that used a topology fails, the tail of every process's
log is attached to its report.

Helpers on the topologies: ``url`` (``redis+cluster://`` / ``redis+sentinel://``),
``kill_master(...)`` (SIGKILL), ``wait_for_failover(...)`` (polls CLUSTER NODES / SENTINEL
get-master-addr-by-name until the promotion is visible everywhere, never a fixed sleep) and its
``*_async`` twin for tests that must keep their event loop running meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import redis
import redis.exceptions
from redis.crc import key_slot

from mcp_tasks_redis.ops.embedded import die_with_parent

__all__ = [
    "SERVICE_NAME",
    "ClusterNodeInfo",
    "ClusterTopology",
    "RedisProcess",
    "SentinelTopology",
    "TopologyError",
    "key_slot",
    "poll",
]

HOST = "127.0.0.1"
SERVICE_NAME = "mymaster"
"""The Sentinel service name of :class:`SentinelTopology`."""

START_TIMEOUT_S = 20.0
"""Deadline for a process to answer PING, and for a topology to become whole."""

FAILOVER_TIMEOUT_S = 30.0
"""Default deadline of ``wait_for_failover``."""

STOP_TIMEOUT_S = 5.0
POLL_S = 0.05
LOG_TAIL_LINES = 60
N_SLOTS = 16384

T = TypeVar("T")


class TopologyError(RuntimeError):
    """A topology could not be started, healed, or did not reach the awaited state in time."""


def poll(check: Callable[[], T | None], *, timeout_s: float, what: str) -> T:
    """Call ``check`` until it returns something other than None or False; return that value.

    Redis errors raised by ``check`` count as "not yet" (a node is restarting). On the deadline a
    :class:`TopologyError` names ``what`` and the last error seen.
    """
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = check()
        except (redis.exceptions.RedisError, OSError) as exc:
            value, last_error = None, exc
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TopologyError(f"timed out after {timeout_s:g} s waiting for {what}{detail}")
        time.sleep(POLL_S)


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on the loopback interface right now (all bound at once, so
    they differ; another process may still take one before we do, which the callers retry)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def require_binaries() -> None:
    """Skip the test unless ``redis-server`` and ``redis-cli`` are on PATH."""
    missing = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]
    if missing:
        pytest.skip(f"Redis topology tests need {' and '.join(missing)} on PATH (apt install redis-server)")


def sync_client(port: int, timeout_s: float = 2.0) -> redis.Redis:
    """A plain client on one loopback node, decoding replies to str."""
    factory = cast(Any, redis.Redis)
    return cast(
        redis.Redis,
        factory(
            host=HOST,
            port=port,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
        ),
    )


def ask(port: int, *command: str | int, timeout_s: float = 2.0) -> Any:
    """One command on one node, on a fresh connection that is closed afterwards."""
    with contextlib.closing(sync_client(port, timeout_s)) as client:
        return cast(Any, client).execute_command(*command)


def info(port: int, section: str) -> dict[str, Any]:
    with contextlib.closing(sync_client(port)) as client:
        return cast(dict[str, Any], cast(Any, client).info(section))


class RedisProcess:
    """One ``redis-server`` process (a data node or a sentinel) with a fixed port and directory,
    so that it can be SIGKILLed and started again as the same node (cluster nodes keep their
    identity in ``nodes.conf``, sentinels their state in ``sentinel.conf``)."""

    def __init__(self, name: str, port: int, workdir: Path, args: list[str]) -> None:
        self.name = name
        self.port = port
        self.workdir = workdir
        self.args = args
        self.log_path = workdir / "redis.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __repr__(self) -> str:
        state = f"pid {self.popen.pid}" if self.alive and self.popen is not None else "down"
        return f"<RedisProcess {self.name} {HOST}:{self.port} {state}>"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def spawn(self) -> None:
        """Start the process (not waiting for it to answer: see :meth:`wait_ready`)."""
        if self.alive:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "redis-server"
        with self.log_path.open("ab") as log:
            log.write(f"----- start #{self.starts + 1}: {' '.join(self.args)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                [binary, *self.args],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        self.starts += 1

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until the process answers PING; fail at once (with its log) if it exited."""

        def ready() -> bool:
            if not self.alive:
                raise TopologyError(f"{self.name} exited while starting:\n{self.log_tail()}")
            return bool(ask(self.port, "PING", timeout_s=0.5))

        try:
            poll(ready, timeout_s=timeout_s, what=f"{self.name} on port {self.port} to answer PING")
        except TopologyError as exc:
            raise TopologyError(f"{exc}\n{self.log_tail()}") from None
        pid = int(info(self.port, "server").get("process_id", -1))
        if self.popen is None or pid != self.popen.pid:  # another Redis took the port we picked
            self.kill()
            raise TopologyError(
                f"port {self.port} is served by another Redis (pid {pid}): Address already in use"
            )

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        self.spawn()
        self.wait_ready(timeout_s)

    def kill(self) -> None:
        """SIGKILL (no shutdown, no final write) and reap."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after :data:`STOP_TIMEOUT_S`; idempotent."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(STOP_TIMEOUT_S)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"===== {self.name}: no log ====="
        tail = "\n".join(text.splitlines()[-lines:])
        return f"===== {self.name} ({self.address}, {self!r}) =====\n{tail}"


def _data_node_args(port: int) -> list[str]:
    return [
        "--port",
        str(port),
        "--bind",
        HOST,
        "--daemonize",
        "no",
        "--logfile",
        "",
        "--dir",
        ".",
        "--save",
        "",
        "--appendonly",
        "no",
        # a replica syncs at once instead of waiting 5 s for more replicas to share the transfer
        "--repl-diskless-sync-delay",
        "0",
    ]


# -- Redis Cluster ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of CLUSTER NODES."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})

    def serves(self, slot: int) -> bool:
        return any(low <= slot <= high for low, high in self.slots)

    @classmethod
    def parse(cls, line: str) -> ClusterNodeInfo:
        parts = line.split()
        address = parts[1].split("@")[0]
        slots: list[tuple[int, int]] = []
        for item in parts[8:]:
            if item.startswith("["):  # a slot being imported / migrated
                continue
            low, _, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        return cls(
            node_id=parts[0],
            port=int(address.rsplit(":", 1)[1]),
            flags=frozenset(parts[2].split(",")),
            master_id=None if parts[3] == "-" else parts[3],
            connected=parts[7] == "connected",
            slots=tuple(slots),
        )


def cluster_info(port: int) -> dict[str, str]:
    """CLUSTER INFO of one node as a dict of strings."""
    reply = ask(port, "CLUSTER", "INFO")
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in cast(dict[Any, Any], reply).items()}
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def cluster_view(port: int) -> list[ClusterNodeInfo]:
    """CLUSTER NODES as one node sees it."""
    text = ask(port, "CLUSTER", "NODES")
    raw = text if isinstance(text, str) else str(text)
    return [ClusterNodeInfo.parse(line) for line in raw.splitlines() if line.strip()]


class ClusterTopology:
    """``masters`` masters with ``replicas`` replicas each, one directory per node under ``root``."""

    def __init__(
        self, root: Path, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000
    ) -> None:
        self.root = root
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisProcess] = []
        self.started_in_s = 0.0

    def __repr__(self) -> str:
        return f"<ClusterTopology {', '.join(repr(n) for n in self.nodes)}>"

    # -- addresses -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,.../`` with every node as a startup node."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes) + "/"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, n.port) for n in self.nodes]

    def node(self, port: int) -> RedisProcess:
        return next(n for n in self.nodes if n.port == port)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, attempts: int = 3) -> None:
        """Start the nodes, create the cluster, wait until it is whole; retried on a port clash."""
        began = time.monotonic()
        for attempt in range(attempts):
            try:
                self._start_once(attempt)
                break
            except TopologyError:
                self.stop()
                if attempt == attempts - 1:
                    raise
        self.started_in_s = time.monotonic() - began

    def _start_once(self, attempt: int) -> None:
        count = self.masters * (1 + self.replicas)
        ports = free_ports(2 * count)
        self.nodes = []
        for i in range(count):
            port, bus_port = ports[2 * i], ports[2 * i + 1]
            args = [
                *_data_node_args(port),
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(bus_port),
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                # a replica may always take over, however long it was cut off
                "--cluster-replica-validity-factor",
                "0",
            ]
            self.nodes.append(
                RedisProcess(f"cluster-node-{i}", port, self.root / f"try{attempt}-node{i}", args)
            )
        for node in self.nodes:
            node.spawn()
        for node in self.nodes:
            node.wait_ready()
        create = [
            shutil.which("redis-cli") or "redis-cli",
            "--cluster",
            "create",
            *(n.address for n in self.nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        ]
        done = subprocess.run(create, capture_output=True, text=True, timeout=60, check=False)
        (self.root / f"try{attempt}-create.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise TopologyError(
                f"redis-cli --cluster create failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        self.wait_whole()

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(ProcessLookupError):
                if node.alive and node.popen is not None:
                    node.popen.send_signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop()

    def heal(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Restart every node that is down (it rejoins as the replica of whoever took its slots)
        and wait until the cluster is whole again."""
        down = [n for n in self.nodes if not n.alive]
        for node in down:
            node.spawn()
        for node in down:
            node.wait_ready()
        self.wait_whole(timeout_s)

    # -- state ---------------------------------------------------------------------------------
    def live(self) -> list[RedisProcess]:
        return [n for n in self.nodes if n.alive]

    def view(self) -> list[ClusterNodeInfo]:
        """CLUSTER NODES as the first live node that answers sees it."""
        errors: list[str] = []
        for node in self.live():
            try:
                return cluster_view(node.port)
            except (redis.exceptions.RedisError, OSError) as exc:
                errors.append(f"{node.name}: {exc!r}")
        raise TopologyError(f"no live cluster node answers CLUSTER NODES: {errors}")

    def whole(self) -> bool:
        """Every node up, ``cluster_state:ok`` and all slots covered everywhere, every node agreeing on
        who serves which slots, no node flagged failing, and every master with ``replicas`` replicas
        whose replication link is up."""
        if len(self.live()) != len(self.nodes):
            return False
        views = [cluster_view(n.port) for n in self.nodes]
        for node in self.nodes:
            state = cluster_info(node.port)
            if state.get("cluster_state") != "ok" or int(state.get("cluster_slots_ok", 0)) != N_SLOTS:
                return False
        layouts = {
            tuple(sorted((i.port, i.slots) for i in view if i.is_master and i.slots)) for view in views
        }
        if len(layouts) != 1:
            return False
        view = views[0]
        if len(view) != len(self.nodes) or any(i.failing or not i.connected for i in view):
            return False
        masters = [i for i in view if i.is_master and i.slots]
        if len(masters) != self.masters or sum(h - lo + 1 for m in masters for lo, h in m.slots) != N_SLOTS:
            return False
        for master in masters:
            replicas = [i for i in view if i.master_id == master.node_id]
            if len(replicas) != self.replicas:
                return False
            for replica in replicas:
                if info(replica.port, "replication").get("master_link_status") != "up":
                    return False
        return True

    def wait_whole(self, timeout_s: float = START_TIMEOUT_S) -> None:
        try:
            poll(self.whole, timeout_s=timeout_s, what="the cluster to be whole")
        except TopologyError as exc:
            raise TopologyError(f"{exc}\n{self.logs()}") from None

    def master_for_slot(self, slot: int) -> RedisProcess:
        """The process that serves ``slot`` now (as the live nodes see it)."""
        owner = next((i for i in self.view() if i.is_master and i.serves(slot)), None)
        if owner is None:
            raise TopologyError(f"no master serves slot {slot}")
        return self.node(owner.port)

    def master_for_key(self, key: str | bytes) -> RedisProcess:
        return self.master_for_slot(key_slot(key.encode() if isinstance(key, str) else key))

    def replica_of(self, master: RedisProcess) -> RedisProcess:
        view = self.view()
        master_id = next(i.node_id for i in view if i.port == master.port)
        return self.node(next(i.port for i in view if i.master_id == master_id))

    # -- chaos ---------------------------------------------------------------------------------
    def kill_master(self, slot_or_key: int | str | bytes) -> RedisProcess:
        """SIGKILL the master that serves a slot (or the slot of a key); the killed process."""
        slot = (
            slot_or_key
            if isinstance(slot_or_key, int)
            else key_slot(slot_or_key.encode() if isinstance(slot_or_key, str) else slot_or_key)
        )
        victim = self.master_for_slot(slot)
        victim.kill()
        return victim

    def wait_for_failover(
        self, slot_or_key: int | str | bytes, old: RedisProcess, timeout_s: float = FAILOVER_TIMEOUT_S
    ) -> RedisProcess:
        """Wait until every live node says another, live, master serves the slot and reports
        ``cluster_state:ok``; the new master."""
        slot = (
            slot_or_key
            if isinstance(slot_or_key, int)
            else key_slot(slot_or_key.encode() if isinstance(slot_or_key, str) else slot_or_key)
        )

        def promoted() -> RedisProcess | None:
            owners: set[int] = set()
            for node in self.live():
                state = cluster_info(node.port)
                if state.get("cluster_state") != "ok":
                    return None
                owner = next((i for i in cluster_view(node.port) if i.is_master and i.serves(slot)), None)
                if owner is None or owner.port == old.port or owner.failing:
                    return None
                owners.add(owner.port)
            if len(owners) != 1:
                return None
            new = self.node(owners.pop())
            return new if new.alive else None

        return poll(promoted, timeout_s=timeout_s, what=f"a replica to take over slot {slot} from {old.name}")

    async def wait_for_failover_async(
        self, slot_or_key: int | str | bytes, old: RedisProcess, timeout_s: float = FAILOVER_TIMEOUT_S
    ) -> RedisProcess:
        """:meth:`wait_for_failover` in a thread, so the caller's event loop keeps running."""
        return await asyncio.to_thread(self.wait_for_failover, slot_or_key, old, timeout_s)

    def logs(self) -> str:
        return "\n".join(node.log_tail() for node in self.nodes)


# -- Redis Sentinel --------------------------------------------------------------------------------


class SentinelTopology:
    """A master, ``replicas`` replicas and ``sentinels`` sentinels with ``quorum`` for
    :data:`SERVICE_NAME`, one directory per process under ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        self.root = root
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.service_name = SERVICE_NAME
        self.data_nodes: list[RedisProcess] = []
        self.sentinels: list[RedisProcess] = []
        self.started_in_s = 0.0

    def __repr__(self) -> str:
        return f"<SentinelTopology data {self.data_nodes} sentinels {self.sentinels}>"

    @property
    def processes(self) -> list[RedisProcess]:
        return [*self.data_nodes, *self.sentinels]

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster``."""
        return "redis+sentinel://" + ",".join(s.address for s in self.sentinels) + f"/{self.service_name}"

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(HOST, s.port) for s in self.sentinels]

    def data_node(self, port: int) -> RedisProcess:
        return next(n for n in self.data_nodes if n.port == port)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, attempts: int = 3) -> None:
        began = time.monotonic()
        for attempt in range(attempts):
            try:
                self._start_once(attempt)
                break
            except TopologyError:
                self.stop()
                if attempt == attempts - 1:
                    raise
        self.started_in_s = time.monotonic() - began

    def _start_once(self, attempt: int) -> None:
        ports = free_ports(1 + self.replica_count + self.sentinel_count)
        master_port = ports[0]
        self.data_nodes = [
            RedisProcess(
                "sentinel-master-0",
                master_port,
                self.root / f"try{attempt}-data0",
                _data_node_args(master_port),
            )
        ]
        for i, port in enumerate(ports[1 : 1 + self.replica_count], start=1):
            args = [*_data_node_args(port), "--replicaof", HOST, str(master_port)]
            self.data_nodes.append(
                RedisProcess(f"sentinel-replica-{i}", port, self.root / f"try{attempt}-data{i}", args)
            )
        self.sentinels = []
        for i, port in enumerate(ports[1 + self.replica_count :]):
            workdir = self.root / f"try{attempt}-sentinel{i}"
            workdir.mkdir(parents=True, exist_ok=True)
            name = self.service_name
            (workdir / "sentinel.conf").write_text(
                "\n".join(
                    [
                        f"port {port}",
                        f"bind {HOST}",
                        "daemonize no",
                        'logfile ""',
                        f"dir {workdir}",
                        f"sentinel monitor {name} {HOST} {master_port} {self.quorum}",
                        f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                        f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                        f"sentinel parallel-syncs {name} 1",
                        "",
                    ]
                )
            )
            self.sentinels.append(
                RedisProcess(f"sentinel-{i}", port, workdir, ["sentinel.conf", "--sentinel"])
            )
        for process in self.data_nodes:
            process.spawn()
        for process in self.data_nodes:
            process.wait_ready()
        # Replicas attached before the sentinels start: a sentinel learns of replicas from the
        # master's INFO, which it reads on connecting and then only every 10 s.
        poll(
            lambda: all(
                info(n.port, "replication").get("master_link_status") == "up" for n in self.data_nodes[1:]
            ),
            timeout_s=START_TIMEOUT_S,
            what="the replicas to sync",
        )
        for process in self.sentinels:
            process.spawn()
        for process in self.sentinels:
            process.wait_ready()
        self.wait_whole()

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                if process.alive and process.popen is not None:
                    process.popen.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.stop()

    def heal(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Restart every process that is down and wait until the topology is whole again.

        A data node is restarted as a replica of the current master, as one restarted from a config
        file that Sentinel rewrote would be (Sentinel itself converts a restarted stale master only
        about 10 s later, and until then that node accepts writes as a second master)."""
        down = [p for p in self.processes if not p.alive]
        master = self.master() if any(s.alive for s in self.sentinels) else None
        for process in down:
            if process in self.data_nodes and master is not None and process is not master:
                process.args = [*_data_node_args(process.port), "--replicaof", HOST, str(master.port)]
            process.spawn()
        for process in down:
            process.wait_ready()
        self.wait_whole(timeout_s)

    # -- state ---------------------------------------------------------------------------------
    def master_address(self, sentinel: RedisProcess) -> tuple[str, int] | None:
        reply = ask(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
        if not reply:
            return None
        return str(reply[0]), int(reply[1])

    def agreed_master(self) -> RedisProcess | None:
        """The data node that every live sentinel names as master, or None if they disagree."""
        addresses = {self.master_address(s) for s in self.sentinels if s.alive}
        if len(addresses) != 1:
            return None
        address = addresses.pop()
        if address is None:
            return None
        return self.data_node(address[1])

    def master(self) -> RedisProcess:
        """The current master as the sentinels agree on it."""
        return poll(self.agreed_master, timeout_s=START_TIMEOUT_S, what="the sentinels to agree on a master")

    def whole(self) -> bool:
        """Every process up; the sentinels agree on a master that reports ``role:master`` with every
        other data node attached (link up); each sentinel sees the master healthy, all replicas and
        all other sentinels."""
        if any(not p.alive for p in self.processes):
            return False
        master = self.agreed_master()
        if master is None or info(master.port, "replication").get("role") != "master":
            return False
        for node in self.data_nodes:
            if node is master:
                continue
            replication = info(node.port, "replication")
            if replication.get("role") != "slave" or int(replication.get("master_port", -1)) != master.port:
                return False
            if replication.get("master_link_status") != "up":
                return False
        for sentinel in self.sentinels:
            state = _pairs(ask(sentinel.port, "SENTINEL", "MASTER", self.service_name))
            if state.get("flags") != "master":
                return False
            if int(state.get("num-other-sentinels", 0)) != self.sentinel_count - 1:
                return False
            replicas = [_pairs(r) for r in ask(sentinel.port, "SENTINEL", "REPLICAS", self.service_name)]
            # (flags only: a sentinel refreshes a replica's INFO every 10 s, so its idea of the
            # replica's link lags; the link itself was checked on the replica above)
            seen = {int(r.get("port", -1)) for r in replicas if r.get("flags") == "slave"}
            if not {n.port for n in self.data_nodes if n is not master} <= seen:
                return False
        return True

    def wait_whole(self, timeout_s: float = START_TIMEOUT_S) -> None:
        try:
            poll(self.whole, timeout_s=timeout_s, what="the sentinel topology to be whole")
        except TopologyError as exc:
            raise TopologyError(f"{exc}\n{self.logs()}") from None

    # -- chaos ---------------------------------------------------------------------------------
    def kill_master(self) -> RedisProcess:
        """SIGKILL the current master; the killed process."""
        victim = self.master()
        victim.kill()
        return victim

    def wait_for_failover(self, old: RedisProcess, timeout_s: float = FAILOVER_TIMEOUT_S) -> RedisProcess:
        """Wait until every live sentinel names another data node as master and that node reports
        ``role:master``; the new master."""

        def promoted() -> RedisProcess | None:
            new = self.agreed_master()
            if new is None or new is old or not new.alive:
                return None
            return new if info(new.port, "replication").get("role") == "master" else None

        return poll(promoted, timeout_s=timeout_s, what=f"the sentinels to replace {old.name}")

    async def wait_for_failover_async(
        self, old: RedisProcess, timeout_s: float = FAILOVER_TIMEOUT_S
    ) -> RedisProcess:
        """:meth:`wait_for_failover` in a thread, so the caller's event loop keeps running."""
        return await asyncio.to_thread(self.wait_for_failover, old, timeout_s)

    def logs(self) -> str:
        return "\n".join(p.log_tail() for p in self.processes)


def _pairs(reply: Any) -> dict[str, str]:
    """A flat ``[k1, v1, k2, v2, ...]`` reply (or a dict, as some redis-py versions parse it)."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in cast(dict[Any, Any], reply).items()}
    items = [str(x) for x in cast(list[Any], reply)]
    return dict(zip(items[::2], items[1::2], strict=True))


# -- fixtures --------------------------------------------------------------------------------------

_TOPOLOGIES = pytest.StashKey[list[ClusterTopology | SentinelTopology]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology: starts a real Redis Cluster or Sentinel topology (seconds)")


def _root(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    # Short paths: tmp_path_factory's base can be long, and nothing here needs it to be kept.
    return Path(
        tempfile.mkdtemp(prefix=f"{name}-{uuid.uuid4().hex[:6]}-", dir=tmp_path_factory.getbasetemp())
    )


@pytest.fixture(scope="session")
def cluster_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    """A 3-master, 3-replica Redis Cluster for the whole session (use ``redis_cluster`` in tests)."""
    require_binaries()
    topology = ClusterTopology(_root(tmp_path_factory, "cluster"))
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def sentinel_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    """1 master, 1 replica, 3 sentinels for the whole session (use ``redis_sentinel`` in tests)."""
    require_binaries()
    topology = SentinelTopology(_root(tmp_path_factory, "sentinel"))
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()


def _attach(request: pytest.FixtureRequest, topology: ClusterTopology | SentinelTopology) -> None:
    request.node.stash.setdefault(_TOPOLOGIES, []).append(topology)


@pytest.fixture
def redis_cluster(request: pytest.FixtureRequest, cluster_topology: ClusterTopology) -> ClusterTopology:
    """The session's cluster, healed (killed nodes restarted, every master with a synced replica)."""
    _attach(request, cluster_topology)
    cluster_topology.heal()
    return cluster_topology


@pytest.fixture
def redis_sentinel(request: pytest.FixtureRequest, sentinel_topology: SentinelTopology) -> SentinelTopology:
    """The session's Sentinel setup, healed (killed processes restarted, replica synced, sentinels
    agreeing)."""
    _attach(request, sentinel_topology)
    sentinel_topology.heal()
    return sentinel_topology


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    topologies = item.stash.get(_TOPOLOGIES, None) or ()
    if report.failed and topologies:
        for topology in topologies:
            report.sections.append((f"{type(topology).__name__} logs ({report.when})", topology.logs()))
    return report
