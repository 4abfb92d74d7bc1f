"""Built-in rules that follow from a product's classification and the directory, not from policy lines.

They live in code because they depend on product attributes (classification, scope column) that the
Casbin policy does not hold, and because they must hold for every product without a line per product.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshcore.products import ProductSpec
from policies.decision import RowFilter
from policies.directory import Directory, User

# Any authenticated staff member (a user in the directory) gets these on every product of the class.
# A confidential product's catalog entry (never its rows) is discoverable by all staff, so that they
# can request it (ARCHITECTURE §4); restricted products stay invisible without a grant.
STAFF_RIGHTS = {
    "public": ("discover", "read", "lineage"),
    "internal": ("discover", "read"),
    "confidential": ("discover",),
}
# Members of the owning department (home department or any role there) on confidential products.
MEMBER_RIGHTS = ("discover", "read")
ROW_ACTIONS = ("read", "read_pii", "export")  # decisions that return rows carry masks/row filters


def is_member(user: User, roles: list[tuple[str, str]], department: str) -> bool:
    return user.department == department or any(dom == department for _, dom in roles)


def builtin_allow(
    directory: Directory, user: User, roles: list[tuple[str, str]], product: ProductSpec, action: str
) -> tuple[str, str] | None:
    """(rule id, reason) if a classification rule allows `action`, else None."""
    reads_ok = all(directory.roles[r].classification_reads for r, _ in roles if r in directory.roles)
    if action in ROW_ACTIONS and not reads_ok:
        return None  # e.g. auditors: separation of duties, they read no rows unless granted
    cls = product.classification
    if action in STAFF_RIGHTS.get(cls, ()):
        return (
            f"builtin:classification:{cls}",
            f"{product.name} is {cls}: any authenticated staff member may {action} it",
        )
    if cls == "confidential" and action in MEMBER_RIGHTS and is_member(user, roles, product.department):
        return (
            "builtin:classification:confidential-member",
            f"{product.name} is confidential and {user.name} is a member of {product.department}",
        )
    return None


def denial_reason(
    directory: Directory, user: User, roles: list[tuple[str, str]], product: ProductSpec, action: str
) -> str:
    cls = product.classification
    no_reads = sorted(
        {r for r, _ in roles if r in directory.roles and not directory.roles[r].classification_reads}
    )
    if no_reads and action in ROW_ACTIONS and action in STAFF_RIGHTS.get(cls, ()):
        return f"{user.name} holds role {no_reads[0]}, which reads no rows unless granted"
    if cls == "restricted":
        return f"{product.name} is restricted: {action} needs an explicit grant"
    if cls == "confidential" and not is_member(user, roles, product.department):
        return (
            f"{product.name} is confidential: only members of {product.department} "
            f"or holders of a grant may {action} it"
        )
    return f"no rule allows {user.name} to {action} {product.name}"


def undeclared_scope(product: ProductSpec, scopes: Mapping[str, str]) -> list[str]:
    """The product's columns that a `scopes:` attribute limits (users.yaml, attribute -> column) but
    that it neither declares as its `scope_column` nor records as `unscoped`: each would show every
    row to a reader scoped by it. Column names compare as DuckDB compares identifiers (ignoring
    case), so `District` is the `district` scope column. The lint reports these (`undeclared-scope`)
    and `row_filter` serves no rows through them."""
    if product.unscoped:
        return []
    limited = {column.lower() for column in scopes.values()}
    declared = (product.scope_column or "").lower()
    return sorted(c.name for c in product.columns if c.name.lower() in limited and c.name.lower() != declared)


def row_filter(
    directory: Directory, user: User, roles: list[tuple[str, str]], product: ProductSpec
) -> RowFilter | None:
    """The rows a scoped user may see, whichever rule granted the read; owners are unscoped. A
    reader scoped by a column the product has but does not declare (`undeclared_scope`) sees no
    rows: fail closed rather than every row."""
    if any(dom == product.department and directory.roles[r].owns for r, dom in roles if r in directory.roles):
        return None
    attributes = set(user.scope)
    for role, _ in roles:
        if role in directory.roles:
            attributes.update(directory.roles[role].scope)
    limiting = {directory.scopes[a].lower() for a in attributes if a in directory.scopes}
    for undeclared in undeclared_scope(product, directory.scopes):
        if undeclared.lower() in limiting:
            return RowFilter(undeclared, ())
    column = product.scope_column
    if column is None:
        return None
    values: set[str] | None = None
    for attribute in sorted(attributes):
        if (directory.scopes.get(attribute) or "").lower() != column.lower():
            continue
        mine = set(user.attributes.get(attribute, ()))
        # Several attributes on one column narrow each other; a missing attribute means no rows.
        values = mine if values is None else values & mine
    if values is None:
        return None
    return RowFilter(column, tuple(sorted(values)))
