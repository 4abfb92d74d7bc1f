"""The catalog fields: only discoverable products, with columns, snapshot, freshness and rights."""

from __future__ import annotations

from tests.gateway.conftest import AIR_QUALITY

PRODUCT_FIELDS = (
    "name owner description classification qualityStatus graphqlField rowScope { column unscopedReason } "
    "columns { name field type tags pii mask masked } currentSnapshot { id publishedAt rowCount } "
    "freshness { lastPublishedAt slaHours ageHours stale } "
    "myAccess { discover read readPii export lineage audit grant reason maskedColumns "
    "rowFilter { column values } canRequest }"
)


def names(server, user: str, args: str = "") -> list[str]:
    args = f"({args})" if args else ""
    body = server.gql(f"{{ products{args} {{ name }} }}", user)
    return [p["name"] for p in body["data"]["products"]]


def test_products_hide_what_the_caller_may_not_discover(server) -> None:
    assert {"public_works.service_requests", "environment.air_quality"} <= set(names(server, "mallory"))
    # confidential: discoverable by all staff so they can request it; restricted: invisible
    assert "finance.vendor_payments" in names(server, "mallory")
    assert "hr.salaries" not in names(server, "mallory")
    assert "finance.vendor_payments" in names(server, "erin")
    assert "hr.salaries" in names(server, "frank")
    assert "hr.salaries" in names(server, "carol")  # the auditor discovers everything


def test_products_search_and_filters(server) -> None:
    assert names(server, "alice", 'search: "pothole"') == ["public_works.service_requests"]
    assert names(server, "alice", 'search: "requester_email"') == ["public_works.service_requests"]
    assert names(server, "alice", 'department: "environment"') == ["environment.air_quality"]
    assert names(server, "alice", 'classification: "public"') == ["environment.air_quality"]
    assert names(server, "alice", 'tag: "pii"') == ["public_works.service_requests"]
    assert names(server, "alice", 'search: "no-such-thing"') == []


def test_product_detail_and_my_access(server) -> None:
    body = server.gql(f'{{ product(name: "public_works.service_requests") {{ {PRODUCT_FIELDS} }} }}', "dana")
    product = body["data"]["product"]
    assert product["owner"] == "alice@city.example"
    assert product["graphqlField"] == "publicWorks.serviceRequests"
    assert product["rowScope"] == {"column": "district", "unscopedReason": None}
    assert product["currentSnapshot"]["rowCount"] == 90
    assert product["freshness"]["slaHours"] == 24 and product["freshness"]["stale"] is False
    columns = {c["name"]: c for c in product["columns"]}
    assert columns["requester_name"] == {
        "name": "requester_name",
        "field": "requesterName",
        "type": "varchar",
        "tags": ["pii"],
        "pii": True,
        "mask": "hash",
        "masked": True,
    }
    assert columns["district"]["masked"] is False
    access = product["myAccess"]
    assert access["read"] is True and access["readPii"] is False and access["export"] is False
    assert access["rowFilter"] == {"column": "district", "values": ["D3"]}
    assert "read_pii" in access["canRequest"]


def test_undiscoverable_product_looks_missing(server) -> None:
    hidden = server.gql('{ product(name: "hr.salaries") { name } }', "mallory")
    missing = server.gql('{ product(name: "hr.nothing_here") { name } }', "mallory")
    assert hidden == missing == {"data": {"product": None}, "extensions": {"governance": {}}}
    assert (
        server.gql('{ product(name: "hr.salaries") { name } }', "frank")["data"]["product"]["name"]
        == "hr.salaries"
    )


def test_me(server) -> None:
    me = server.gql("{ me { user email displayName department roles { role department } } }", "dana")["data"][
        "me"
    ]
    assert me == {
        "user": "dana",
        "email": "dana@city.example",
        "displayName": "Dana Diaz",
        "department": "public_works",
        "roles": [{"role": "supervisor", "department": "public_works"}],
    }


def test_facets_and_snapshots(server) -> None:
    body = server.gql(
        "{ productFacets { departments { value count } classifications { value count } "
        "tags { value count } } "
        'product(name: "environment.air_quality") { snapshots { id rowCount } } }',
        "mallory",
    )
    facets = body["data"]["productFacets"]
    assert {"value": "public_works", "count": 1} in facets["departments"]
    assert all(f["value"] != "hr" for f in facets["departments"])  # hidden (restricted) stay hidden
    assert {"value": "finance", "count": 1} in facets["departments"]  # confidential is discoverable
    assert {"value": "pii", "count": 1} in facets["tags"]
    snapshots = body["data"]["product"]["snapshots"]
    assert len(snapshots) == 1 and snapshots[0]["rowCount"] == 10


def test_a_search_is_bounded_and_a_repeated_term_counts_once(server) -> None:
    """Break 11: `products(search:)` matched every term against every product's texts on the event
    loop; 31,000 copies of one letter (a 62 KB body) held it for ~0.35 s. A search has at most 500
    characters, and a term written twice is matched once."""
    from gateway.catalog_fields import MAX_SEARCH

    assert names(server, "alice", 'search: "pothole pothole POTHOLE"') == ["public_works.service_requests"]
    for field in ("products", "productFacets"):
        body = server.gql(f'{{ {field}(search: "{"e " * 31_000}") {{ __typename }} }}', "mallory")
        assert body["data"] is None or body["data"][field] is None, body
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT" and str(MAX_SEARCH) in error["message"]


def test_an_unscoped_product_says_why_every_scoped_reader_sees_every_row(server) -> None:
    body = server.gql(
        '{ product(name: "environment.air_quality") { rowScope { column unscopedReason } } }', "dana"
    )
    scope = body["data"]["product"]["rowScope"]
    assert scope == {"column": None, "unscopedReason": AIR_QUALITY.unscoped}
    assert AIR_QUALITY.unscoped
