"""Cold start (issue 16): `civicmesh serve` loads only what answering a request uses.

What a new worker pays before its first answer is mostly imports and schema builds. These tests pin
what the serve path loads (behaviour, not timing: `bench/cold_start.py` measures the time): nothing
of the build stack (Dagster, dbt, pandas, Arrow), the portal's stack (Jinja2, Authlib, rdflib), the
HTTP lineage transport, openlineage-python or Strawberry's pydantic integration; a started server
answers a governed read with the cyclic garbage collector back on (it is off while `serve` starts);
the schema of a caller's discoverable set, built on that caller's first request, reuses the
product types of the catalog's schema, while a changed product spec gets types of its own; and
`make install` compiles every module the serve path imports (a process that may not write bytecode,
PYTHONDONTWRITEBYTECODE or a read-only tree, compiled the leaf core at each start).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from strawberry.schema.schema_converter import GraphQLCoreConverter

from gateway.auth import issue_token
from gateway.context import CatalogState
from gateway.schema import build_schema
from meshcore.catalog import Catalog
from meshcore.products import ColumnSpec
from meshcore.store import get_engine

REPO = Path(__file__).resolve().parents[2]

# Top-level packages (or modules) that no module of the serve path may import.
NOT_ON_THE_SERVE_PATH = (
    "dagster",
    "dagster_dbt",
    "dbt",
    "pandas",
    "polars",
    "pyarrow",  # exports import it on their first request
    "sqlglot",
    "rdflib",  # the portal, built on its first page: jinja2, authlib, rdflib
    "jinja2",
    "authlib",
    "portal.app",
    "pyshacl",
    "playwright",
    "httpx",  # the HTTP lineage transport, on its first send
    "openlineage",  # read events are written as plain data (lineage/read_events.py)
    "attr",
    "websockets",  # no WebSocket route: uvicorn runs with ws="none"
    "strawberry.experimental.pydantic",  # Strawberry's pydantic integration (graphql/gateway/__init__.py)
    "pydantic.v1",
)
# DuckDB 2.0.1 imports numpy whenever a Python function is registered, native ones included
# (duckdb/duckdb-python#538): the pseudonym functions of the masks make the start-up load it.
NOT_IMPORTED_BY_THE_SERVING_MODULES = (*NOT_ON_THE_SERVE_PATH, "numpy")

_LOADED = "[m for m in {names!r} if sys.modules.get(m) is not None]"  # None: an import blocked

# What `civicmesh serve` imports before the app starts: every CLI command's module (the parser),
# uvicorn, the app factory and the protocol classes uvicorn loads for the gateway's options.
_IMPORTS = """
import sys
from civicmesh.cli import build_parser
build_parser()
import uvicorn
from gateway.serving import uvicorn_options
config = uvicorn.Config("civicmesh.asgi:create_app", factory=True, **uvicorn_options())
config.load()
print({loaded})
"""

# `civicmesh serve` itself in this process's main thread; a probe thread posts one governed read
# over HTTP (the standard library's client: httpx must stay out), reports, and stops the server.
_SERVE = """
import gc, http.client, json, os, signal, sys, threading, time
from civicmesh.cli import main

def probe():
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", {port}, timeout=30)
            connection.request("POST", "/graphql", {body!r},
                               {{"Authorization": "Bearer {token}", "Content-Type": "application/json"}})
            response = connection.getresponse()
            break
        except OSError:
            time.sleep(0.05)
    report = {{"status": response.status, "body": json.loads(response.read()),
              "gc_enabled": gc.isenabled(), "frozen": gc.get_freeze_count(), "loaded": {loaded}}}
    print(json.dumps(report), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=probe, daemon=True).start()
main(["serve", "--port", "{port}"])
"""


# The serve path's imports in a process that may not write bytecode: which of the repository's
# modules (outside the venv) had to be compiled from source.
_COMPILED = """
import builtins, sys
compiled, compile_ = [], builtins.compile
def compile_and_note(source, filename, *args, **kwargs):
    if isinstance(filename, str) and filename.startswith({repo!r}) and "/.venv/" not in filename:
        compiled.append(filename[len({repo!r}) + 1:])
    return compile_(source, filename, *args, **kwargs)
builtins.compile = compile_and_note
from civicmesh.cli import build_parser
build_parser()
import civicmesh.asgi, uvicorn
builtins.compile = compile_
print(compiled)
"""


def _run(code: str, settings, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CIVICMESH_HOME": str(settings.home), **extra}
    env["CIVICMESH_METADATA_URL"] = settings.metadata_url
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_serving_modules_import_no_build_portal_or_lineage_stack(gw_settings) -> None:
    loaded = _LOADED.format(names=NOT_IMPORTED_BY_THE_SERVING_MODULES)
    done = _run(_IMPORTS.format(loaded=loaded), gw_settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_gateway_app_alone_imports_none_of_them_either(gw_settings) -> None:
    """The gateway without the CLI or the portal's session reader (how tests and benches build it)."""
    code = f"import sys, gateway.app; print({_LOADED.format(names=NOT_IMPORTED_BY_THE_SERVING_MODULES)})"
    done = _run(code, gw_settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_install_compiles_every_module_the_serve_path_imports(gw_settings) -> None:
    recipe = subprocess.run(
        ["make", "--dry-run", "--silent", "compile"], cwd=REPO, capture_output=True, text=True, check=True
    )
    compile_all = next(line for line in recipe.stdout.splitlines() if "compileall" in line)
    subprocess.run(compile_all, shell=True, cwd=REPO, check=True, timeout=300)  # make install's step
    done = _run(_COMPILED.format(repo=str(REPO)), gw_settings, PYTHONDONTWRITEBYTECODE="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_serve_answers_a_masked_governed_read_with_the_collector_back_on(gw_settings) -> None:
    query = "{ publicWorks { serviceRequests(first: 3) { nodes { requestId district requesterName } } } }"
    body = json.dumps({"query": query})
    code = _SERVE.format(
        port=_free_port(),
        body=body,
        token=issue_token(gw_settings, "dana", 1),
        loaded=_LOADED.format(names=NOT_ON_THE_SERVE_PATH),
    )
    done = _run(code, gw_settings)
    reports = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert reports, f"no answer: {done.stderr[-3000:]}"
    report = json.loads(reports[-1])
    assert report["status"] == 200 and "errors" not in report["body"], report["body"]
    nodes = report["body"]["data"]["publicWorks"]["serviceRequests"]["nodes"]
    # dana: district D3 only; the name pseudonymised by the DuckDB function registered at start-up
    assert nodes and all(n["district"] == "D3" and n["requesterName"].startswith("p_") for n in nodes)
    assert report["gc_enabled"] is True  # `serve` turned it off while starting; the lifespan back on
    assert report["frozen"] > 0  # the start-up's objects were frozen out of its reach
    assert report["loaded"] == []


def _definition(schema, type_name: str):
    """The Strawberry definition behind a GraphQL type of `schema`."""
    return schema._schema.type_map[type_name].extensions[GraphQLCoreConverter.DEFINITION_BACKREF]


def test_caller_schemas_reuse_product_types_and_a_changed_spec_gets_its_own(gw_settings) -> None:
    catalog = Catalog(get_engine(gw_settings.metadata_url), gw_settings.home)
    entries = {entry.spec.name: entry for entry in catalog.entries()}
    full = build_schema(CatalogState(version=catalog.version(), entries=entries), False)
    # dana's set: every product but the restricted one
    subset = full.callers._build(frozenset(name for name in entries if name != "hr.salaries"))
    assert subset is not full and "HrSalariesRow" not in subset._schema.type_map
    for row in ("PublicWorksServiceRequestsRow", "EnvironmentAirQualityRow"):
        assert _definition(subset, row) is _definition(full, row)

    # The next catalog state: service requests gained a column; air quality is unchanged.
    entry = entries["public_works.service_requests"]
    wider = dataclasses.replace(entry.spec, columns=(*entry.spec.columns, ColumnSpec("ward", "varchar")))
    changed = {**entries, entry.spec.name: dataclasses.replace(entry, spec=wider)}
    version = (catalog.version()[0] + 1, "next")
    rebuilt = build_schema(CatalogState(version=version, entries=changed), False)
    row = "PublicWorksServiceRequestsRow"
    assert "ward" in rebuilt._schema.type_map[row].fields
    assert "ward" not in full._schema.type_map[row].fields
    assert _definition(rebuilt, row) is not _definition(full, row)
    assert _definition(rebuilt, "EnvironmentAirQualityRow") is _definition(full, "EnvironmentAirQualityRow")
    narrow = rebuilt.callers._build(frozenset(name for name in changed if name != "hr.salaries"))
    assert "ward" in narrow._schema.type_map[row].fields
