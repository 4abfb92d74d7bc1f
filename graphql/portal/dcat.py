"""The catalog of `public` data products as DCAT-AP 3.0.0, for regional and national portals to harvest.

Built with rdflib from the gateway's catalog state; served as Turtle (`GET /catalog.ttl`), JSON-LD
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

from rdflib import RDF, XSD, BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF

from civicmesh.catalog import CatalogEntry
from gateway.exports import MEDIA_TYPES
from policies.engine import PolicyEngine

log = logging.getLogger(__name__)

VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
FILE_TYPE = Namespace("http://publications.europa.eu/resource/authority/file-type/")
IANA = Namespace("https://www.iana.org/assignments/media-types/")
FILE_TYPES = {"csv": "CSV", "json": "JSON", "parquet": "PARQUET"}
TURTLE, JSON_LD = "text/turtle", "application/ld+json"
CONTEXT = {"dcat": str(DCAT), "dct": str(DCTERMS), "foaf": str(FOAF), "vcard": str(VCARD), "xsd": str(XSD)}


def public_entries(entries: Iterable[CatalogEntry], policy: PolicyEngine, subject: str) -> list[CatalogEntry]:
    """The entries the feed may list for `subject`: public, discoverable, published, described."""
    chosen = []
    for entry in sorted(entries, key=lambda e: e.spec.name):
        spec = entry.spec
        if spec.classification != "public" or entry.current is None:
            continue
        if not policy.decide(subject, spec, "discover").allowed:
            continue
        if not spec.description.strip():
            log.warning("dcat: %s left out: no description (mandatory in DCAT-AP)", spec.name)
            continue
        chosen.append(entry)
    return chosen


def catalog_graph(entries: list[CatalogEntry], base: str, organisation: str) -> Graph:
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
        latest = max(e.current.published_at for e in entries if e.current is not None)
        g.add((catalog, DCTERMS.modified, _datetime(latest)))
    return g


def _dataset(g: Graph, entry: CatalogEntry, base: str, service: URIRef) -> URIRef:
    spec, snapshot = entry.spec, entry.current
    assert snapshot is not None
    page = URIRef(f"{base}/products/{spec.name}")
    dataset = URIRef(f"{page}#dataset")
    g.add((dataset, RDF.type, DCAT.Dataset))
    g.add((dataset, DCTERMS.title, Literal(spec.name, lang="en")))
    g.add((dataset, DCTERMS.identifier, Literal(spec.name)))
    g.add((dataset, DCTERMS.description, Literal(spec.description, lang="en")))
    department = spec.department.replace("_", " ")
    g.add(
        (dataset, DCTERMS.publisher, _agent(g, URIRef(f"{base}/departments/{spec.department}"), department))
    )
    contact = BNode()
    g.add((dataset, DCAT.contactPoint, contact))
    g.add((contact, RDF.type, VCARD.Kind))
    g.add((contact, VCARD.fn, Literal(f"Owner of {spec.name}")))
    g.add((contact, VCARD.hasEmail, URIRef(f"mailto:{spec.owner}")))
    for tag in spec.tags:
        g.add((dataset, DCAT.keyword, Literal(tag, lang="en")))
    g.add((dataset, DCTERMS.modified, _datetime(snapshot.published_at)))
    g.add((dataset, DCAT.landingPage, _typed(g, page, FOAF.Document)))
    for fmt, media_type in MEDIA_TYPES.items():
        g.add((dataset, DCAT.distribution, _distribution(g, spec.name, fmt, media_type, base, service)))
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
