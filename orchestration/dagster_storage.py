"""Dagster's SQLite event log with pooled connections (configured in dagster.yaml).

The stock `SqliteEventLogStorage` builds a new SQLAlchemy engine, opens a connection, commits and
closes it for every write, and writes each asset and asset-check event two or three times (the
run's own database plus the cross-run index). A `civicmesh build` logs ~450 events, so at
~8-13 ms a write the event log alone cost 4-6 s of every build (measured with
`bench/build.py`), most of it engine creation, connect/close and the checkpoint on close.

This keeps one engine (and pooled connection) per database, same files, same schema, same
durability (no pragma changes): a `dagster dev` with the stock storage reads them unchanged.
Closing the last connection used to checkpoint the WAL into `<run_id>.db`, and the webserver
follows a running run by watching that file; so after every write to a run's database this runs
a passive checkpoint, and the UI still sees each event as it is written.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster import Field, StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from meshcore.settings import chosen_dagster_home

# Run databases whose engine stays open: a build writes one at a time; the webserver reads a few.
MAX_OPEN_RUN_SHARDS = 8


def default_base_dir() -> str:
    """Where Dagster keeps run event logs by default: $DAGSTER_HOME/history/runs."""
    home = chosen_dagster_home()
    if home is None:
        raise RuntimeError("DAGSTER_HOME is not set: the pooled event log storage needs a base_dir")
    return os.path.join(home, "history", "runs")


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with one engine per shard instead of one per write."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        super().__init__(base_dir or default_base_dir(), inst_data=inst_data)

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **dict(config_value))

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=4,
                # Connections are used under self._db_lock, one thread at a time, but not always
                # by the thread that opened them.
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            self._engines[shard] = engine
            run_shards = [s for s in self._engines if s != INDEX_SHARD_NAME]
            for stale in run_shards[: max(0, len(run_shards) - MAX_OPEN_RUN_SHARDS)]:
                self._engines.pop(stale).dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn
                if shard != INDEX_SHARD_NAME:
                    # Put the write into <run_id>.db now: `dagster dev` follows a run by watching it.
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def _dispose_engines(self) -> None:
        with self._engines_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._dispose_engines()  # wipe deletes run databases: no connection may keep them open
        super().wipe()

    def upgrade(self) -> None:
        self._dispose_engines()
        super().upgrade()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()
