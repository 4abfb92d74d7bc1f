"""Schema evolution rules for a published product.

Consumers code against a product's columns and types. Adding a column is safe; dropping or
retyping one breaks them, so it needs a new model version (served side by side as `<product>_v2`).
"""

from __future__ import annotations

from meshcore.products import ProductSpec


class BreakingSchemaChange(ValueError):
    """A publish would drop or retype a column consumers rely on."""


def breaking_changes(old: ProductSpec, new: ProductSpec) -> list[str]:
    new_types = {c.name: c.data_type for c in new.columns}
    changes = []
    for column in old.columns:
        if column.name not in new_types:
            changes.append(f"column {column.name!r} was dropped")
        elif new_types[column.name] != column.data_type:
            changes.append(
                f"column {column.name!r} changed type {column.data_type} -> {new_types[column.name]}"
            )
    return changes


def check_compatible(old: ProductSpec, new: ProductSpec) -> None:
    if new.version is not None and (old.version or 0) < new.version:
        return  # the owner moved `latest_version`: a new model version is the consent to break
    changes = breaking_changes(old, new)
    if changes:
        raise BreakingSchemaChange(
            f"{new.name}: breaking change refused ({'; '.join(changes)}) "
            f"in {new.source_file or 'the contract'}. "
            "Keep the published columns, or add a new model version (dbt `versions:`) and move "
            "`latest_version` to it: the previous version stays served as `<product>_v<N>`."
        )
