"""Shutdown with background work in flight: the process exits cleanly, never aborts (exit 134).

Run in a child process, because a DuckDB connection closed under a running load aborts the whole
interpreter (ARCHITECTURE §2b), which would take pytest down with it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path

    import duckdb

    from gateway.duck import DuckPool

    snapshots = Path(sys.argv[1])
    big = snapshots / "big.parquet"
    duckdb.sql(
        "COPY (SELECT i, md5(i::VARCHAR) AS h, md5((i * 7)::VARCHAR) AS g FROM range(8000000) t(i)) "
        f"TO '{big}' (FORMAT parquet)"
    )
    pool = DuckPool(snapshots, "key", hot_budget_bytes=1 << 40)
    assert pool.source(str(big), big.stat().st_size) is None  # starts the background load
    time.sleep(0.1)  # let the load get going inside DuckDB (it takes seconds: 8M rows)
    loading = len(pool._loading)
    pool.close()
    print(f"closed with {loading} load(s) in flight", flush=True)
    """
)


def test_closing_the_pool_during_a_background_load_exits_cleanly(tmp_path: Path) -> None:
    graphql_dir = Path(__file__).resolve().parents[2] / "graphql"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=graphql_dir,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "closed with 1 load(s) in flight" in result.stdout  # the load was really running
