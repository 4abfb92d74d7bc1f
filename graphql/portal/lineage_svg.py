"""The Lineage tab's picture: the governed `lineage` walks laid out as boxes and arrows (server-side
SVG, so it needs no script).

Data flows down the picture: what the product is made from above it, what is made from it (and,
for auditors, who read it) below. A node's row is its distance from the product counted over every
hop of the walk's edges (dataset, job, dataset, ...), so each arrow goes from one row to the next;
nodes of one row sit side by side in the order the gateway returned them. Redacted nodes (what the
caller may not know of) stay anonymous boxes. The template draws the SVG and, beside it, the same
nodes as tables (the text alternative).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

BOX_W, BOX_H = 300, 44
GAP_X, GAP_Y = 24, 36
MARGIN = 12
LABEL_CHARS = 44


@dataclass(frozen=True)
class Box:
    id: str
    kind: str
    label: str  # shortened for the box; `title` holds the whole text
    title: str
    x: int
    y: int
    root: bool
    redacted: bool


@dataclass(frozen=True)
class Arrow:
    path: str  # SVG path data from the bottom of one box to the top of another


@dataclass(frozen=True)
class Picture:
    width: int
    height: int
    boxes: list[Box]
    arrows: list[Arrow]


def _text(node: dict[str, Any]) -> str:
    if node["redacted"]:
        return "(redacted)"
    name = str(node["name"])
    return f"{name}#{node['column']}" if node.get("column") else name


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else "…" + text[-(LABEL_CHARS - 1) :]


def _hops(walk: dict[str, Any], upstream: bool) -> dict[str, int]:
    """Each node's distance from the root over the walk's edges (against them when upstream)."""
    step: dict[str, list[str]] = {}
    for edge in walk["edges"]:
        a, b = (edge["to"], edge["from"]) if upstream else (edge["from"], edge["to"])
        step.setdefault(a, []).append(b)
    hops = {walk["root"]: 0}
    queue = deque([walk["root"]])
    while queue:
        here = queue.popleft()
        for there in step.get(here, ()):
            if there not in hops:
                hops[there] = hops[here] + 1
                queue.append(there)
    return hops


def layout(upstream: dict[str, Any] | None, downstream: dict[str, Any] | None) -> Picture:
    """Both walks (`lineage(...)` results, either may be None) in one picture."""
    rows: dict[int, list[dict[str, Any]]] = {}
    placed: set[str] = set()
    edges: set[tuple[str, str]] = set()
    root = (upstream or downstream or {}).get("root")
    for walk, sign in ((upstream, -1), (downstream, 1)):
        if not walk:
            continue
        hops = _hops(walk, upstream=sign < 0)
        for node in walk["nodes"]:
            if node["id"] not in placed:
                placed.add(node["id"])
                rows.setdefault(sign * hops.get(node["id"], int(node["depth"])), []).append(node)
        edges |= {(e["from"], e["to"]) for e in walk["edges"]}
    if not rows:
        return Picture(2 * MARGIN, 2 * MARGIN, [], [])
    top = min(rows)
    boxes: dict[str, Box] = {}
    for row, nodes in sorted(rows.items()):
        for i, node in enumerate(nodes):
            text = _text(node)
            boxes[node["id"]] = Box(
                id=node["id"],
                kind=str(node["kind"]),
                label=_short(text),
                title=f"{node['kind']}: {text}" + ("" if node["redacted"] else f" ({node['namespace']})"),
                x=MARGIN + i * (BOX_W + GAP_X),
                y=MARGIN + (row - top) * (BOX_H + GAP_Y),
                root=node["id"] == root,
                redacted=bool(node["redacted"]),
            )
    arrows = []
    for a, b in sorted(edges):
        if a in boxes and b in boxes:
            s, t = boxes[a], boxes[b]
            x1, y1, x2, y2 = s.x + BOX_W // 2, s.y + BOX_H, t.x + BOX_W // 2, t.y
            bend = GAP_Y // 2
            arrows.append(Arrow(f"M{x1},{y1} C{x1},{y1 + bend} {x2},{y2 - bend} {x2},{y2}"))
    width = MARGIN * 2 + max(len(n) for n in rows.values()) * (BOX_W + GAP_X) - GAP_X
    height = MARGIN * 2 + (max(rows) - top + 1) * (BOX_H + GAP_Y) - GAP_Y
    return Picture(width, height, list(boxes.values()), arrows)
