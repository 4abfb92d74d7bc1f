"""`civicmesh product new|check|preview|retire`: a data owner's loop before and after publishing.

`new` scaffolds a product (orchestration.scaffold), `check` reports every problem with file and line
in seconds (orchestration.product_check), `preview` runs the product in scratch and shows each
persona the rows the gateway would serve them, and `retire` takes a published product out of
discovery for good. Only `retire` writes to the store (one chained access-log record, like
`snapshots withdraw`); `new` writes the dbt files, `check` and `preview` write only in
`$CIVICMESH_HOME/authoring`, never to the served warehouse or snapshots.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from civicmesh.cli import CommandError
from meshcore.settings import Settings

PREVIEW_ROWS = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    product = subparsers.add_parser("product", help="scaffold, check, preview and retire data products")
    sub = product.add_subparsers(dest="product_command", required=True, metavar="SUBCOMMAND")
    new = sub.add_parser("new", help="scaffold a product's SQL and yml in the department's marts folder")
    new.add_argument("department")
    new.add_argument("name", help="the product name (snake_case): <department>.<name>")
    new.add_argument(
        "--from",
        dest="source",
        metavar="MODEL",
        help="what it is built from: a model (stg_<department>__<entity>, a product) or a source "
        "table (<source_name>.<table>); default: stg_<department>__<NAME>, else source table NAME",
    )
    new.set_defaults(handler=run_new)
    check = sub.add_parser("check", help="every problem of products at once, with file and line (exit 1)")
    check.add_argument("names", nargs="*", metavar="NAME", help="department.product or model (default: all)")
    check.add_argument("--no-impact", action="store_true", help="skip who gains which right")
    check.set_defaults(handler=run_check)
    preview = sub.add_parser("preview", help="the product built in scratch, as each persona would see it")
    preview.add_argument("name", metavar="NAME", help="department.product")
    preview.add_argument("--as", dest="users", action="append", required=True, metavar="USER")
    preview.add_argument("--rows", type=int, default=PREVIEW_ROWS, help=f"rows per persona ({PREVIEW_ROWS})")
    preview.set_defaults(handler=run_preview)
    retire = sub.add_parser("retire", help="withdraw a product for good (owners only); history is kept")
    retire.add_argument("name", metavar="NAME", help="department.product")
    retire.add_argument("--reason", required=True, help="why: kept in the catalog")
    retire.add_argument("--as", dest="user", required=True, help="the acting user (an owner)")
    retire.set_defaults(handler=run_retire)


def _retired(settings: Settings) -> dict[str, str]:
    """{product: reason} of the catalog's retired products: names a build refuses to publish."""
    from civicmesh.cli.policy import catalog_entries

    return {e.spec.name: str(e.retired) for e in catalog_entries(settings, include_retired=True) if e.retired}


def run_new(args: argparse.Namespace) -> int:
    from orchestration.authoring import CompileFailed
    from orchestration.product_check import retired_message
    from orchestration.scaffold import ScaffoldError, scaffold
    from policies.directory import parse_directory
    from policies.names import PolicyError

    settings = Settings.from_env()
    name = f"{args.department}.{args.name}"
    reason = _retired(settings).get(name)
    if reason is not None:
        raise CommandError(retired_message(name, reason))
    try:
        directory = parse_directory((settings.policies_dir / "users.yaml").read_text())
    except (OSError, PolicyError) as exc:
        raise CommandError(f"cannot read the user directory: {exc}") from exc
    try:
        written = scaffold(settings, args.department, args.name, args.source, list(directory.scopes.values()))
    except (ScaffoldError, CompileFailed) as exc:
        raise CommandError(str(exc)) from exc
    for path in written:
        print(f"wrote {path}")
    print(
        f"next: describe the product in {written[-1].name} (the TODO placeholder fails the check), review "
        f"classification, key and masks, then: civicmesh product check {args.department}.{args.name}"
    )
    return 0


def _impact(settings: Settings, specs: list[Any]) -> list[str]:
    """Who gains or loses which right on each product, against its published spec (or nothing)."""
    from civicmesh.cli.policy import load_products
    from policies.engine import PolicyEngine
    from policies.explain import product_changes
    from policies.names import PolicyError

    try:
        engine = PolicyEngine.from_dir(settings.policies_dir)
    except (PolicyError, OSError) as exc:
        return [f"  (not computed: the policy does not load: {exc})"]
    published = {p.name: p for p in load_products(settings, None)}
    lines = []
    for spec in specs:
        before = published.get(spec.name)
        changes = product_changes(engine, before, spec)
        state = "published" if before else "new"
        lines.append(f"  {spec.name} ({state}): {len(changes) or 'no'} change(s)")
        lines += [f"    {c.describe()}" for c in changes]
    return lines


def run_check(args: argparse.Namespace) -> int:
    from orchestration.product_check import check_products

    settings = Settings.from_env()
    try:
        report = check_products(settings, args.names, _retired(settings))
    except LookupError as exc:
        raise CommandError(str(exc.args[0])) from exc
    for finding in report.findings:
        print(finding)
    if not args.no_impact and report.specs and report.ok:
        print(f"impact under {settings.policies_dir} (who gains what when this publishes):")
        print("\n".join(_impact(settings, report.specs)))
    names = ", ".join(s.name for s in report.specs) or "no product"
    if report.findings:
        print(f"{len(report.findings)} problem(s) in {names}")
        return 1
    print(f"OK: {names}")
    return 0


def _scratch_snapshot(settings: Settings, name: str) -> tuple[Any, Any]:
    """(spec, WrittenSnapshot): the product run in scratch on the home's landing files."""
    from lineage.dbt import NodeColumns, relation_name, warehouse_columns
    from meshcore.products import collect_spec
    from meshcore.snapshots import snapshot_order, write_snapshot
    from orchestration.authoring import CompileFailed, Scratch, compile_models, workspace
    from orchestration.gate import boundary_message, foreign_inputs
    from orchestration.product_check import Locator, pii_problems, product_nodes

    try:
        manifest = compile_models(settings, [name.split(".")[-1]])
        [node] = product_nodes(manifest, [name])[:1]
    except (CompileFailed, LookupError) as exc:
        raise CommandError(f"{exc} (run `civicmesh product check {name}`)") from exc
    spec, problems = collect_spec(node, manifest.get("groups") or {})
    if problems:
        raise CommandError(f"{problems[0]} (+{len(problems) - 1} more: civicmesh product check {name})")
    foreign = foreign_inputs(manifest, node["unique_id"], spec.department)
    if foreign:  # held back by every build: nobody would see these rows
        raise CommandError(f"{name} {boundary_message(manifest, foreign[0], spec.department)}")
    scratch = Scratch(manifest, settings.landing_dir)
    try:
        scratch.stage([node["unique_id"]], tables=[node["unique_id"]])
        if scratch.findings:
            raise CommandError("; ".join(str(f) for f in scratch.findings))
        # what the build's PII gate would hold back is shown to nobody, so not previewed either
        columns = NodeColumns(manifest, warehouse_columns(scratch.con, manifest))
        leaks = pii_problems(manifest, [spec], columns, Locator(settings.dbt_project_dir))
        if leaks:
            raise CommandError(f"the PII gate would hold {name} back: " + "; ".join(map(str, leaks)))
        folder = workspace(settings) / "snapshots" / spec.department / spec.product
        written = write_snapshot(scratch.con, relation_name(node), folder, snapshot_order(spec))
    finally:
        scratch.close()
    return spec, written


def run_preview(args: argparse.Namespace) -> int:
    from civicmesh.cli.policy import policy_engine
    from gateway.duck import DuckPool
    from gateway.naming import camel
    from gateway.query import PageQuery
    from orchestration.authoring import workspace

    settings = Settings.from_env()
    if args.rows < 1:
        raise CommandError("--rows must be at least 1")
    spec, written = _scratch_snapshot(settings, args.name)
    engine = policy_engine(settings)
    fields = " ".join(camel(c.name) for c in spec.columns)
    print(f"{spec.name} ({spec.classification}), built in scratch: {written.row_count} rows")
    print(f"GraphQL field: {camel(spec.department)}.{camel(spec.product)}")
    rows_field = f"{camel(spec.product)}(first: 5) {{ totalCount nodes {{ {fields} }} }}"
    print(f"example: {{ {camel(spec.department)} {{ {rows_field} }} }}")
    pool = DuckPool(workspace(settings) / "snapshots", settings.mask_key)
    try:
        for user in args.users:
            decision = engine.decide(user, spec, "read")
            if not decision.allowed:
                found = engine.decide(user, spec, "discover").allowed
                print(f"\n--as {user}: DENY read ({decision.reason}); discover: {'yes' if found else 'no'}")
                continue
            path = str(written.path.resolve())
            query = PageQuery(
                spec=spec,
                path=path,
                file_order=pool.read_file_order(path, key=spec.key),
                columns=[c.name for c in spec.columns],
                masks=decision.masks,
                row_filter=decision.row_filter,
                limit=args.rows,
            )
            total = pool.run(*query.count_sql()).rows[0][0]
            page = pool.run(*query.page_sql())
            masked = ", ".join(f"{c}={k}" for c, k in sorted(decision.masks.items())) or "none"
            rows = decision.row_filter.describe() if decision.row_filter else "all"
            print(f"\n--as {user}: {total} rows ({rows}); masked: {masked}  [{decision.rule}]")
            for row in page.rows[: args.rows]:
                print(json.dumps(dict(zip(page.columns, row, strict=False)), default=str))
    finally:
        pool.close()
    return 0


def run_retire(args: argparse.Namespace) -> int:
    """Owners only; chained like `snapshots withdraw` (the same code, kind `retired`)."""
    from civicmesh.cli.snapshots import take_out_of_service
    from meshcore.catalog import RETIRED

    result = take_out_of_service(args.name, None, args.reason, args.user, RETIRED)
    print(
        f"{args.name} retired (access-log record {result.access_log_seq}): no longer discoverable or served"
    )
    print(f"history kept: {result.snapshot.id} and earlier snapshots (civicmesh snapshots list {args.name})")
    print("remove its model from the dbt project: a build refuses to publish a retired product")
    return 0
