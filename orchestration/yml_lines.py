"""Line numbers in dbt property files, for findings an owner can jump to (`file:line`).

dbt's manifest keeps no line numbers, so the yml is read again with PyYAML's composer, which keeps
each node's position. A finding names a field the way `meshcore.products` does:
`models.<model>.columns.<column>.data_type`, `models.<model>.config.meta.civicmesh.key`, ... (a part
missing at one level is looked for under that level's `config:`, as dbt reads both). A list
of mappings is entered by the item whose `name` is the next part; a part that is not there stops the
walk, and the line is the deepest node found (the model, or its column), which is where the fix goes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml


@lru_cache(maxsize=64)
def _compose(path: Path, mtime: float) -> yaml.Node | None:
    del mtime  # part of the cache key only: an edited file is read again
    try:
        return yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return None


def _child(node: yaml.Node, part: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((value for key, value in node.value if getattr(key, "value", None) == part), None)
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if _child(item, "name") is not None and getattr(_child(item, "name"), "value", None) == part:
                return item
    return None


def _key_line(node: yaml.Node, part: str) -> int | None:
    if isinstance(node, yaml.MappingNode):
        return next(
            (key.start_mark.line + 1 for key, _ in node.value if getattr(key, "value", None) == part), None
        )
    return None


def field_line(path: Path, field: str) -> int | None:
    """The 1-based line of `field` (dotted, as above) in the yml at `path`; None when the file does
    not parse or holds none of it."""
    if not path.is_file():
        return None
    node = _compose(path, path.stat().st_mtime)
    if node is None:
        return None
    line = None
    for part in field.split("."):
        found = _child(node, part)
        if found is None and (config := _child(node, "config")) is not None:
            node, found = config, _child(config, part)  # dbt reads `meta`/`tags` at both levels
        if found is None:
            return line
        line = _key_line(node, part) or found.start_mark.line + 1
        node = found
    return line
