"""Compaction of delivered read events keeps the lineage graph whole and never loses what is undelivered.

Real outbox (SQLite and PostgreSQL), real file transports, the real dispatcher delivering: the graph
built from what compaction leaves must equal the graph built from every event, readers included.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text, update

from lineage import compaction, events, naming
from lineage.compaction import Compactor
from lineage.dispatcher import Dispatcher
from lineage.graph import DATASET, LineageGraph, Node
from lineage.outbox import Outbox, newest_before, outbox_table, recorded_before
from lineage.transports import FileTransport
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.settings import Settings
from policies.decision import Decision

SPECS = [
    ProductSpec(
        department="public_works",
        product=name,
        classification="internal",
        owner="alice@city.example",
        description=name,
        columns=(ColumnSpec("request_id", "varchar"), ColumnSpec("district", "varchar")),
    )
    for name in ("service_requests", "potholes")
]


def _read(subject: str, spec: ProductSpec, allowed: bool = True, export: str | None = None) -> dict:
    decision = Decision(allowed, subject, spec.name, "read", "p, x", "because", "v1")
    return events.read_event_dict(
        events.new_run_id(), subject, spec, "snap-1", ["request_id"], decision, 3, export_format=export
    )


def _publish(spec: ProductSpec) -> list:
    return events.publish_events(events.new_run_id(), None, spec, "snap-1", "/s.parquet", 10)


def _history() -> list:
    """Two publishes of each product, and reads: repeated, by several callers, denied, exported."""
    history: list = []
    for spec in SPECS:
        history += _publish(spec) + _publish(spec)
    for i in range(30):
        spec = SPECS[i % 2]
        history.append(_read(("dana", "bob", "erin")[i % 3], spec))
        history.append(_read("mallory", spec, allowed=False))
    history.append(_read("erin", SPECS[0], export="csv"))
    history.append(_read("frank", SPECS[1]))  # one read only: it is its own newest
    return history


def _graph(outbox: Outbox) -> dict:
    graph = LineageGraph.from_events(e.as_dict() for e in outbox.events())
    walks = {}
    for spec in SPECS:
        ref = naming.product_dataset(spec.name)
        for direction in ("upstream", "downstream"):
            root = Node(DATASET, ref.namespace, ref.name)
            walks[spec.name, direction] = graph.walk(root, direction, 5).as_dict()
    return walks


@pytest.fixture
def lagless(outbox: Outbox) -> Outbox:
    """The delivery floor moves at once (PostgreSQL's visibility lag is 300 s by default)."""
    return Outbox(outbox.engine, visibility_lag_s=0.0)


def _deliver(outbox: Outbox, *transports: FileTransport) -> None:
    """Deliver everything, then release the lease as a stopping dispatcher does (another dispatcher
    holding it would otherwise wait out its 30 s lease)."""
    dispatcher = Dispatcher(outbox, list(transports), batch_size=50)
    try:
        assert dispatcher.drain(timeout=30)
    finally:
        dispatcher.stop()


@pytest.mark.parametrize("page", [5, 2000])  # pages of 5: the history is read in many pages
def test_compaction_keeps_the_graph_and_one_read_per_reader_and_product(
    lagless: Outbox, tmp_path: Path, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compaction, "PAGE", page)
    lagless.append(_history())
    before, count = _graph(lagless), lagless.count()
    _deliver(lagless, FileTransport(tmp_path / "events.jsonl"))
    removed = Compactor(lagless, timedelta(0)).run(["file"])
    # Kept: 8 publish events; one read per (reader job, product): dana, bob, erin x 2 products,
    # erin's export, frank's read. Every denied read goes.
    assert lagless.count() == 8 + 6 + 1 + 1
    assert removed == count - lagless.count()
    assert _graph(lagless) == before
    delivered = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(delivered) == count  # the transport got every event before any was compacted


def test_a_second_pass_removes_the_reads_an_newer_one_superseded(lagless: Outbox, tmp_path: Path) -> None:
    transport = FileTransport(tmp_path / "events.jsonl")
    compactor = Compactor(lagless, timedelta(0))
    lagless.append(_history())
    _deliver(lagless, transport)
    compactor.run(["file"])
    kept = {e.seq for e in lagless.events()}
    lagless.append([_read("dana", SPECS[0]), _read("dana", SPECS[0])])
    before = _graph(lagless)
    _deliver(lagless, transport)
    assert compactor.run(["file"]) == 2  # the older of the two new reads, and the one kept before
    assert len({e.seq for e in lagless.events()} - kept) == 1
    assert _graph(lagless) == before
    # A new process (no memory of earlier passes) judges the same way and removes nothing more.
    assert Compactor(lagless, timedelta(0)).run(["file"]) == 0


def test_nothing_undelivered_is_compacted(lagless: Outbox, tmp_path: Path) -> None:
    lagless.append(_history())
    count = lagless.count()
    compactor = Compactor(lagless, timedelta(0))
    assert compactor.run(["file"]) == 0  # never delivered: no floor
    _deliver(lagless, FileTransport(tmp_path / "a.jsonl", name="file"))
    # A second configured transport that delivered nothing holds everything back.
    assert compactor.run(["file", "http"]) == 0 and lagless.count() == count
    assert compactor.run([]) == 0  # no transport: nothing is ever delivered
    # Half delivered to the second: only that half can go.
    half = [e.seq for e in lagless.pending("http", limit=count // 2)]
    lagless.mark_delivered("http", half)
    compactor.run(["file", "http"])
    left = {e.seq for e in lagless.events()}
    assert {e.seq for e in lagless.pending("http", limit=count)} <= left
    assert count > lagless.count()


def test_reads_younger_than_the_retention_stay(lagless: Outbox, tmp_path: Path) -> None:
    lagless.append(_history())
    count = lagless.count()
    _deliver(lagless, FileTransport(tmp_path / "events.jsonl"))
    compactor = Compactor(lagless, timedelta(days=1))
    assert compactor.run(["file"]) == 0 and lagless.count() == count
    assert compactor.run(["file"], now=datetime.now(UTC) + timedelta(days=2)) > 0


def test_the_dispatcher_compacts_after_delivering(lagless: Outbox, tmp_path: Path) -> None:
    lagless.append(_history())
    dispatcher = Dispatcher(
        lagless, [FileTransport(tmp_path / "e.jsonl")], compactor=Compactor(lagless, timedelta(0))
    )
    assert dispatcher.compact() == 0  # nothing delivered yet
    assert dispatcher.drain(timeout=30)
    assert dispatcher.compact() == 0  # not due: the interval starts at the last pass
    assert dispatcher.compact(force=True) > 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, timedelta(days=7)), ("0", timedelta(0)), ("0.5", timedelta(hours=12)), ("inf", None)],
)
def test_retention_setting(tmp_path: Path, value: str | None, expected: timedelta | None) -> None:
    extra = {} if value is None else {"lineage_read_retention_days": value}
    assert Settings(home=tmp_path, metadata_url="sqlite://", extra=extra).lineage_read_retention == expected


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_a_bad_retention_is_refused(tmp_path: Path, value: str) -> None:
    settings = Settings(home=tmp_path, metadata_url="sqlite://", extra={"lineage_read_retention_days": value})
    with pytest.raises(ValueError):
        _ = settings.lineage_read_retention


def _rows_read(outbox: Outbox, cutoff: datetime) -> tuple[int, int]:
    """(`recorded_before(cutoff)`, the work the store did for it): SQLite's virtual-machine steps
    (its progress handler, every 100), or the rows PostgreSQL's plan read (actual and filtered out)."""
    with outbox.engine.connect() as conn:
        if outbox.engine.dialect.name == "sqlite":
            steps = [0]
            raw = conn.connection.dbapi_connection
            raw.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1) or 0, 100)  # type: ignore[union-attr]
            try:
                seq = recorded_before(conn, cutoff)
            finally:
                raw.set_progress_handler(None, 0)  # type: ignore[union-attr]
            return seq, steps[0]
        seq = recorded_before(conn, cutoff)
        statement = newest_before(cutoff).compile(conn, compile_kwargs={"literal_binds": True})
        plan: dict = conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}")).scalar_one()[0]

    def read(node: dict) -> int:
        own = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        return own + sum(read(child) for child in node.get("Plans", ()))

    return seq, read(plan["Plan"])


def test_the_retention_bound_is_one_index_seek_not_a_walk_over_newer_reads(lagless: Outbox) -> None:
    """Issue 16: `max(seq) WHERE created_at < cutoff` walked every event newer than the cutoff (a
    whole retention window of reads: 0.4-1.1 s on a 263k-event store, every pass of every worker).
    The bound is the newest old event's seq: never above that max, and its cost does not grow with
    the events recorded since."""
    old = _history()[:6]
    lagless.append(old)
    week_ago = datetime.now(UTC) - timedelta(days=8)
    with lagless.engine.begin() as conn:
        conn.execute(update(outbox_table).values(created_at=week_ago))
    cutoff = datetime.now(UTC) - timedelta(days=7)
    newest_old = max(e.seq for e in lagless.events())
    costs = []
    for _ in range(2):
        lagless.append([e for _ in range(20) for e in _history()])  # ~1,300 newer events, twice
        seq, cost = _rows_read(lagless, cutoff)
        assert seq == newest_old
        costs.append(cost)
    assert lagless.count() > 2_500
    assert costs[1] <= costs[0] + 5, costs  # one seek: the second batch of newer events costs nothing
    with lagless.engine.connect() as conn:
        assert recorded_before(conn, datetime(2000, 1, 1, tzinfo=UTC)) == 0  # none that old


def _write_recorded_at(outbox: Outbox, events_: list, at: list[datetime]) -> list[int]:
    """Store `events_` (one transaction each, in list order) as recorded at `at`: the times their
    rows hold, out of seq order as clocks and waits make them (SQLite keeps each writer's clock;
    PostgreSQL's own clock can still date a later seq earlier, between two sessions' inserts, or
    after a step of its clock); returns their seqs."""
    for event, when in zip(events_, at, strict=True):
        [uid] = outbox.append([event])
        with outbox.engine.begin() as conn:
            conn.execute(update(outbox_table).where(outbox_table.c.event_uid == uid).values(created_at=when))
    return [e.seq for e in outbox.events()][-len(events_) :]


def test_the_retention_bound_is_never_above_the_newest_seq_recorded_before_the_cutoff(
    lagless: Outbox,
) -> None:
    """Times out of seq order (clocks of several processes, a write that waited for the lock), equal
    times, a cutoff equal to a recorded time, one before all and one after: the bound is the seq of
    the newest event recorded before the cutoff (the highest seq among equals), never above
    `max(seq) WHERE created_at < cutoff`."""
    with lagless.engine.connect() as conn:
        assert recorded_before(conn, datetime.now(UTC)) == 0  # an empty outbox
    base = datetime(2026, 11, 1, tzinfo=UTC)
    offsets = [5, 3, 3, 9, 1, 3, 7, 0, 9, 2]
    seqs = _write_recorded_at(
        lagless, [_read("dana", SPECS[0])] * len(offsets), [base + timedelta(seconds=s) for s in offsets]
    )
    recorded = list(zip(offsets, seqs, strict=True))
    for cutoff in range(-1, 11):
        before = [(at, seq) for at, seq in recorded if at < cutoff]
        with lagless.engine.connect() as conn:
            bound = recorded_before(conn, base + timedelta(seconds=cutoff))
        assert bound == (max(before)[1] if before else 0), cutoff
        assert bound <= max((seq for _, seq in before), default=0)


@pytest.mark.parametrize("zone", [timezone(timedelta(hours=5)), timezone(timedelta(hours=-8))])
def test_a_cutoff_in_another_time_zone_is_the_same_instant(lagless: Outbox, zone: timezone) -> None:
    """The outbox holds UTC; a cutoff given in another zone means the same instant on both stores
    (SQLite compares the stored text: an unconverted cutoff would be off by the zone's offset), and
    one without a zone is refused."""
    base = datetime(2026, 11, 1, 12, tzinfo=UTC)
    seqs = _write_recorded_at(
        lagless, [_read("dana", SPECS[0])] * 3, [base - timedelta(hours=9), base, base + timedelta(hours=9)]
    )
    with lagless.engine.connect() as conn:
        assert recorded_before(conn, base.astimezone(zone)) == seqs[0]
        assert recorded_before(conn, (base + timedelta(seconds=1)).astimezone(zone)) == seqs[1]
        with pytest.raises(ValueError, match="time zone"):  # which instant is meant cannot be told
            recorded_before(conn, base.replace(tzinfo=None))


def test_reads_younger_than_the_retention_stay_when_a_later_event_carries_an_older_time(
    lagless: Outbox, tmp_path: Path
) -> None:
    """Two reads of the same product by the same caller (the older one is what a pass removes),
    recorded 10 s short of the retention; then a publish whose time is 20 s older than theirs though
    it was stored after them (it waited that long for the store's write lock after `prepare` took
    its time, or another host's clock runs behind). Neither read may go yet; once aged, the older
    one goes."""
    now, retention = datetime.now(UTC), timedelta(hours=1)
    recorded = now - retention + timedelta(seconds=10)
    young = _write_recorded_at(lagless, [_read("dana", SPECS[0]), _read("dana", SPECS[0])], [recorded] * 2)
    _write_recorded_at(lagless, _publish(SPECS[0])[:1], [recorded - timedelta(seconds=20)])
    _deliver(lagless, FileTransport(tmp_path / "events.jsonl"))
    compactor = Compactor(lagless, retention)
    assert compactor.run(["file"], now=now) == 0
    assert set(young) <= {e.seq for e in lagless.events()}
    # Once aged, the same process (which judged past them) still removes the older read.
    assert compactor.run(["file"], now=now + timedelta(seconds=20)) == 1
    assert {e.seq for e in lagless.events()} & set(young) == {young[1]}
