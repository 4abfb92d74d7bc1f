"""Where signed checkpoints go outside the metadata store: an append-only sink.

Someone who can rewrite the metadata store (a database administrator, a restored backup) must not
also be able to rewrite the checkpoints that pin it, so every checkpoint is delivered to a sink on
another trust boundary before it is recorded in the store (`AccessLog.checkpoint`), and
`civicmesh audit verify` checks the store against the sink.

A sink is anything with the three methods of `CheckpointSink`:

- `append(checkpoint)`: appends only if the checkpoint follows the sink's last one (its `index` is
  one more; 1 on an empty sink), atomically, and is durable when it returns (the file sink
  fsyncs); raises `SinkConflict` if another writer appended first, `SinkError` if it cannot write.
  This compare-and-append keeps one chain across any number of sealing processes.
- `read()`: every entry ever appended, in order, each with its position (malformed entries too:
  the verifier reports them).
- `last()`: the newest checkpoint (the head of the checkpoint chain), or None.

`FileSink` (the default: `$CIVICMESH_HOME/audit/checkpoints.jsonl`, one JSON object per line) is
only as append-only as its file system makes it: in production put it on another host or volume and
make it append-only there (`chattr +a`, a WORM mount). Other sinks fit the same three methods:

- **Object storage with a retention lock** (S3 Object Lock in compliance mode, GCS retention
  policies, Azure immutable blobs): one object per checkpoint named by its zero-padded index
  (`checkpoints/000000000042.json`), written with a retention date and a create-only condition
  (`If-None-Match: *`: the compare-and-append); `read()` lists the prefix, `last()` reads the
  highest key. Neither the server nor the bucket's admins can delete or replace a locked object
  before its retention ends.
- **Syslog** (RFC 5424 over TLS to a collector, RFC 5425): `append()` sends one message per
  checkpoint (structured data carries the JSON); `read()`/`last()` read the collector's archive.

`open_sink(spec)` maps a configured spec (`CIVICMESH_AUDIT_SINK`) to a sink: a path or a
`file://` URL today; a new scheme is one more branch there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

_TAIL_BLOCK = 64 * 1024


class SinkError(RuntimeError):
    """The sink could not be written or read; the message names it."""


class SinkConflict(SinkError):
    """Another writer appended the checkpoint with that index first."""


@dataclass(frozen=True)
class SinkEntry:
    position: int  # 1-based line (or object) number, for messages
    data: dict[str, Any] | None  # None: not a JSON object
    raw: str


class CheckpointSink(Protocol):
    location: str  # shown to people (a path or URL)

    def append(self, checkpoint: dict[str, Any]) -> None: ...

    def read(self) -> list[SinkEntry]: ...

    def last(self) -> dict[str, Any] | None: ...


def _line(checkpoint: dict[str, Any]) -> bytes:
    return (json.dumps(checkpoint, sort_keys=True, separators=(",", ":")) + "\n").encode()


class FileSink:
    """JSON lines in one file, appended with O_APPEND under an exclusive lock and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)

    def append(self, checkpoint: dict[str, Any]) -> None:
        created = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                with os.fdopen(os.dup(fd), "rb") as handle:
                    last = _tail(handle, self.path)
                expected = int(last["index"]) + 1 if last else 1
                if checkpoint.get("index") != expected:
                    raise SinkConflict(f"{self.path} already holds checkpoint #{expected - 1}")
                _append_whole(fd, _line(checkpoint))
            finally:
                os.close(fd)  # releases the lock
            if created:  # the new directory entry must survive a crash too
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except (OSError, ValueError, KeyError) as exc:
            raise SinkError(f"cannot append to the checkpoint sink {self.path}: {exc}") from exc

    def read(self) -> list[SinkEntry]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SinkError(f"cannot read the checkpoint sink {self.path}: {exc}") from exc
        return [_entry(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]

    def last(self) -> dict[str, Any] | None:
        """The last line's object, reading only the file's tail."""
        try:
            with self.path.open("rb") as handle:
                return _tail(handle, self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SinkError(f"cannot read the checkpoint sink {self.path}: {exc}") from exc


def _append_whole(fd: int, line: bytes) -> None:
    """Append `line` durably, or leave the file as it was (we hold its lock: nobody else appends).

    A full disk or a file size limit makes write(2) write part of the line and return the count;
    that torn line would make every later append and `audit verify` fail long after the disk has
    room again. So a short write, or a failed write or fsync, is cut back off before raising. On a
    file that is append-only for real (`chattr +a`) the cut is refused: the torn line stays for the
    verifier to report, and sealing stops until an operator repairs the sink."""
    size = os.fstat(fd).st_size
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(errno.ENOSPC, f"short write: {written} of {len(line)} bytes (disk full?)")
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise


def _tail(handle: Any, path: Path) -> dict[str, Any] | None:
    """The object on the last non-empty line of a binary file, reading back from its end."""
    size = handle.seek(0, os.SEEK_END)
    start = max(0, size - _TAIL_BLOCK)
    while True:
        handle.seek(start)
        lines = [x for x in handle.read(size - start).splitlines() if x.strip()]
        if start == 0 or len(lines) >= 2:  # the first line of a chunk may be cut
            break
        start = max(0, start - _TAIL_BLOCK)
    if not lines:
        return None
    entry = _entry(0, lines[-1].decode("utf-8", errors="replace"))
    if entry.data is None:
        raise SinkError(f"the last line of the checkpoint sink {path} is not a checkpoint")
    return entry.data


def _entry(position: int, line: str) -> SinkEntry:
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    return SinkEntry(position, data if isinstance(data, dict) else None, line)


def open_sink(spec: str) -> CheckpointSink:
    """A sink from its configured spec: a file path or a `file://` URL."""
    parsed = urlparse(spec)
    if parsed.scheme == "file":
        return FileSink(Path(unquote(parsed.path)))
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # a plain (or Windows drive) path
        return FileSink(Path(spec).expanduser())
    raise SinkError(
        f"unsupported checkpoint sink {spec!r}: use a file path or file:// URL "
        "(see meshcore/seals/sinks.py for adding object storage or syslog)"
    )
