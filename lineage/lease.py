"""Who holds a transport's delivery lease, and whether that holder is still alive.

One process at a time delivers a transport's events (see `Outbox.acquire`). A lease names its holder
by process identity, `host:boot:pid:start:nonce` (the boot id from `/proc/sys/kernel/random/boot_id`,
the process start time in clock ticks since boot from `/proc/<pid>/stat`, field 22, per proc(5)).
On the same host and boot, a holder whose process is gone, or whose pid now belongs to a process
started at another time, is dead at once: its lease is taken over without waiting. A holder
elsewhere cannot be checked from here: its lease runs out `LEASE_TTL_S` seconds after its last
renewal (its dispatcher renews before every batch).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

LEASE_TTL_S = 30.0


@cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:  # not Linux: the holder's liveness cannot be checked, only its lease's expiry
        return ""


def _start_ticks(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks after boot), or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    return stat[stat.rindex(")") + 2 :].split()[19]


@dataclass(frozen=True)
class Holder:
    host: str
    boot: str
    pid: int
    start: str

    @classmethod
    def current(cls) -> Holder:
        pid = os.getpid()
        return cls(socket.gethostname()[:40], _boot_id(), pid, _start_ticks(pid) or "")

    @classmethod
    def parse(cls, owner: str) -> Holder | None:
        """The holder named by a lease owner string, or None if it is not in this format."""
        parts = owner.split(":")
        if len(parts) != 5 or not parts[2].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]), parts[3])

    def owner(self) -> str:
        """A new lease owner string for this holder (the nonce tells two dispatchers apart)."""
        return f"{self.host}:{self.boot}:{self.pid}:{self.start}:{uuid.uuid4().hex[:8]}"

    def alive(self) -> bool | None:
        """True or False for a process of this host and boot; None when that cannot be told here."""
        here = Holder.current()
        if not self.boot or not self.start or (self.host, self.boot) != (here.host, here.boot):
            return None
        return _start_ticks(self.pid) == self.start


def holder_alive(owner: str) -> bool | None:
    """Is the lease holder `owner` alive? None when unknown (another host, an older owner format)."""
    holder = Holder.parse(owner)
    return None if holder is None else holder.alive()
