"""The lineage event file rotates by size into compressed files and keeps a count of them (issue 16,
item 3): concurrent appends from several processes across many rotations leave every event in
exactly one file, and nothing is lost but what the retention count drops."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from lineage.outbox import OutboxEvent
from lineage.transports import FileTransport, transports_from_settings
from meshcore.settings import Settings


def _events(path: Path) -> list[str]:
    """Every event uid in the current file and the rotated ones."""
    lines: list[str] = []
    for rotated in sorted(path.parent.glob("events-*")):
        assert rotated.name.endswith(".jsonl.gz"), rotated  # every rotated file is compressed
        with gzip.open(rotated, "rt") as handle:
            lines += handle.read().splitlines()
    lines += path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["uid"] for line in lines]


def _batch(writer: int, start: int, size: int) -> list[OutboxEvent]:
    return [
        OutboxEvent(
            n, f"{writer}-{n}", "run", "COMPLETE", json.dumps({"uid": f"{writer}-{n}", "pad": "x" * 200})
        )
        for n in range(start, start + size)
    ]


def test_concurrent_appends_across_rotations_keep_each_event_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "lineage" / "events.jsonl"
    writers, batches, size = 3, 60, 5
    child = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from tests.lineage.test_lineage_file_rotation import _batch
        from lineage.transports import FileTransport
        transport = FileTransport(Path({str(path)!r}), max_bytes=8_000)
        writer = int(sys.argv[1])
        for b in range({batches}):
            transport.send(_batch(writer, b * {size}, {size}))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", child, str(w)]) for w in range(writers)]
    assert [p.wait(timeout=300) for p in procs] == [0] * writers
    uids = _events(path)
    assert Counter(uids) == Counter(f"{w}-{n}" for w in range(writers) for n in range(batches * size))
    assert len(list(path.parent.glob("events-*.jsonl.gz"))) > 10  # it did rotate, many times
    for w in range(writers):  # each writer's events in the order it sent them
        own = [int(u.split("-")[1]) for u in uids if u.startswith(f"{w}-")]
        assert own == sorted(own)


def test_retention_keeps_the_newest_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    transport = FileTransport(path, max_bytes=1_000, keep=2)
    for b in range(20):
        transport.send(_batch(0, b * 5, 5))  # each batch fills the file: one rotation per batch
    assert len(list(tmp_path.glob("events-*.jsonl.gz"))) == 2
    assert _events(path) == [f"0-{n}" for n in range(90, 100)]  # the newest two batches


def test_a_crash_after_the_rename_is_compressed_at_the_next_rotation(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    transport = FileTransport(path, max_bytes=1_000)
    transport.send(_batch(0, 0, 5))
    left = next(tmp_path.glob("events-*.jsonl.gz"))
    with gzip.open(left, "rb") as handle:  # as if the process died before compressing it
        left.with_suffix("").write_bytes(handle.read())
    left.unlink()
    transport.send(_batch(0, 5, 5))
    assert _events(path) == [f"0-{n}" for n in range(10)]


def test_settings_configure_the_file_transport(tmp_path: Path) -> None:
    settings = Settings.for_home(tmp_path, extra={"lineage_file_max_mb": "0.5", "lineage_file_keep": "3"})
    [transport] = transports_from_settings(settings)
    assert isinstance(transport, FileTransport)
    assert (transport.max_bytes, transport.keep) == (1 << 19, 3)
    defaults = Settings.for_home(tmp_path)
    assert (defaults.lineage_file_max_bytes, defaults.lineage_file_keep) == (100 << 20, 10)
    never = Settings.for_home(tmp_path, extra={"lineage_file_max_mb": "0", "lineage_file_keep": "all"})
    assert (never.lineage_file_max_bytes, never.lineage_file_keep) == (None, None)
    with pytest.raises(ValueError, match="CIVICMESH_LINEAGE_FILE_MAX_MB"):
        Settings.for_home(tmp_path, extra={"lineage_file_max_mb": "-1"}).lineage_file_max_bytes  # noqa: B018
    with pytest.raises(ValueError, match="CIVICMESH_LINEAGE_FILE_KEEP"):
        Settings.for_home(tmp_path, extra={"lineage_file_keep": "some"}).lineage_file_keep  # noqa: B018
