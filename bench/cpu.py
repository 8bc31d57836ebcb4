"""CPU seconds of a bench's process groups, from /proc: Quaero's own processes, PostgreSQL and
RabbitMQ.

PostgreSQL and RabbitMQ are servers the machine shares (other benches, other tests), so each is
counted two ways where it can be: the whole server (PostgreSQL: the postmaster, every live
process under it, and through the postmaster's cutime/cstime the backends that exited meanwhile;
RabbitMQ: beam.smp and its children), which includes whatever else used them, and for
PostgreSQL the backends connected to the bench's own database alone (live at both snapshots or
started between them; one that exited meanwhile is not counted).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone, or never there
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    return [comm, *text.rsplit(")", 1)[1].split()]


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """utime + stime of `pid` (and with `children`, of its waited-for children: cutime + cstime);
    0 for a process that is gone."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # After the comm: state(1) ppid(2) ... utime(12) stime(13) cutime(14) cstime(15).
    ticks = int(fields[12]) + int(fields[13])
    if children:
        ticks += int(fields[14]) + int(fields[15])
    return ticks / _TICK


def _processes() -> dict[int, tuple[str, int]]:
    """pid -> (comm, ppid) of every process."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            found[int(entry)] = (fields[0], int(fields[2]))
    return found


def _tree(root: int, processes: Mapping[int, tuple[str, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (_, ppid) in processes.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_seconds(root: int, processes: Mapping[int, tuple[str, int]] | None = None) -> float:
    """CPU of `root` and its descendants, those that exited and were waited for included."""
    processes = processes if processes is not None else _processes()
    tree = _tree(root, processes)
    # cutime of a live descendant is already in its parent's cutime only once it exits, so the
    # root's and every live process's own (children=True) figures add up without overlap.
    return sum(cpu_seconds(pid, children=True) for pid in tree)


def _roots(processes: Mapping[int, tuple[str, int]], name: str) -> list[int]:
    """The topmost processes called `name` (a server's main process, not its children)."""
    return [pid for pid, (comm, ppid) in processes.items() if comm == name and processes.get(ppid, ("",))[0] != name]


@dataclass
class Snapshot:
    quaero: float
    postgres: float
    rabbitmq: float
    # The CPU of each backend of the bench's database, by pid.
    backends: dict[int, float] = field(default_factory=dict)


@dataclass
class Spent:
    """CPU seconds between two snapshots."""

    quaero: float
    postgres: float
    rabbitmq: float
    # PostgreSQL's backends of the bench's database alone.
    postgres_own: float

    @property
    def all(self) -> float:
        """Quaero, the whole PostgreSQL server and the whole broker."""
        return self.quaero + self.postgres + self.rabbitmq

    @property
    def own(self) -> float:
        """Quaero and its own database's backends (the broker is shared: not counted here)."""
        return self.quaero + self.postgres_own


def snapshot(quaero_trees: Iterable[int], backend_pids: Iterable[int] = ()) -> Snapshot:
    """The CPU so far of this process (its own, not its children's: the bench site is one), of
    `quaero_trees` with their descendants (worker processes and their parse pools), of the
    PostgreSQL and RabbitMQ servers, and of the given PostgreSQL backends."""
    processes = _processes()
    return Snapshot(
        quaero=cpu_seconds(os.getpid()) + sum(tree_seconds(pid, processes) for pid in quaero_trees),
        postgres=sum(tree_seconds(pid, processes) for pid in _roots(processes, "postgres")),
        rabbitmq=sum(tree_seconds(pid, processes) for pid in _roots(processes, "beam.smp")),
        backends={pid: cpu_seconds(pid) for pid in backend_pids},
    )


def spent(before: Snapshot, after: Snapshot) -> Spent:
    own = sum(cpu - before.backends.get(pid, 0.0) for pid, cpu in after.backends.items())
    return Spent(
        quaero=after.quaero - before.quaero,
        postgres=after.postgres - before.postgres,
        rabbitmq=after.rabbitmq - before.rabbitmq,
        postgres_own=own,
    )
