"""The catalog of `public` data products as DCAT-AP 3.0.0, for regional and national portals to harvest.

Built with rdflib from the governed `products(classification: "public")` query (run in-process as
the caller, like every portal read); served as Turtle (`GET /catalog.ttl`), JSON-LD
(`GET /catalog.jsonld`) or either by content negotiation (`GET /catalog/dcat`, Accept
`text/turtle` | `application/ld+json`; 406 otherwise). Callers authenticate like every API client
(a bearer token, or a portal session): the feed lists only products classified `public` that the
caller may `discover`, each with a current snapshot and a description (DCAT-AP makes
dct:description mandatory; a product without one is left out and logged).

Shape (DCAT-AP 3.0.0, https://semiceu.github.io/DCAT-AP/releases/3.0.0/):
- dcat:Catalog: dct:title, dct:description, dct:publisher (the organisation, foaf:Agent),
  foaf:homepage (the portal), dct:modified (latest snapshot), dcat:dataset, dcat:service.
- dcat:Dataset per product at `<base>/products/<department.product>#dataset`: dct:title, dct:identifier,
  dct:description, dct:publisher (the owning department, foaf:Agent), dcat:contactPoint
  (vcard:Kind with the owner's e-mail), dcat:keyword (the product's tags), dct:modified (the
  current snapshot's publish time), dcat:landingPage, dcat:distribution.
- dcat:Distribution per export format (`gateway.exports.MEDIA_TYPES`): dcat:accessURL and
  dcat:downloadURL `<base>/exports/<name>.<format>`, dct:format (EU file-type authority list),
  dcat:mediaType when IANA registers the type, dcat:accessService.
- dcat:DataService for the GraphQL endpoint: dct:title, dcat:endpointURL, dcat:servesDataset.
No dcat:theme: product specs carry no theme.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rdflib import RDF, XSD, BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF

from gateway.exports import MEDIA_TYPES

log = logging.getLogger(__name__)

VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
FILE_TYPE = Namespace("http://publications.europa.eu/resource/authority/file-type/")
IANA = Namespace("https://www.iana.org/assignments/media-types/")
FILE_TYPES = {"csv": "CSV", "json": "JSON", "parquet": "PARQUET"}
TURTLE, JSON_LD = "text/turtle", "application/ld+json"
CONTEXT = {"dcat": str(DCAT), "dct": str(DCTERMS), "foaf": str(FOAF), "vcard": str(VCARD), "xsd": str(XSD)}


# What the feed reads: the public products the caller may discover (the gateway decides which).
PRODUCTS = """
query PortalDcat {
  products(classification: "public") {
    name department classification owner description tags currentSnapshot { publishedAt }
  }
}"""

Product = dict[str, Any]


def public_entries(products: Iterable[Product]) -> list[Product]:
    """The products (`PRODUCTS` results) the feed lists: public, published, described."""
    chosen = []
    for product in sorted(products, key=lambda p: p["name"]):
        if product["classification"] != "public" or product["currentSnapshot"] is None:
            continue
        if not str(product["description"]).strip():
            log.warning("dcat: %s left out: no description (mandatory in DCAT-AP)", product["name"])
            continue
        chosen.append(product)
    return chosen


def _published(product: Product) -> datetime:
    return datetime.fromisoformat(product["currentSnapshot"]["publishedAt"])


def catalog_graph(entries: list[Product], base: str, organisation: str) -> Graph:
    """The DCAT-AP graph of `entries` (already filtered), with IRIs under `base` (no trailing /)."""
    g = Graph(bind_namespaces="none")
    for prefix, namespace in CONTEXT.items():
        g.bind(prefix, namespace)
    catalog, service = URIRef(f"{base}/catalog/dcat"), URIRef(f"{base}/graphql")
    g.add((catalog, RDF.type, DCAT.Catalog))
    g.add((catalog, DCTERMS.title, Literal(f"{organisation} data catalog", lang="en")))
    g.add((catalog, DCTERMS.description, Literal(f"Public data products of {organisation}.", lang="en")))
    g.add((catalog, DCTERMS.publisher, _agent(g, URIRef(f"{base}/#organisation"), organisation)))
    g.add((catalog, FOAF.homepage, _typed(g, URIRef(f"{base}/"), FOAF.Document)))
    g.add((catalog, DCAT.service, service))
    g.add((service, RDF.type, DCAT.DataService))
    g.add((service, DCTERMS.title, Literal("GraphQL gateway", lang="en")))
    g.add((service, DCAT.endpointURL, URIRef(f"{base}/graphql")))
    for entry in entries:
        dataset = _dataset(g, entry, base, service)
        g.add((catalog, DCAT.dataset, dataset))
        g.add((service, DCAT.servesDataset, dataset))
    if entries:
        latest = max(_published(e) for e in entries)
        g.add((catalog, DCTERMS.modified, _datetime(latest)))
    return g


def _dataset(g: Graph, product: Product, base: str, service: URIRef) -> URIRef:
    name, department = str(product["name"]), str(product["department"])
    page = URIRef(f"{base}/products/{name}")
    dataset = URIRef(f"{page}#dataset")
    g.add((dataset, RDF.type, DCAT.Dataset))
    g.add((dataset, DCTERMS.title, Literal(name, lang="en")))
    g.add((dataset, DCTERMS.identifier, Literal(name)))
    g.add((dataset, DCTERMS.description, Literal(product["description"], lang="en")))
    publisher = _agent(g, URIRef(f"{base}/departments/{department}"), department.replace("_", " "))
    g.add((dataset, DCTERMS.publisher, publisher))
    contact = BNode()
    g.add((dataset, DCAT.contactPoint, contact))
    g.add((contact, RDF.type, VCARD.Kind))
    g.add((contact, VCARD.fn, Literal(f"Owner of {name}")))
    g.add((contact, VCARD.hasEmail, URIRef(f"mailto:{product['owner']}")))
    for tag in product["tags"]:
        g.add((dataset, DCAT.keyword, Literal(tag, lang="en")))
    g.add((dataset, DCTERMS.modified, _datetime(_published(product))))
    g.add((dataset, DCAT.landingPage, _typed(g, page, FOAF.Document)))
    for fmt, media_type in MEDIA_TYPES.items():
        g.add((dataset, DCAT.distribution, _distribution(g, name, fmt, media_type, base, service)))
    return dataset


def _distribution(g: Graph, name: str, fmt: str, media_type: str, base: str, service: URIRef) -> URIRef:
    distribution = URIRef(f"{base}/products/{name}/distributions/{fmt}")
    url = URIRef(f"{base}/exports/{name}.{fmt}")
    g.add((distribution, RDF.type, DCAT.Distribution))
    g.add((distribution, DCTERMS.title, Literal(f"{name} as {FILE_TYPES[fmt]}", lang="en")))
    g.add((distribution, DCAT.accessURL, url))
    g.add((distribution, DCAT.downloadURL, url))
    g.add((distribution, DCTERMS.format, _typed(g, FILE_TYPE[FILE_TYPES[fmt]], DCTERMS.MediaTypeOrExtent)))
    if not media_type.split("/", 1)[1].startswith("x-"):  # x- types are not in the IANA registry
        g.add((distribution, DCAT.mediaType, _typed(g, IANA[media_type], DCTERMS.MediaType)))
    g.add((distribution, DCAT.accessService, service))
    return distribution


def _agent(g: Graph, iri: URIRef, name: str) -> URIRef:
    g.add((iri, RDF.type, FOAF.Agent))
    g.add((iri, FOAF.name, Literal(name, lang="en")))
    return iri


def _typed(g: Graph, iri: URIRef, rdf_type: URIRef) -> URIRef:
    g.add((iri, RDF.type, rdf_type))
    return iri


def _datetime(value: datetime) -> Literal:
    return Literal(value.isoformat(timespec="seconds"), datatype=XSD.dateTime)


def serialize(g: Graph, media_type: str) -> bytes:
    if media_type == JSON_LD:
        return g.serialize(format="json-ld", context=CONTEXT, auto_compact=True).encode()
    return g.serialize(format="turtle").encode()


def negotiate(accept: str) -> str | None:
    """TURTLE or JSON_LD by the Accept header (q-values honoured), None if neither is acceptable."""
    offers = {TURTLE: TURTLE, JSON_LD: JSON_LD, "application/json": JSON_LD, "*/*": TURTLE, "text/*": TURTLE}
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept or "*/*").split(",")):
        kind, *params = (part.strip() for part in item.split(";"))
        q = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            weight = float(q)
        except ValueError:
            continue
        if kind.lower() in offers and weight > 0:
            ranked.append((-weight, position, offers[kind.lower()]))
    return min(ranked)[2] if ranked else None
