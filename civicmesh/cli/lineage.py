"""`civicmesh lineage show PRODUCT`: where a product comes from, or who consumed it, from recorded events.
`civicmesh lineage status`: what is waiting in the outbox for each transport, and who delivers it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from civicmesh.cli import CommandError

FORMATS = ("text", "json", "dot", "mermaid")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("lineage", help="lineage of data products")
    commands = parser.add_subparsers(dest="lineage_command", required=True, metavar="SUBCOMMAND")
    show = commands.add_parser("show", help="upstream or downstream lineage of a product")
    show.add_argument("product", help="product name, <department>.<product>")
    direction = show.add_mutually_exclusive_group()
    direction.add_argument(
        "--upstream",
        dest="direction",
        action="store_const",
        const="upstream",
        help="where the product comes from, back to the landing files (default)",
    )
    direction.add_argument(
        "--downstream",
        dest="direction",
        action="store_const",
        const="downstream",
        help="what was derived from it and who read it",
    )
    show.add_argument("--column", help="follow one column through column lineage")
    show.add_argument("--depth", type=int, default=10, help="hops to follow (default 10)")
    show.add_argument("--format", choices=FORMATS, default="text")
    show.set_defaults(handler=handler, direction="upstream")
    status = commands.add_parser(
        "status", help="pending events per transport, the oldest one's age, and the delivery lease holder"
    )
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(handler=status_handler)


def status_handler(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from lineage.lease import holder_alive
    from lineage.outbox import Outbox
    from lineage.transports import transports_from_settings
    from meshcore.settings import Settings
    from meshcore.store import get_engine

    settings = Settings.from_env()
    try:
        configured = [t.name for t in transports_from_settings(settings)]
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    outbox = Outbox(get_engine(settings.metadata_url)).ensure_schema()
    now = datetime.now(UTC)
    rows = []
    for name in dict.fromkeys([*configured, *outbox.transports()]):
        oldest = outbox.oldest_pending(name)
        holder, until = outbox.lease(name)
        held = holder is not None and until is not None and until > now
        rows.append(
            {
                "transport": name,
                "configured": name in configured,
                "pending": outbox.pending_count(name),
                "oldest_pending": oldest.isoformat() if oldest else None,
                "oldest_pending_age_s": round((now - oldest).total_seconds(), 1) if oldest else None,
                "lease_holder": holder if held else None,
                "lease_until": until.isoformat() if held and until else None,
                "holder_alive": holder_alive(holder) if held and holder else None,
            }
        )
    print(json.dumps({"transports": rows}, indent=2) if args.format == "json" else _render_status(rows))
    return 0


def _render_status(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'transport':<12} {'pending':>8}  {'oldest pending':<28} delivery lease"]
    for row in rows:
        oldest = (
            f"{row['oldest_pending'][:19]}Z ({row['oldest_pending_age_s']:.0f}s ago)"
            if row["pending"]
            else "-"
        )
        lease = "free"
        if row["lease_holder"]:
            alive = {
                True: "alive",
                False: "process gone: taken over on next delivery",
                None: "not checkable here",
            }
            lease = f"{row['lease_holder']} until {row['lease_until'][:19]}Z ({alive[row['holder_alive']]})"
        name = row["transport"] + ("" if row["configured"] else " (not configured)")
        lines.append(f"{name:<12} {row['pending']:>8}  {oldest:<28} {lease}")
    return "\n".join(lines)


def handler(args: argparse.Namespace) -> int:
    from lineage import naming
    from lineage.graph import DATASET, LineageGraph, Node
    from lineage.outbox import Outbox
    from meshcore.catalog import Catalog
    from meshcore.settings import Settings
    from meshcore.store import get_engine

    if args.depth < 1:
        raise CommandError("--depth must be at least 1")
    settings = Settings.from_env()
    engine = get_engine(settings.metadata_url)
    outbox = Outbox(engine).ensure_schema()
    # Reads are most of the events and never upstream of a product: skip them when looking upstream.
    skip = "consumer." if args.direction == "upstream" else None
    graph = LineageGraph.from_events(e.as_dict() for e in outbox.events(skip_job_prefix=skip))
    ref = naming.product_dataset(args.product)
    root = Node(DATASET, ref.namespace, ref.name)
    if not graph.has(root):
        known = {e.spec.name for e in Catalog(engine, settings.home).ensure_schema().entries()}
        if args.product not in known:
            hint = f"; known products: {', '.join(sorted(known))}" if known else ""
            raise CommandError(f"unknown product {args.product!r}{hint}")
    if args.column:
        columns = graph.info.get(root, {}).get("columns")
        if columns is not None and args.column not in columns:
            raise CommandError(f"{args.product} has no column {args.column!r}; columns: {', '.join(columns)}")
        result = graph.walk_column(root, args.column, args.direction, args.depth)
        print(_render_columns(result, args.format))
        return 0
    sub = graph.walk(root, args.direction, args.depth)
    print(_render(sub.as_dict(), args.format))
    return 0


def _short(node: dict[str, Any]) -> str:
    if node["kind"] == "job":
        return f"[job] {node['name']}"
    from lineage.naming import dataset_uri

    extra = f" (version {node['version']})" if node.get("version") else ""
    return f"{dataset_uri(node['namespace'], node['name'])}{extra}"


def _render(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    nodes = {n["id"]: n for n in data["nodes"]}
    if fmt == "dot":
        lines = ["digraph lineage {", "  rankdir=LR;"]
        for n in data["nodes"]:
            shape = "box" if n["kind"] == "job" else "ellipse"
            lines.append(f"  {json.dumps(n['id'])} [label={json.dumps(_short(n))}, shape={shape}];")
        lines += [f"  {json.dumps(e['from'])} -> {json.dumps(e['to'])};" for e in data["edges"]]
        return "\n".join([*lines, "}"])
    if fmt == "mermaid":
        ids = {node_id: f"n{i}" for i, node_id in enumerate(nodes)}
        lines = ["flowchart LR"]
        for node_id, n in nodes.items():
            text = _short(n).replace('"', "'")
            lines.append(
                f'  {ids[node_id]}["{text}"]' if n["kind"] == "dataset" else f'  {ids[node_id]}(["{text}"])'
            )
        lines += [f"  {ids[e['from']]} --> {ids[e['to']]}" for e in data["edges"]]
        return "\n".join(lines)
    return _render_text(data, nodes)


def _render_text(data: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> str:
    upstream = data["direction"] == "upstream"
    children: dict[str, list[str]] = {}
    for edge in data["edges"]:
        parent, child = (edge["to"], edge["from"]) if upstream else (edge["from"], edge["to"])
        children.setdefault(parent, []).append(child)
    arrow = "<-" if upstream else "->"
    lines = [_short(nodes[data["root"]])]

    def visit(node_id: str, indent: int, path: set[str]) -> None:
        for child in sorted(children.get(node_id, ())):
            if child in path:
                continue
            lines.append(f"{'  ' * indent}{arrow} {_short(nodes[child])}")
            visit(child, indent + 1, path | {child})

    visit(data["root"], 1, {data["root"]})
    if len(lines) == 1:
        lines.append(f"  (no {data['direction']} lineage recorded)")
    return "\n".join(lines)


def _render_columns(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    if fmt in ("dot", "mermaid"):
        ids = {c: f"c{i}" for i, c in enumerate(f"{c['dataset']}#{c['column']}" for c in data["columns"])}
        if fmt == "dot":
            lines = ["digraph column_lineage {", "  rankdir=LR;"]
            lines += [f"  {v} [label={json.dumps(k)}];" for k, v in ids.items()]
            lines += [f"  {ids[e['from']]} -> {ids[e['to']]};" for e in data["edges"]]
            return "\n".join([*lines, "}"])
        lines = ["flowchart LR"] + [f'  {v}["{k}"]' for k, v in ids.items()]
        return "\n".join(lines + [f"  {ids[e['from']]} --> {ids[e['to']]}" for e in data["edges"]])
    lines = [data["root"]]
    lines += [f"{'  ' * c['depth']}{c['dataset']}#{c['column']}" for c in data["columns"][1:]]
    if len(lines) == 1:
        lines.append(f"  (no {data['direction']} column lineage recorded)")
    return "\n".join(lines)
