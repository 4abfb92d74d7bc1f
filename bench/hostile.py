"""Hostile GraphQL documents against the gateway: how long one holds the event loop, and what four
hostile clients cost everyone else (issue 11, item 4).

One run, one home (a 90-row service-requests snapshot), the real app under uvicorn in this process,
so a ticker coroutine on the same event loop sees every stall:

  hold      each hostile document alone (a field written 1,800 times, a fragment fan-out, repeats
            compounding per level, 60 spreads, 1,000 distinct fields, braces 700 deep): the worst
            ticker lag while it is answered (target <= 20 ms), median of 5 rounds, next to the
            worst lag of idle windows (what a loaded machine alone costs the loop)
  baseline  p50 of a normal query (one client, sequential, unique bodies) with no hostile client
  hostile   the same while 4 client processes send the 1,800-repeated-field document (unique text
            every time, so no parse or validation cache answers), and the ratio to the baseline

Clients are separate processes (their CPU is not this process's GIL). Run:
`python bench/hostile.py [--requests 300]`; figures depend on the machine: compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as `python bench/NAME.py`: Python puts bench/ first on the path, where gateway.py would shadow
# the package of the same name. The repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "graphql"))

import duckdb  # noqa: E402
import uvicorn  # noqa: E402

from meshcore.catalog import Catalog  # noqa: E402
from meshcore.products import ColumnSpec, ProductSpec  # noqa: E402
from meshcore.settings import Settings  # noqa: E402
from meshcore.snapshots import write_snapshot  # noqa: E402
from meshcore.store import get_engine  # noqa: E402

SPEC = ProductSpec(
    department="public_works",
    product="service_requests",
    classification="internal",
    owner="alice@city.example",
    description="Service requests (benchmark).",
    key="request_id",
    columns=(
        ColumnSpec("request_id", "varchar"),
        ColumnSpec("district", "varchar"),
        ColumnSpec("priority", "integer"),
    ),
)
SQL = "SELECT printf('SR-%04d', i) AS request_id, 'D' || (i % 9 + 1) AS district, CAST(i % 4 + 1 AS INTEGER) AS priority FROM range(90) t(i)"  # noqa: E501
NORMAL = (
    "query($p: Int!) { publicWorks { serviceRequests(where: {priority: {lte: $p}}, first: 20) "
    "{ totalCount nodes { requestId district priority } } } }"
)
TARGET_HOLD_MS = 20.0


def hostile_documents(i: int) -> dict[str, str]:
    """Each kind of hostile document, its text unique for `i` (no cache answers it)."""
    fan = ["fragment F0 on Me { user }"] + [
        f"fragment F{k} on Me {{ ...F{k - 1} ...F{k - 1} }}" for k in range(1, 20)
    ]
    return {
        "a field written 1,800 times": f"{{ me {{ u{i}: user " + "user " * 1800 + "} }",
        "a fragment fan-out (2^19)": f"{{ me {{ u{i}: user ...F19 }} }} " + " ".join(fan),
        "repeats compounding per level": f"{{ me {{ u{i}: user "
        + ("roles { " + "role " * 15 + "} ") * 15
        + "} }",
        "60 spreads": f"{{ me {{ u{i}: user "
        + " ".join(f"...F{k}" for k in range(60))
        + " } } "
        + " ".join(f"fragment F{k} on Me {{ user }}" for k in range(60)),
        "1,000 distinct unknown fields": f"{{ me {{ u{i}: user "
        + " ".join(f"f{k}" for k in range(1000))
        + " } }",
        "braces 700 deep": f"{{ u{i} " + "{" * 700 + "}" * 700 + " }",
    }


# -- the client processes ----------------------------------------------------------------------------


def client(role: str, port: int, token: str, count: int) -> None:
    """`normal`: `count` sequential normal queries, prints their latencies (s) as JSON. `hostile`:
    the 1,800-repeated-field document with unique text, until killed."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies = []
    i = 0
    while role == "hostile" or i < count:
        i += 1
        if role == "normal":
            body = {"query": NORMAL, "variables": {"p": 4 + i}}  # unique body: no response cache
        else:
            body = {"query": hostile_documents(i + 10_000 * count)["a field written 1,800 times"]}
        started = time.perf_counter()
        conn.request("POST", "/graphql", json.dumps(body), headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            raise SystemExit(f"{role} client: HTTP {response.status}")
    print(json.dumps(latencies))


# -- the server side -----------------------------------------------------------------------------------


class Ticker:
    """A coroutine that wakes every millisecond and keeps the worst lateness seen (the loop's stall)."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - started - 0.001)

    def take(self) -> float:
        worst, self.worst = self.worst, 0.0
        return worst * 1000


def home() -> Settings:
    path = Path(tempfile.mkdtemp(prefix="civicmesh-hostile-"))
    settings = Settings.for_home(path)
    settings.ensure_dirs()
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS {SQL}")
    written = write_snapshot(con, "t", settings.snapshots_dir / SPEC.department / SPEC.product)
    con.close()
    Catalog(get_engine(settings.metadata_url)).ensure_schema().publish(SPEC, written)
    return settings


async def spawn(role: str, port: int, token: str, count: int = 0) -> asyncio.subprocess.Process:
    arguments = ("--client", role, str(port), token, str(count))
    return await asyncio.create_subprocess_exec(
        sys.executable, __file__, *arguments, stdout=asyncio.subprocess.PIPE
    )


async def normal_p50(port: int, token: str, count: int) -> float:
    process = await spawn("normal", port, token, count)
    out, _ = await process.communicate()
    if process.returncode:
        raise SystemExit("the normal client failed")
    return statistics.median(json.loads(out)) * 1000


async def hold(port: int, token: str, ticker: Ticker, rounds: int = 5) -> dict[str, list[float]]:
    """Worst event-loop stalls (ms) while each hostile document is answered alone, one per round."""
    import httpx

    out: dict[str, list[float]] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        await http.post("/graphql", json={"query": "{ me { user } }"}, headers=headers)  # warm up
        for round_ in range(rounds):
            for name, document in hostile_documents(round_).items():
                await asyncio.sleep(0.05)
                ticker.take()
                response = await http.post("/graphql", json={"query": document}, headers=headers)
                code = response.json()["errors"][0]["extensions"]["code"]
                assert code in ("LIMIT_EXCEEDED", "BAD_USER_INPUT"), response.text  # refused either way
                out.setdefault(name, []).append(ticker.take())
    return out


async def noise(ticker: Ticker, rounds: int = 5, window: float = 0.3) -> list[float]:
    """Worst stalls (ms) of idle windows: what the machine alone costs the loop (the floor)."""
    out = []
    for _ in range(rounds):
        ticker.take()
        await asyncio.sleep(window)
        out.append(ticker.take())
    return out


async def run(requests: int) -> None:
    from civicmesh.asgi import create_app
    from gateway.auth import issue_token
    from gateway.serving import uvicorn_options

    settings = home()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="error", **uvicorn_options()
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    token = issue_token(settings, "alice", 1)
    ticker = Ticker()
    ticking = asyncio.create_task(ticker.run())
    try:
        floor = await noise(ticker)
        held = await hold(port, token, ticker)
        baseline = await normal_p50(port, token, requests)
        ticker.take()
        hostile = [await spawn("hostile", port, token) for _ in range(4)]
        await asyncio.sleep(1.0)
        loaded = await normal_p50(port, token, requests)
        worst_loaded = ticker.take()
        for process in hostile:
            process.kill()
            await process.wait()
        report(floor, held, baseline, loaded, worst_loaded)
    finally:
        ticking.cancel()
        server.should_exit = True
        await serving


def report(
    floor: list[float], held: dict[str, list[float]], baseline: float, loaded: float, worst_loaded: float
) -> None:
    print("worst event-loop stall while one document is answered alone, median (max) of rounds, ms")
    print(f"  {'nothing (idle: the machine alone)':36s} {statistics.median(floor):7.1f} ({max(floor):.1f})")
    for name, stalls in held.items():
        print(f"  {name:36s} {statistics.median(stalls):7.1f} ({max(stalls):.1f})")
    worst = max(statistics.median(stalls) for stalls in held.values())
    verdict = "OK" if worst <= TARGET_HOLD_MS else "OVER"
    print(f"worst median stall {worst:.1f} ms (target <= {TARGET_HOLD_MS:g} ms): {verdict}")
    print(f"normal query p50: {baseline:.2f} ms alone, {loaded:.2f} ms with 4 hostile clients")
    ratio = loaded / baseline
    print(f"ratio (with hostile / alone): {ratio:.2f}x; worst stall under that load {worst_loaded:.1f} ms")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        role, port, token, count = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
        client(role, port, token, count)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="normal queries per phase")
    asyncio.run(run(parser.parse_args().requests))


if __name__ == "__main__":
    main()
