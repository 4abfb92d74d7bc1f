"""Where outboxed events go: a JSON-lines file (default), any OpenLineage HTTP backend, the console.

Transports take already-serialised events from the outbox (no re-serialisation) and deliver a batch
in order. OpenLineage's own HttpTransport retries inside `emit` and raises when the backend is down;
here the dispatcher owns retries and back-off, so a transport only reports how far it got.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from lineage.outbox import OutboxEvent
from meshcore.settings import Settings
from meshcore.snapshots import fsync_dir

DEFAULT_TRANSPORTS = "file"


class DeliveryError(Exception):
    """A batch stopped part-way: the first `delivered` events got through.

    `rejected` means the backend refused the next event for good (a 4xx): retrying cannot help, so the
    dispatcher records it as rejected instead of blocking every later event behind it.
    """

    def __init__(self, message: str, delivered: int = 0, rejected: bool = False) -> None:
        super().__init__(message)
        self.delivered = delivered
        self.rejected = rejected


class Transport(Protocol):
    name: str

    def send(self, batch: Sequence[OutboxEvent]) -> None:
        """Deliver every event of `batch` in order, or raise DeliveryError saying how many got through."""
        ...

    def close(self) -> None: ...


class FileTransport:
    """Appends one JSON event per line and fsyncs once per batch (durable before it is marked delivered).

    Rotation: once the file reaches `max_bytes` (None: never), it is renamed to
    `<stem>-<UTC time>.jsonl`, compressed to `<that>.gz` (gzip, written to a temporary name, fsynced,
    renamed) and the `keep` newest compressed files are kept (None: all). Appends and rotation of
    any number of processes serialise on an exclusive `flock` of `<file>.lock`, so no batch is
    written to a file being rotated: every event is in exactly one file. A crash after the rename
    leaves an uncompressed rotated file, compressed at the next rotation.
    """

    def __init__(
        self, path: Path, name: str = "file", max_bytes: int | None = None, keep: int | None = None
    ) -> None:
        self.name = name
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep

    def send(self, batch: Sequence[OutboxEvent]) -> None:
        if not batch:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write("".join(e.event_json + "\n" for e in batch))
                    handle.flush()
                    os.fsync(handle.fileno())
                    size = handle.tell()
                if self.max_bytes is not None and size >= self.max_bytes:
                    self._rotate()
        except OSError as exc:
            raise DeliveryError(f"cannot append to {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self.path.with_name(self.path.name + ".lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def rotated(self) -> list[Path]:
        """The rotated files, oldest first (their names sort by time)."""
        return sorted(self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}*"))

    def _rotate(self) -> None:
        """Under the lock: rename the full file, compress every rotated file not yet compressed,
        drop the oldest beyond `keep`."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        os.replace(self.path, self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}"))
        for plain in [p for p in self.rotated() if p.suffix == self.path.suffix]:
            packed = plain.with_name(plain.name + ".gz")
            part = packed.with_name(packed.name + ".part")
            with plain.open("rb") as source, part.open("wb") as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(part, packed)
            plain.unlink()
        fsync_dir(self.path.parent)
        packed_files = [p for p in self.rotated() if p.name.endswith(self.path.suffix + ".gz")]
        for old in packed_files[: max(0, len(packed_files) - self.keep)] if self.keep is not None else ():
            old.unlink()

    def close(self) -> None:
        pass


class HttpTransport:
    """POSTs each event to `{url}/api/v1/lineage` (the OpenLineage HTTP API, as Marquez serves it)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float = 5.0,
        endpoint: str = "api/v1/lineage",
        name: str = "http",
    ) -> None:
        self.name = name
        self.url = url.rstrip("/") + "/" + endpoint.lstrip("/")
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = headers
        self._timeout = timeout
        self._client: Any = None  # an httpx.Client, made on the first send

    def send(self, batch: Sequence[OutboxEvent]) -> None:
        import httpx  # here, not at start-up: most deployments deliver to the file transport

        if self._client is None or self._client.is_closed:
            # One pooled client: keep-alive matters when draining a backlog of thousands of events.
            self._client = httpx.Client(headers=self._headers, timeout=self._timeout)
        for index, event in enumerate(batch):
            try:
                response = self._client.post(self.url, content=event.event_json.encode())
            except httpx.HTTPError as exc:
                raise DeliveryError(f"POST {self.url}: {exc!r}", delivered=index) from exc
            if response.is_success:
                continue
            status = response.status_code
            message = f"POST {self.url}: HTTP {status} {response.text[:200]}"
            # 408/429 and 5xx are the backend's trouble: retry later. Other 4xx will never succeed.
            permanent = 400 <= status < 500 and status not in (401, 403, 408, 429)
            raise DeliveryError(message, delivered=index, rejected=permanent)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class ConsoleTransport:
    def __init__(self, stream: TextIO | None = None, name: str = "console") -> None:
        self.name = name
        self.stream = stream

    def send(self, batch: Sequence[OutboxEvent]) -> None:
        stream = self.stream or sys.stdout
        for event in batch:
            print(event.event_json, file=stream)
        stream.flush()

    def close(self) -> None:
        pass


def default_file_path(settings: Settings) -> Path:
    return settings.lineage_dir / "events.jsonl"


def transports_from_settings(settings: Settings) -> list[Transport]:
    """`CIVICMESH_LINEAGE_TRANSPORTS` (comma list of file, http, console; default file) and
    `CIVICMESH_LINEAGE_URL` / `CIVICMESH_LINEAGE_API_KEY` for http. `settings.extra` keys of the same
    names (lower case, without the prefix) win, so a test can configure one Settings object."""

    get = settings.option

    names = [
        n.strip().lower() for n in (get("lineage_transports") or DEFAULT_TRANSPORTS).split(",") if n.strip()
    ]
    transports: list[Transport] = []
    for name in dict.fromkeys(names):
        if name == "file":
            transports.append(
                FileTransport(
                    default_file_path(settings),
                    max_bytes=settings.lineage_file_max_bytes,
                    keep=settings.lineage_file_keep,
                )
            )
        elif name == "http":
            url = get("lineage_url")
            if not url:
                raise ValueError("lineage transport 'http' needs CIVICMESH_LINEAGE_URL")
            timeout = float(get("lineage_timeout") or 5.0)
            transports.append(HttpTransport(url, api_key=get("lineage_api_key"), timeout=timeout))
        elif name == "console":
            transports.append(ConsoleTransport())
        else:
            raise ValueError(f"unknown lineage transport {name!r}; use file, http or console")
    return transports
