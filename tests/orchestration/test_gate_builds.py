"""Real `civicmesh build`s of modified copies of the dbt project (one build per fixture, each bypass
its own product): every way around the PII gate is held back naming the column and its path back
to the source column, a failing test or model holds back only what is built from it, a warn test
publishes, and every other product of the same build publishes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from civicmesh.cli import main
from meshcore.accesslog import AccessLog
from meshcore.audit.verify import verify_report
from meshcore.catalog import Catalog
from meshcore.settings import REPO_ROOT, Settings
from orchestration.build import BuildReport, ProductOutcome
from tests.mesh import BuiltMesh, build, copy_repo_transforms, rebuild_copy
from tests.orchestration.test_build import PRODUCTS

pytestmark = pytest.mark.slow

STG = "{{ ref('stg_public_works__service_requests') }}"
SOURCE_EMAIL = "raw_public_works.service_requests.requester_email [pii]"
STAGED_EMAIL = "public_works.stg_public_works__service_requests.requester_email"

# product: (SQL, contract columns, the leaking column, what its held-back reason must say)
LEAKS: dict[str, tuple[str, list[str], str, str]] = {
    "leak_own_staging": (
        f"select district, min(requester_email) as first_requester from {STG} group by district",
        ["district", "first_requester"],
        "first_requester",
        f"public_works.leak_own_staging.first_requester <- {STAGED_EMAIL} <- {SOURCE_EMAIL}",
    ),
    "leak_quoted_alias": (
        f'select request_id, requester_email as "ContactEmail" from {STG}',
        ["request_id", "ContactEmail"],
        "ContactEmail",
        f"public_works.leak_quoted_alias.ContactEmail <- {STAGED_EMAIL} <- {SOURCE_EMAIL}",
    ),
    "leak_star_join": (
        f"with a as (select request_id, district, 'withheld' as reporter_email from {STG}),\n"
        f"b as (select request_id, requester_email as reporter_email from {STG})\n"
        "select * from a join b using (request_id)",
        ["request_id", "district", "reporter_email", "reporter_email_1"],
        "reporter_email_1",
        f"public_works.leak_star_join.reporter_email_1 <- {STAGED_EMAIL} <- {SOURCE_EMAIL}",
    ),
    "leak_union_by_name": (
        f"select request_id, 'anonymous' as contact from {STG}\nunion all by name\n"
        f"select requester_email as contact, request_id from {STG}",
        ["request_id", "contact"],
        "contact",
        f"public_works.leak_union_by_name.contact <- {STAGED_EMAIL} <- {SOURCE_EMAIL}",
    ),
    "leak_columns_regex": (
        f"select request_id, columns('requester_.*') from {STG}",
        ["request_id", "requester_name", "requester_email", "requester_phone"],
        "requester_email",
        "public_works.leak_columns_regex.requester_email: lineage unknown (the parser reads columns",
    ),
    "leak_unpivot": (
        f"unpivot (select request_id, requester_email, requester_phone from {STG})\n"
        "on requester_email, requester_phone into name field value contact",
        ["request_id", "field", "contact"],
        "contact",
        "public_works.leak_unpivot.contact: lineage unknown (PIVOT/UNPIVOT is not followed",
    ),
    "leak_pivot": (
        f"pivot (select district, category, requester_email from {STG})\n"
        "on category in ('pothole', 'graffiti') using min(requester_email) group by district",
        ["district", "pothole", "graffiti"],
        "pothole",
        "public_works.leak_pivot.pothole: lineage unknown (PIVOT/UNPIVOT is not followed",
    ),
}
BROKEN = ("broken_model", f"select request_id, no_such_column from {STG}", ["request_id", "no_such_column"])
# An owner's reviewed de-identification: derived from e-mails, a count is not personal data.
REQUESTERS = (
    "requesters_by_district",
    f"select district, cast(count(distinct requester_email) as varchar) as requesters from {STG} group by 1",
    ["district", "requesters"],
)
REQUESTERS_REASON = "a count of distinct requesters per district identifies no one"
# A declared key the mart repeats (every category stands on many requests).
DUPLICATE_KEY = ("kinds", f"select category as kind, district from {STG}", ["kind", "district"])
# Published while its source did not yet declare requester_phone as PII; the next build knows better.
CALLBACKS = (
    "callbacks",
    f"select request_id, requester_phone as callback_phone from {STG}",
    ["request_id", "callback_phone"],
)
PHONE_PLAIN = '            description: "Requester phone number."\n'
PHONE_PII = (
    PHONE_PLAIN + "            config:\n              tags: [pii]\n              meta: {mask: partial}\n"
)


@dataclass
class Built:
    settings: Settings
    catalog: Catalog
    report: BuildReport | None  # None when built through the CLI (then see `output`)
    output: str = ""
    exit_code: int = 0
    repo: Path | None = None

    def outcome(self, product: str) -> ProductOutcome:
        assert self.report is not None
        return next(p for p in self.report.products if p.product == product)


def _write_mart(
    project: Path, name: str, sql: str, columns: list[str], deidentified: str = "", key: str = ""
) -> None:
    """A public mart with varchar contract columns; `deidentified` declares the last one so; `key`
    its declared key."""
    marts = project / "models" / "public_works" / "marts"
    (marts / f"{name}.sql").write_text(sql + "\n")
    yml = "".join(f"      - name: {c}\n        data_type: varchar\n" for c in columns)
    if deidentified:
        yml += f"        config:\n          meta:\n            deidentified: '{deidentified}'\n"
    (marts / f"{name}.yml").write_text(
        f"models:\n  - name: {name}\n    description: 'A public mart an owner might write.'\n"
        f"    config:\n      meta:\n        civicmesh:\n          classification: public\n"
        + (f"          key: {key}\n" if key else "")
        + f"    columns:\n{yml}"
    )


@pytest.fixture(scope="module")
def leaky(built_mesh: BuiltMesh, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """One build of a project with every bypass as its own public product, plus a model that does
    not build."""
    tmp = tmp_path_factory.mktemp("leaky")
    repo = copy_repo_transforms(tmp / "repo")
    for name, (sql, columns, _, _) in LEAKS.items():
        _write_mart(repo / "transforms", name, sql, columns)
    _write_mart(repo / "transforms", *BROKEN)
    _write_mart(repo / "transforms", *CALLBACKS)
    _write_mart(repo / "transforms", *REQUESTERS, deidentified=REQUESTERS_REASON)
    _write_mart(repo / "transforms", *DUPLICATE_KEY, key="kind")
    _declare_phone(repo, pii=False)
    settings, catalog = rebuild_copy(built_mesh.settings, tmp, repo)
    report, _ = build(settings)
    return Built(settings, catalog, report, repo=repo)


def _declare_phone(repo: Path, *, pii: bool) -> None:
    sources = repo / "transforms" / "models" / "public_works" / "staging" / "_public_works__sources.yml"
    text = sources.read_text()
    assert (PHONE_PLAIN if pii else PHONE_PII) in text
    sources.write_text(text.replace(PHONE_PLAIN, PHONE_PII) if pii else text.replace(PHONE_PII, PHONE_PLAIN))


def assert_held_back_naming(built: Built, product: str, column: str, says: str) -> None:
    """`product` is held back, nothing of it is served, and its reason names `column` and `says`."""
    outcome = built.outcome(product)
    assert not outcome.published, outcome
    reasons = [r for r in outcome.reasons if r.startswith(f"{product}.{column}")]
    assert reasons and says in reasons[0], outcome.reasons
    entry = built.catalog.entry(product)
    assert entry.current is None and entry.quality_status == "failed"
    assert f"pii_gate.{column}" in {c["name"] for c in entry.quality["failed_checks"]}


@pytest.mark.parametrize("product", sorted(LEAKS))
def test_each_bypass_is_held_back_naming_the_column_and_its_path(leaky: Built, product: str) -> None:
    _, _, column, says = LEAKS[product]
    assert_held_back_naming(leaky, f"public_works.{product}", column, says)


def test_only_the_leaking_column_is_named_where_lineage_is_exact(leaky: Built) -> None:
    for product in ("leak_star_join", "leak_union_by_name", "leak_quoted_alias"):
        (reason,) = leaky.outcome(f"public_works.{product}").reasons
        assert reason.startswith(f"public_works.{product}.{LEAKS[product][2]} is derived from PII")


def test_a_model_that_fails_to_build_shows_its_error_inline(leaky: Built) -> None:
    outcome = leaky.outcome("public_works.broken_model")
    (reason,) = outcome.reasons
    compiled = leaky.settings.dbt_target_dir / "compiled/civicmesh/models/public_works/marts/broken_model.sql"
    assert reason.startswith(
        f"dbt model broken_model failed to build (Binder Error; compiled SQL: {compiled})"
    )
    assert 'Referenced column "no_such_column" not found' in reason  # the database's own message
    summary = "\n".join(leaky.report.summary())
    assert "held back  public_works.broken_model" in summary and "no_such_column" in summary


def test_every_other_product_of_the_same_build_publishes(leaky: Built, built_mesh: BuiltMesh) -> None:
    for name in {*PRODUCTS, "public_works.callbacks", "public_works.requesters_by_district"}:
        assert leaky.outcome(name).outcome == "published", leaky.outcome(name)
        assert leaky.catalog.entry(name).quality_status == "passed"
    assert len(leaky.report.held_back) == len(LEAKS) + 2  # and broken_model, kinds


def test_a_declared_key_the_mart_repeats_is_held_back(leaky: Built) -> None:
    outcome = leaky.outcome("public_works.kinds")
    (reason,) = outcome.reasons
    assert not outcome.published and reason.startswith("key 'kind' is not unique: ")
    entry = leaky.catalog.entry("public_works.kinds")
    assert entry.current is None and [c["name"] for c in entry.quality["failed_checks"]] == ["key.kind"]


@pytest.fixture(scope="module")
def quarantined(leaky: Built, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The next build after the department declares requester_phone as PII at its source."""
    tmp = tmp_path_factory.mktemp("quarantined")
    assert leaky.repo is not None
    repo = tmp / "repo"
    shutil.copytree(
        leaky.repo / "transforms", repo / "transforms", ignore=shutil.ignore_patterns("target", "logs")
    )
    _declare_phone(repo, pii=True)
    settings, catalog = rebuild_copy(leaky.settings, tmp, repo)
    report, _ = build(settings)
    return Built(settings, catalog, report, repo=repo)


def test_a_leak_found_in_the_current_snapshot_quarantines_it_in_the_same_build(
    leaky: Built, quarantined: Built
) -> None:
    leaked = leaky.catalog.current("public_works.callbacks")
    assert leaked is not None and "callback_phone" in dict(leaked.schema)
    catalog = quarantined.catalog
    assert catalog.current("public_works.callbacks") is None, "nothing good before it: nothing is served"
    (snapshot,) = catalog.snapshots("public_works.callbacks")
    assert (snapshot.id, snapshot.status, snapshot.status_actor) == (
        leaked.id,
        "quarantined",
        "civicmesh build",
    )
    assert "callback_phone is derived from PII" in snapshot.status_reason
    assert "raw_public_works.service_requests.requester_phone [pii]" in snapshot.status_reason
    log = AccessLog.from_settings(quarantined.settings)
    (record,) = [r for r in log.rows() if r["action"] == "quarantine"]
    assert (record["product"], record["snapshot_id"], record["rule"]) == (
        "public_works.callbacks",
        leaked.id,
        "civicmesh PII gate",
    )
    assert verify_report(log).ok
    outcome = quarantined.outcome("public_works.callbacks")
    assert not outcome.published and any(f"{leaked.id} served callback_phone" in r for r in outcome.reasons)
    for name in PRODUCTS:  # the rest of the build publishes as usual
        assert quarantined.outcome(name).published, quarantined.outcome(name)


SINGULAR_TEST = """-- A collision report needs at most one vehicle (deliberately wrong: fails on real data).
select collision_id, vehicles from {{ ref('collisions') }} where vehicles > 1
"""


@pytest.fixture(scope="module")
def warned(built_mesh: BuiltMesh, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """`civicmesh build` (the CLI) after adding a singular test that fails on collisions and a
    `severity: warn` test that fails on vendor payments: one product held back, one warned."""
    tmp = tmp_path_factory.mktemp("warned")
    repo = copy_repo_transforms(tmp / "repo")
    (repo / "transforms" / "tests").mkdir(exist_ok=True)
    (repo / "transforms" / "tests" / "assert_collisions_involve_one_vehicle.sql").write_text(SINGULAR_TEST)
    yml = repo / "transforms" / "models" / "finance" / "marts" / "vendor_payments.yml"
    text = yml.read_text()
    accepted = "              arguments:\n                values: [ach, check, card]\n"
    assert accepted in text
    warn_only = "              arguments:\n                values: [ach, check]\n              config:\n"
    yml.write_text(text.replace(accepted, warn_only + "                severity: warn\n"))
    settings, catalog = rebuild_copy(built_mesh.settings, tmp, repo)
    env = {
        "CIVICMESH_HOME": str(settings.home),
        "CIVICMESH_METADATA_URL": settings.metadata_url,
        "CIVICMESH_DBT_PROJECT_DIR": str(repo / "transforms"),
    }
    output = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(output):
        for key, value in env.items():
            patch.setenv(key, value)
        exit_code = main(["build"])
    return Built(settings, catalog, None, output.getvalue(), exit_code)


def _summary(output: str) -> dict[str, str]:
    """{product: its summary line and the reasons below it} from the CLI's build summary."""
    blocks: dict[str, str] = {}
    current = None
    for line in output.splitlines():
        words = line.split()
        if line.startswith("  ") and not line.startswith("    ") and len(words) >= 2:
            current = next((w for w in words if w in PRODUCTS), None)
            if current:
                blocks[current] = line
        elif current and line.startswith("      "):
            blocks[current] += "\n" + line
    return blocks


def test_the_build_summary_lists_published_held_back_and_warned_per_product(warned: Built) -> None:
    assert warned.exit_code == 1, warned.output  # something was held back
    blocks = _summary(warned.output)
    assert set(blocks) == PRODUCTS, warned.output
    assert "9 of 10 products published, 1 held back, 1 warned" in warned.output
    held = blocks["transportation.collisions"]
    assert held.split()[:2] == ["held", "back"]
    assert "dbt test assert_collisions_involve_one_vehicle on collisions:" in held and "failing rows" in held
    warn = blocks["finance.vendor_payments"]
    assert warn.split()[0] == "warned" and "accepted_values_vendor_payments_payment_method" in warn
    for name in PRODUCTS - {"transportation.collisions", "finance.vendor_payments"}:
        assert blocks[name].split()[0] == "published", blocks[name]


def test_a_new_singular_test_is_picked_up_and_holds_back_only_its_product(warned: Built) -> None:
    entry = warned.catalog.entry("transportation.collisions")
    assert entry.quality_status == "failed"
    assert [c["name"] for c in entry.quality["failed_checks"]] == ["assert_collisions_involve_one_vehicle"]
    assert warned.catalog.entry("transportation.traffic_counts").quality_status == "passed"


def test_a_warn_test_publishes_and_records_the_warning(warned: Built, built_mesh: BuiltMesh) -> None:
    entry = warned.catalog.entry("finance.vendor_payments")
    assert entry.quality_status == "warned"
    current = entry.current
    assert current is not None and entry.verified_at is not None
    if current.published_at == entry.verified_at:  # new content, published by this build
        assert current.quality["status"] == "warned"
    else:  # unchanged content keeps its snapshot; this build verified it, the product has the warning
        assert entry.verified_at > current.published_at
    (check,) = entry.quality["failed_checks"]
    assert check["severity"] == "warn" and check["name"].startswith("accepted_values_vendor_payments")


async def _catalog_query(settings: Settings, query: str) -> dict[str, Any]:
    from civicmesh.asgi import create_app
    from gateway.auth import issue_token

    app = create_app(dataclasses.replace(settings, repo_root=REPO_ROOT))  # the repo's policies
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"Authorization": f"Bearer {issue_token(settings, 'carol', 1)}"}
            response = await client.post("/graphql", json={"query": query}, headers=headers)
    return response.json()


def test_the_catalog_says_which_check_failed_and_why(warned: Built) -> None:
    query = """{
      held: product(name: "transportation.collisions") {
        qualityStatus quality { status failedChecks { name message severity } checkedAt }
      }
      warned: product(name: "finance.vendor_payments") { quality { status failedChecks { name severity } } }
      clean: product(name: "environment.air_quality") { quality { status failedChecks { name } checkedAt } }
    }"""
    data = asyncio.run(_catalog_query(warned.settings, query))["data"]
    held = data["held"]["quality"]
    assert data["held"]["qualityStatus"] == held["status"] == "failed"
    (check,) = held["failedChecks"]
    assert check["name"] == "assert_collisions_involve_one_vehicle" and check["severity"] == "error"
    assert "failing rows" in check["message"] and held["checkedAt"]
    assert data["warned"]["quality"]["status"] == "warned"
    assert data["warned"]["quality"]["failedChecks"][0]["severity"] == "warn"
    assert data["clean"]["quality"]["status"] == "passed" and data["clean"]["quality"]["failedChecks"] == []


def test_a_reviewed_deidentification_publishes_and_the_catalog_shows_why(leaky: Built) -> None:
    assert leaky.outcome("public_works.requesters_by_district").outcome == "published"
    (noted,) = leaky.catalog.entry("public_works.requesters_by_district").quality["deidentified"]
    assert noted["column"] == "requesters" and noted["path"][-1] == SOURCE_EMAIL
    query = """{ product(name: "public_works.requesters_by_district") {
        columns { name pii deidentifiedReason } quality { status } } }"""
    product = asyncio.run(_catalog_query(leaky.settings, query))["data"]["product"]
    columns = {c["name"]: c for c in product["columns"]}
    assert columns["requesters"] == {
        "name": "requesters",
        "pii": False,
        "deidentifiedReason": REQUESTERS_REASON,
    }
    assert columns["district"]["deidentifiedReason"] is None and product["quality"]["status"] == "passed"
