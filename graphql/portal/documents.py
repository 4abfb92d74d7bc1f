"""The GraphQL documents the portal runs (through `backend.Reader.run`), and nothing else.

Fixed text with every value in variables: the gateway caches parsing and validation by document
text, and a value can never change a document's meaning. A product's rows and aggregates are
fields named after the product and its columns, so their documents are made per product by
`rows_document` / `aggregate_document` / `points_document` from the names the governed
`product(name:)` query returned (checked to be GraphQL names again here): one fixed text per
product and shape, whatever the user asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.naming import pascal, valid

ACCESS = "read readPii export lineage audit grant reason maskedColumns rowFilter { column values } canRequest"
FRESHNESS = "freshness { lastPublishedAt slaHours ageHours stale }"

CATALOG = f"""
query PortalCatalog($search: String, $department: String, $classification: String, $tag: String) {{
  products(search: $search, department: $department, classification: $classification, tag: $tag) {{
    name department classification owner description tags qualityStatus {FRESHNESS}
    myAccess {{ {ACCESS} }}
  }}
  productFacets(search: $search, department: $department, classification: $classification, tag: $tag) {{
    departments {{ value count }} classifications {{ value count }} tags {{ value count }}
  }}
}}"""

_PRODUCT_FIELDS = f"""
    name department product graphqlField classification owner description tags qualityStatus
    {FRESHNESS}
    currentSnapshot {{ id publishedAt rowCount }}
    columns {{ name field type description tags pii mask masked deidentifiedReason }}
    myAccess {{ discover {ACCESS} }}"""

PRODUCT = f"""
query PortalProduct($name: String!) {{
  product(name: $name) {{{_PRODUCT_FIELDS}
  }}
}}"""

ABOUT = f"""
query PortalProductAbout($name: String!, $department: String!) {{
  product(name: $name) {{{_PRODUCT_FIELDS}
    quality {{ status checkedAt failedChecks {{ name message severity }} }}
    snapshots {{ id publishedAt rowCount current status statusReason statusChangedAt broken }}
    integrity {{ status }}
  }}
  siblings: products(department: $department) {{ name product }}
}}"""

LINEAGE = """
query PortalLineage($name: String!, $column: String, $direction: LineageDirection!, $depth: Int!) {
  lineage(product: $name, column: $column, direction: $direction, depth: $depth) {
    root nodes { id kind namespace name column depth redacted } edges { from to }
  }
}"""

REQUESTS = """
query PortalAccessRequests {
  me { user roles { role department } }
  accessRequests {
    id subject product department action purpose days state requestedAt decidedBy decidedAt
    expiresAt revokedBy revokedAt
  }
}"""

_REQUEST_FIELDS = "id subject product action state expiresAt"

REQUEST_ACCESS = f"""
mutation PortalRequestAccess($product: String!, $action: AccessAction!, $purpose: String!, $days: Int!) {{
  requestAccess(product: $product, action: $action, purpose: $purpose, days: $days) {{ {_REQUEST_FIELDS} }}
}}"""

APPROVE = f"""
mutation PortalApprove($id: Int!, $note: String!) {{
  approveAccessRequest(id: $id, note: $note) {{ {_REQUEST_FIELDS} }}
}}"""

REJECT = f"""
mutation PortalReject($id: Int!, $reason: String!) {{
  rejectAccessRequest(id: $id, reason: $reason) {{ {_REQUEST_FIELDS} }}
}}"""

REVOKE = f"""
mutation PortalRevoke($id: Int!, $reason: String!) {{
  revokeAccess(id: $id, reason: $reason) {{ {_REQUEST_FIELDS} }}
}}"""

_LOG_ENTRY = """
      seq ts requestId subject roles action product snapshotId columnsRequested columnsReturned
      columnsMasked { column mask } rowFilter { column values } decision rule reason rows status
      errorCode client"""

ACCESS_LOG = f"""
query PortalAccessLog($subject: String, $product: String, $decision: String, $since: DateTime,
                      $until: DateTime, $first: Int, $after: String) {{
  accessLog(subject: $subject, product: $product, decision: $decision, since: $since, until: $until,
            first: $first, after: $after) {{
    totalCount pageInfo {{ hasNextPage endCursor }}
    nodes {{{_LOG_ENTRY}
    }}
  }}
  products {{ name }}
}}"""

READERS = """
query PortalReaders($product: String!) {
  readersOfDerived(product: $product) { subject product reads rows first last maskedColumns }
}"""


@dataclass(frozen=True)
class Names:
    """The GraphQL names of one product's data fields and of their argument types."""

    department_field: str  # e.g. publicWorks
    product_field: str  # e.g. serviceRequests
    type_prefix: str  # e.g. PublicWorksServiceRequests
    column_fields: tuple[str, ...]

    @classmethod
    def of(cls, product: dict[str, Any]) -> Names:
        """From a `product(name:)` result; ValueError if any name is not a GraphQL name."""
        department_field, _, product_field = str(product["graphqlField"]).partition(".")
        prefix = pascal(str(product["department"])) + pascal(str(product["product"]))
        fields = tuple(str(c["field"]) for c in product["columns"])
        names = (department_field, product_field, prefix, *fields)
        if not all(valid(n) for n in names):
            raise ValueError(f"not GraphQL names: {names}")
        return cls(department_field, product_field, prefix, fields)


def rows_document(names: Names, fields: tuple[str, ...] | None = None) -> str:
    """One page of rows with `fields` (default: every column), filtered, sorted and paged."""
    selected = " ".join(fields if fields is not None else names.column_fields)
    p = names.type_prefix
    return f"""
query PortalRows($where: {p}Where, $orderBy: [{p}OrderBy!], $first: Int, $after: String) {{
  {names.department_field} {{
    {names.product_field}(where: $where, orderBy: $orderBy, first: $first, after: $after) {{
      totalCount
      nodes {{ {selected} }}
      pageInfo {{ hasNextPage endCursor }}
      snapshot {{ id publishedAt }}
    }}
  }}
}}"""


METRICS = ("count", "sum", "avg")


def aggregate_document(names: Names, metric: str) -> str:
    """Groups of rows (by columns or a date bucket) with `count`, and `sum`/`avg` of `$measure`."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    p = names.type_prefix
    keys = " ".join((*names.column_fields, "bucket"))
    measure = "" if metric == "count" else f", $measure: {p}Column!"
    value = "" if metric == "count" else f" value: {metric}(column: $measure)"
    return f"""
query PortalAggregate($where: {p}Where, $groupBy: [{p}Column!], $bucket: {p}Bucket, $first: Int{measure}) {{
  {names.department_field} {{
    {names.product_field}Aggregate(where: $where, groupBy: $groupBy, bucket: $bucket, first: $first) {{
      groups {{ key {{ {keys} }} count{value} }}
      hasMoreGroups
    }}
  }}
}}"""
