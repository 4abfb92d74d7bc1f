"""The Lineage tab's layout: rows by hops from the product (upstream above, downstream below), every
arrow from one row to the next, redacted nodes anonymous, long names shortened from the left."""

from __future__ import annotations

from portal.lineage_svg import BOX_H, BOX_W, GAP_Y, LABEL_CHARS, layout


def _node(id_: str, kind: str, depth: int, redacted: bool = False) -> dict:
    return {"id": id_, "kind": kind, "namespace": "civicmesh", "name": id_, "column": None,
            "depth": depth, "redacted": redacted}  # fmt: skip


# As the gateway walks it: a job and the dataset it reads share a depth (depth counts datasets).
UPSTREAM = {
    "root": "product",
    "nodes": [
        _node("product", "dataset", 0),
        _node("publish", "job", 1),
        _node("warehouse.table." + "x" * 60, "dataset", 1),
        _node("dbt", "job", 2),
        _node("redacted:1", "dataset", 2, redacted=True),
        _node("staging", "dataset", 2),
    ],
    "edges": [
        {"from": "publish", "to": "product"},
        {"from": "warehouse.table." + "x" * 60, "to": "publish"},
        {"from": "dbt", "to": "warehouse.table." + "x" * 60},
        {"from": "staging", "to": "dbt"},
        {"from": "redacted:1", "to": "dbt"},
    ],
}
DOWNSTREAM = {
    "root": "product",
    "nodes": [_node("product", "dataset", 0), _node("consumer.bob.read", "job", 1)],
    "edges": [{"from": "product", "to": "consumer.bob.read"}],
}


def test_rows_follow_the_hops_and_every_arrow_goes_down_one_row() -> None:
    picture = layout(UPSTREAM, DOWNSTREAM)
    boxes = {b.id: b for b in picture.boxes}
    row = {i: (b.y - boxes["product"].y) // (BOX_H + GAP_Y) for i, b in boxes.items()}
    assert row == {
        "product": 0,
        "publish": -1,
        "warehouse.table." + "x" * 60: -2,
        "dbt": -3,
        "redacted:1": -4,
        "staging": -4,
        "consumer.bob.read": 1,
    }
    assert boxes["staging"].x == boxes["redacted:1"].x + BOX_W + 24  # side by side, in the given order
    assert len(picture.arrows) == 6
    for arrow in picture.arrows:  # "M x1,y1 C ... x2,y2": from a box's bottom to the next row's top
        start, end = arrow.path.split()[0][1:], arrow.path.split()[-1]
        (y1, y2) = (int(start.split(",")[1]), int(end.split(",")[1]))
        assert y2 - y1 == GAP_Y
    assert boxes["product"].root and not boxes["dbt"].root
    assert boxes["redacted:1"].redacted and boxes["redacted:1"].label == "(redacted)"
    long = boxes["warehouse.table." + "x" * 60]
    assert (
        len(long.label) == LABEL_CHARS and long.label.startswith("…") and long.title.endswith("(civicmesh)")
    )
    assert picture.height == 12 * 2 + 6 * (BOX_H + GAP_Y) - GAP_Y


def test_a_refused_or_empty_walk_draws_nothing() -> None:
    assert layout(None, None).boxes == []
    only_down = layout(None, DOWNSTREAM)
    assert [b.id for b in only_down.boxes] == ["product", "consumer.bob.read"]
