"""The Lineage tab's picture: the governed `lineage` walks laid out as boxes and arrows (server-side
SVG, so it needs no script).

Upstream nodes go left of the product by their distance, downstream ones right; nodes at one
distance are stacked in the order the gateway returned them. Redacted nodes (what the caller may
not know of) stay anonymous boxes. The template draws the SVG and, beside it, the same nodes and
edges as lists (the text alternative).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BOX_W, BOX_H = 220, 44
GAP_X, GAP_Y = 70, 18
MARGIN = 12
LABEL_CHARS = 30


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
    path: str  # SVG path data from the right edge of one box to the left edge of another


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


def layout(upstream: dict[str, Any] | None, downstream: dict[str, Any] | None) -> Picture:
    """Both walks (`lineage(...)` results, either may be None) in one picture."""
    columns: dict[int, list[dict[str, Any]]] = {}
    placed: set[str] = set()
    edges: set[tuple[str, str]] = set()
    root = (upstream or downstream or {}).get("root")
    for walk, sign in ((upstream, -1), (downstream, 1)):
        for node in (walk or {}).get("nodes", ()):
            if node["id"] in placed:
                continue
            placed.add(node["id"])
            columns.setdefault(sign * int(node["depth"]), []).append(node)
        edges |= {(e["from"], e["to"]) for e in (walk or {}).get("edges", ())}
    if not columns:
        return Picture(2 * MARGIN, 2 * MARGIN, [], [])
    first = min(columns)
    boxes: dict[str, Box] = {}
    for depth, nodes in sorted(columns.items()):
        for i, node in enumerate(nodes):
            text = _text(node)
            boxes[node["id"]] = Box(
                id=node["id"],
                kind=str(node["kind"]),
                label=_short(text),
                title=f"{node['kind']}: {text}" + ("" if node["redacted"] else f" ({node['namespace']})"),
                x=MARGIN + (depth - first) * (BOX_W + GAP_X),
                y=MARGIN + i * (BOX_H + GAP_Y),
                root=node["id"] == root,
                redacted=bool(node["redacted"]),
            )
    arrows = []
    for a, b in sorted(edges):
        if a in boxes and b in boxes:
            s, t = boxes[a], boxes[b]
            x1, y1, x2, y2 = s.x + BOX_W, s.y + BOX_H // 2, t.x, t.y + BOX_H // 2
            bend = max(GAP_X // 2, abs(x2 - x1) // 2)
            arrows.append(Arrow(f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"))
    width = MARGIN * 2 + (max(columns) - first + 1) * (BOX_W + GAP_X) - GAP_X
    height = MARGIN * 2 + max(len(n) for n in columns.values()) * (BOX_H + GAP_Y) - GAP_Y
    return Picture(width, height, list(boxes.values()), arrows)
