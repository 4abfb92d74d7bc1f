"""Cold start: from `civicmesh serve` to the first governed answer. Target <= 1.5 s (issue 16).

Per catalog (`--catalog`, both by default), a home with
- "one": one published product (bench/audit.py's);
- "demo": the demo's ten products (departments, names and classifications of transforms/, versions
  side by side), each with that product's columns and rows: the demo's schema, and its
  discoverable sets (dana's lacks the restricted one, so her first request builds her schema);
then, `--runs` times each, interleaved:
- "civicmesh": `civicmesh serve` started as a new process; the clock runs from the spawn until
  `POST /graphql` (dana's read of the product: decision, masks, row scope, DuckDB, access log and
  lineage event recorded) first answers 200 — what a restarted or scaled-out worker costs;
- "floor": the same Python serving a Starlette app with uvicorn that answers one JSON POST: the floor
  of any Python ASGI gateway on this machine (the baseline of the ratio).
Also printed: `import gateway.app` alone in a new interpreter (the share that imports cost).

    .venv/bin/python bench/cold_start.py --runs 5 [--catalog one demo]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import duckdb  # noqa: E402
import httpx  # noqa: E402
import yaml  # noqa: E402

from bench._mesh import free_port  # noqa: E402
from bench.audit import PRODUCT, QUERY, SQL, _publish  # noqa: E402
from gateway.auth import issue_token  # noqa: E402
from meshcore.catalog import Catalog  # noqa: E402
from meshcore.products import ProductSpec  # noqa: E402
from meshcore.settings import Settings  # noqa: E402
from meshcore.snapshots import write_snapshot  # noqa: E402
from meshcore.store import dispose_all, get_engine  # noqa: E402

TARGET_S = 1.5
BIN = Path(sys.executable).parent
FLOOR_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
async def graphql(request):
    return JSONResponse({"data": {"echo": (await request.json())["query"][:10]}})
app = Starlette(routes=[Route("/graphql", graphql, methods=["POST"])])
uvicorn.run(app, port=int(sys.argv[1]), log_level="error")
"""


MARTS = Path(__file__).resolve().parent.parent / "transforms" / "models"


def _demo_specs() -> list[ProductSpec]:
    """The demo's products as named by meshcore.products (a version other than the latest is
    `<name>_v<N>`), each with bench/audit.py's columns."""
    specs = []
    for path in sorted(MARTS.glob("*/marts/*.yml")):
        for model in yaml.safe_load(path.read_text())["models"]:
            meta = model["config"]["meta"]["civicmesh"]
            versions = [v["v"] for v in model.get("versions", [])]
            names = [model["name"]] + [f"{model['name']}_v{v}" for v in versions if v != max(versions)]
            department = path.parts[-3]
            specs += [
                replace(PRODUCT, department=department, product=n, classification=meta["classification"])
                for n in names
            ]
    return specs


def _publish_demo(settings: Settings) -> None:
    catalog = Catalog(get_engine(settings.metadata_url), settings.home).ensure_schema()
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE t AS {SQL}")
        for spec in _demo_specs():
            written = write_snapshot(con, "t", settings.snapshots_dir / spec.department / spec.product)
            catalog.publish(spec, written)
    finally:
        con.close()


def _first_answer(command: list[str], port: int, env: dict[str, str], body: dict, token: str) -> float:
    """Seconds from spawning `command` until POST /graphql on `port` answers 200."""
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while True:
                try:
                    response = client.post("/graphql", json=body, headers=headers)
                except httpx.TransportError:
                    if proc.poll() is not None:
                        raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}") from None
                    time.sleep(0.01)
                    continue
                if response.status_code != 200 or response.json().get("errors"):
                    raise RuntimeError(f"bad first answer: {response.text[:500]}")
                return time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _import_time(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gateway.app"], env=env, check=True)
    return time.perf_counter() - started


PUBLISH = {"one": _publish, "demo": _publish_demo}


def _measure(catalog: str, runs: int, root: Path) -> dict[str, list[float]]:
    """Seconds per run of each contender, on a new home holding `catalog`."""
    home = root / catalog
    settings = Settings(home=home, metadata_url=f"sqlite:///{home / 'metadata.db'}")
    settings.ensure_dirs()
    PUBLISH[catalog](settings)
    dispose_all()
    token = issue_token(settings, "dana", 2)
    env = {**os.environ, "CIVICMESH_HOME": str(home), "CIVICMESH_METADATA_URL": settings.metadata_url}
    times: dict[str, list[float]] = {"civicmesh": [], "floor": [], "import gateway.app": []}
    for run in range(runs):
        body = {"query": QUERY, "variables": {"t": f"2099-01-01T00:00:{run:02d}"}}
        port = free_port()
        serve = [str(BIN / "civicmesh"), "serve", "--port", str(port)]
        times["civicmesh"].append(_first_answer(serve, port, env, body, token))
        port = free_port()
        floor = [sys.executable, "-c", FLOOR_APP, str(port)]
        times["floor"].append(_first_answer(floor, port, env, body, token))
        times["import gateway.app"].append(_import_time(env))
    return times


def _report(catalog: str, times: dict[str, list[float]]) -> None:
    base = statistics.median(times["floor"])
    print(f"catalog {catalog!r}:")
    for name, values in times.items():
        p50 = statistics.median(values)
        print(f"  {name:<18} median {p50:6.2f} s  (min {min(values):.2f})  ratio to floor {p50 / base:5.1f}")
    verdict = "met" if statistics.median(times["civicmesh"]) <= TARGET_S else "NOT met"
    print(f"  target: first answer <= {TARGET_S} s: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--catalog", nargs="+", choices=sorted(PUBLISH), default=["one", "demo"])
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="civicmesh-cold-") as tmp:
        for catalog in args.catalog:
            _report(catalog, _measure(catalog, args.runs, Path(tmp)))
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
