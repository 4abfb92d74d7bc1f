"""The data owner's loop through the real CLI (`.venv/bin/civicmesh` as a subprocess) on a private
copy of the dbt project: scaffold `public_works.pothole_backlog` from the staging model, describe it,
check it (clean), preview it as bob and dana (masks and row scope as the policy says), build it, read
it through GraphQL (the same rows and pseudonyms as the preview), then retire it.

The same build holds back a mart whose SQL drifted from its contract and says why inline."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from meshcore.settings import REPO_ROOT
from tests.mesh import CIVICMESH, copy_repo_transforms, home_env

STG = "{{ ref('stg_public_works__service_requests') }}"

pytestmark = pytest.mark.slow

PRODUCT = "public_works.pothole_backlog"
DESCRIPTION = (
    "Open pothole requests: the road crews' queue, oldest first. Internal; supervisors see their districts."
)
DRIFT_SQL = "select request_id, 42 as district from {{ ref('stg_public_works__service_requests') }}\n"
DRIFT_YML = """models:
  - name: contract_drift
    description: "A mart whose SQL no longer matches its contract."
    config:
      meta:
        civicmesh:
          classification: public
          unscoped: "a test product"
    columns:
      - name: request_id
        data_type: varchar
      - name: district
        data_type: varchar
"""
MISSCOPED_SQL = "select request_id, district, category from {{ ref('stg_public_works__service_requests') }}\n"
MISSCOPED_YML = """models:
  - name: misscoped
    description: "Requests per category; declares category as its scope column, not district."
    config:
      meta:
        civicmesh:
          classification: internal
          scope_column: category
    columns:
      - name: request_id
        data_type: varchar
      - name: district
        data_type: varchar
      - name: category
        data_type: varchar
"""


class Owner:
    """`civicmesh` as the owner runs it: their home, their copy of the dbt project."""

    def __init__(self, tmp: Path) -> None:
        self.repo = copy_repo_transforms(tmp / "repo")
        self.project = self.repo / "transforms"
        self.home = tmp / "home"
        self.env = {**home_env(self.home), "CIVICMESH_DBT_PROJECT_DIR": str(self.project)}

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [CIVICMESH, *args], env=self.env, capture_output=True, text=True, timeout=1800, check=False
        )
        if ok:
            assert result.returncode == 0, (
                f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
            )
        return result


def preview_rows(output: str, user: str) -> tuple[str, list[dict]]:
    """(the persona's header line, its JSON rows) from `product preview` output."""
    block = output.split(f"--as {user}:", 1)[1].split("\n--as ", 1)[0]
    header, *rows = block.strip().splitlines()
    return header, [json.loads(r) for r in rows]


def query(owner: Owner, user: str, document: str) -> dict:
    return json.loads(owner.run("query", "--as", user, document).stdout)


@pytest.fixture(scope="module")
def owner(tmp_path_factory: pytest.TempPathFactory) -> Owner:
    owner = Owner(tmp_path_factory.mktemp("owner"))
    owner.run("generate", "--rows", "3000", "--seed", "7")
    return owner


def test_scaffold_check_preview_build_read_and_retire(owner: Owner) -> None:
    marts = owner.project / "models" / "public_works" / "marts"
    created = owner.run(
        "product", "new", "public_works", "pothole_backlog", "--from", "stg_public_works__service_requests"
    )
    assert f"wrote {marts / 'pothole_backlog.sql'}" in created.stdout
    yml = (marts / "pothole_backlog.yml").read_text()
    # contract from what the staging model returns, PII from the sources' declarations
    assert "key: request_id" in yml and "scope_column: district" in yml
    assert "      - name: opened_at\n        data_type: timestamp\n" in yml
    email = (
        r"- name: requester_email\n        data_type: varchar\n        description: \"Requester e-mail.\"\n"
    )
    assert re.search(
        email + r"        config:\n          tags: \[pii\]\n          meta: \{mask: hash\}\n", yml
    ), yml
    assert "access:" not in yml and "contract:" not in yml  # the folder config sets them

    # the placeholder description fails the check, with its file and line
    failed = owner.run("product", "check", PRODUCT, ok=False)
    assert failed.returncode == 1
    assert f"{marts / 'pothole_backlog.yml'}:3: spec: still the scaffold's placeholder" in failed.stdout

    (marts / "pothole_backlog.yml").write_text(
        re.sub(r'description: "TODO\(owner\):[^"]*"', f'description: "{DESCRIPTION}"', yml)
    )
    sql = (marts / "pothole_backlog.sql").read_text()
    (marts / "pothole_backlog.sql").write_text(
        sql.replace("from upstream\n", "from upstream\nwhere category = 'pothole' and closed_at is null\n")
    )
    (marts / "contract_drift.sql").write_text(DRIFT_SQL)
    (marts / "contract_drift.yml").write_text(DRIFT_YML)
    (marts / "misscoped.sql").write_text(MISSCOPED_SQL)
    (marts / "misscoped.yml").write_text(MISSCOPED_YML)
    checked = owner.run("product", "check", PRODUCT)
    assert checked.stdout.rstrip().endswith(f"OK: {PRODUCT}")
    assert (
        "+ dana       read      public_works.pothole_backlog  (p, supervisor, public_works, *, read)"
        in checked.stdout
    )
    assert (
        "+ bob        read      public_works.pothole_backlog  (builtin:classification:internal)"
        in checked.stdout
    )

    preview = owner.run("product", "preview", PRODUCT, "--as", "bob", "--as", "dana", "--rows", "50").stdout
    assert "GraphQL field: publicWorks.potholeBacklog" in preview
    bob_header, bob_rows = preview_rows(preview, "bob")
    dana_header, dana_rows = preview_rows(preview, "dana")
    assert "(all)" in bob_header and "requester_name=hash" in bob_header
    assert "(district IN (D3))" in dana_header
    assert {r["district"] for r in bob_rows} > {"D3"}  # bob: every district
    assert dana_rows and {r["district"] for r in dana_rows} == {"D3"}  # dana: her district only
    for row in bob_rows + dana_rows:
        assert row["category"] == "pothole"
        assert row["requester_name"] is None or row["requester_name"].startswith("p_")  # pseudonym
        assert row["address"] is None or row["address"].startswith("***")

    # build: the new product publishes; the drifted mart is held back with the database's message
    built = owner.run("build", ok=False)
    assert built.returncode == 1, built.stderr[-3000:]
    assert re.search(r"published\s+public_works\.pothole_backlog\s+snapshot", built.stderr), built.stderr[
        -3000:
    ]
    assert "held back  public_works.contract_drift" in built.stderr
    assert "dbt model contract_drift failed to build (Contract Error; compiled SQL:" in built.stderr
    assert "district" in built.stderr.split("held back  public_works.contract_drift", 1)[1]

    # GraphQL serves dana what the preview showed her: same rows, same pseudonyms
    read = query(
        owner,
        "dana",
        "{ publicWorks { potholeBacklog(first: 50) "
        "{ totalCount nodes { requestId district requesterName address } } } }",
    )
    served = read["data"]["publicWorks"]["potholeBacklog"]
    assert served["totalCount"] == int(dana_header.split(" rows", 1)[0])
    by_id = {r["request_id"]: r for r in dana_rows}
    for node in served["nodes"]:
        assert node["district"] == "D3"
        assert node["requesterName"] == by_id[node["requestId"]]["requester_name"]
        assert node["address"] == by_id[node["requestId"]]["address"]

    # a product with a district column that declares another scope column: dana gets no rows
    counts = query(owner, "dana", "{ publicWorks { misscoped(first: 1) { totalCount } } }")
    assert counts["data"]["publicWorks"]["misscoped"]["totalCount"] == 0
    counts = query(owner, "bob", "{ publicWorks { misscoped(first: 1) { totalCount } } }")
    assert counts["data"]["publicWorks"]["misscoped"]["totalCount"] > 0

    # retire: owners only; gone from discovery and the schema, history kept
    refused = owner.run(
        "product", "retire", PRODUCT, "--reason", "merged into service_requests", "--as", "bob", ok=False
    )
    assert refused.returncode == 1 and "may not withdraw" in refused.stderr
    owner.run("product", "retire", PRODUCT, "--reason", "merged into service_requests", "--as", "alice")
    names = {p["name"] for p in query(owner, "alice", "{ products { name } }")["data"]["products"]}
    assert PRODUCT not in names and "public_works.service_requests" in names
    gone = owner.run(
        "query", "--as", "alice", "{ publicWorks { potholeBacklog(first: 1) { totalCount } } }", ok=False
    )
    assert gone.returncode == 1 and "potholeBacklog" in json.loads(gone.stdout)["errors"][0]["message"]
    assert "retired by alice" in owner.run("snapshots", "list", PRODUCT).stdout
    # the name is never published again: the check says so before a build would, `new` refuses it
    again = owner.run("product", "check", "--no-impact", PRODUCT, ok=False)
    assert again.returncode == 1
    assert f"{marts / 'pothole_backlog.yml'}:2: retired: {PRODUCT} was retired (merged" in again.stdout
    for path in marts.glob("pothole_backlog.*"):
        path.unlink()
    reused = owner.run("product", "new", "public_works", "pothole_backlog", ok=False)
    assert reused.returncode == 1 and f"{PRODUCT} was retired" in reused.stderr
    assert not list(marts.glob("pothole_backlog.*"))


FIVE_ERRORS = """models:
  - name: five_errors
    description: "A product with five different mistakes."
    config:
      meta:
        civicmesh:
          classification: secret
          key: request_id
          scope_column: ward
    columns:
      - name: request_id
        data_type: integer
      - name: district
        description: "no data_type"
      - name: requester_name
        data_type: varchar
        config:
          tags: [pii]
          meta: {mask: scramble}
      - name: opened_at
        data_type: timestamp
"""
FIVE_SQL = f"select request_id, district, requester_name, opened_at, status from {STG}\n"
LEAKY_YML = """models:
  - name: leaky_contacts
    description: "Contacts per district, without masks or scope."
    config:
      meta:
        civicmesh:
          classification: internal
    columns:
      - name: request_id
        data_type: varchar
      - name: district
        data_type: varchar
      - name: contact
        data_type: varchar
"""
LEAKY_SQL = f"select request_id, district, requester_email as contact from {STG}\n"


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_check_reports_every_problem_at_once_with_file_and_line(tmp_path: Path) -> None:
    owner = Owner(tmp_path)
    marts = owner.project / "models" / "public_works" / "marts"
    for name, sql, yml in (("five_errors", FIVE_SQL, FIVE_ERRORS), ("leaky_contacts", LEAKY_SQL, LEAKY_YML)):
        (marts / f"{name}.sql").write_text(sql)
        (marts / f"{name}.yml").write_text(yml)
    owner.run("product", "check", "public_works.response_times")  # warm: dbt's partial parse, as in a loop
    import time

    started = time.monotonic()
    result = owner.run(
        "product", "check", "public_works.five_errors", "public_works.leaky_contacts", ok=False
    )
    elapsed = time.monotonic() - started
    print(f"product check with 7 findings: {elapsed:.1f}s, load average {os.getloadavg()}")
    assert result.returncode == 1
    out = result.stdout
    five = marts / "five_errors.yml"
    expected = [
        (line_of(FIVE_ERRORS, "classification: secret"), "spec", "'secret' is not one of"),
        (line_of(FIVE_ERRORS, "scope_column: ward"), "spec", "column 'ward' is not in the contract"),
        (line_of(FIVE_ERRORS, "name: district"), "spec", "needs a contract data_type"),
        (line_of(FIVE_ERRORS, "meta: {mask: scramble}"), "spec", "unknown mask kind 'scramble'"),
        (
            line_of(FIVE_ERRORS, "data_type: integer"),
            "contract",
            "the contract says integer, the SQL returns VARCHAR",
        ),
        (line_of(FIVE_ERRORS, "columns:"), "contract", "the SQL returns status (VARCHAR)"),
    ]
    for line, code, message in expected:
        assert re.search(rf"^{re.escape(str(five))}:{line}: {code}: .*{re.escape(message)}", out, re.M), (
            line,
            message,
            out,
        )
    leaky = marts / "leaky_contacts.yml"
    pii = line_of(LEAKY_YML, "name: contact")
    assert re.search(
        rf"^{re.escape(str(leaky))}:{pii}: pii: public_works.leaky_contacts.contact is derived from PII "
        r"\(public_works.leaky_contacts.contact <- .*requester_email <- "
        r"raw_public_works.service_requests.requester_email \[pii\]\)",
        out,
        re.M,
    ), out
    assert re.search(
        rf"^{re.escape(str(leaky))}:2: undeclared-scope: public_works.leaky_contacts has column 'district'",
        out,
        re.M,
    ), out
    assert out.rstrip().endswith("problem(s) in public_works.five_errors, public_works.leaky_contacts")
    assert "impact under" not in out  # impact only once everything is clean


RENAMED_YML = """models:
  - name: renamed_scope
    description: "Requests per council district, the district column renamed."
    config:
      meta:
        civicmesh:
          classification: internal
          scope_column: council_district
    columns:
      - name: request_id
        data_type: varchar
      - name: council_district
        data_type: varchar
      - name: category
        data_type: varchar
"""
RENAMED_SQL = f"select request_id, district as council_district, category from {STG}\n"


def test_check_flags_a_scope_column_under_another_name(tmp_path: Path) -> None:
    """The row scope matches the column named `district`; declared as `council_district` it would
    limit nobody (dana would see every district), so the check follows the column's lineage."""
    owner = Owner(tmp_path)
    marts = owner.project / "models" / "public_works" / "marts"
    (marts / "renamed_scope.sql").write_text(RENAMED_SQL)
    (marts / "renamed_scope.yml").write_text(RENAMED_YML)
    result = owner.run("product", "check", "--no-impact", "public_works.renamed_scope", ok=False)
    assert result.returncode == 1, result.stdout
    line = line_of(RENAMED_YML, "name: council_district")
    assert re.search(
        rf"^{re.escape(str(marts / 'renamed_scope.yml'))}:{line}: undeclared-scope: "
        r"public_works.renamed_scope.council_district is computed from .*\.district, which scopes readers",
        result.stdout,
        re.M,
    ), result.stdout
    assert result.stdout.count("undeclared-scope") == 1  # category is not computed from district


COPY_YML = """models:
  - name: requester_copy
    description: "City operations' copy of public works' requests."
    config:
      meta:
        civicmesh:
          classification: internal
          unscoped: "a test product"
    columns:
      - name: request_id
        data_type: varchar
      - name: requester_name
        data_type: varchar
        config:
          tags: [pii]
          meta: {mask: hash}
"""


def test_a_department_cannot_republish_another_departments_data(tmp_path: Path) -> None:
    """Built into a city_ops product, public works' requesters would be read unmasked (read_pii) and
    granted by city_ops' owner: only another department's public products without personal data
    may be built on. `new` refuses the raw source, `check` flags the internal product."""
    owner = Owner(tmp_path)
    scaffold = owner.run(
        "product", "new", "city_ops", "requesters", "--from", "raw_public_works.service_requests", ok=False
    )
    assert scaffold.returncode == 1
    assert "reads source raw_public_works.service_requests of department 'public_works'" in scaffold.stderr
    assert not list((owner.project / "models" / "city_ops").rglob("*requesters*"))
    marts = owner.project / "models" / "city_ops" / "marts"
    (marts / "requester_copy.sql").write_text(
        "select request_id, requester_name from {{ ref('service_requests') }}\n"
    )
    (marts / "requester_copy.yml").write_text(COPY_YML)
    result = owner.run("product", "check", "--no-impact", "city_ops.requester_copy", ok=False)
    assert result.returncode == 1, result.stdout
    assert (
        f"{marts / 'requester_copy.yml'}:2: boundary: reads model service_requests of department "
        "'public_works': city_ops may build only on another department's public products without "
        "personal data"
    ) in result.stdout
    preview = owner.run("product", "preview", "city_ops.requester_copy", "--as", "olivia", ok=False)
    assert (
        preview.returncode == 1 and "city_ops.requester_copy reads model service_requests" in preview.stderr
    )


def test_a_product_built_from_a_restricted_one_is_not_read_by_all_staff(tmp_path: Path) -> None:
    """`new` proposes the strictest classification of what it builds on (hr.employees is
    restricted); downgraded to internal by hand, every staff member would read the register:
    `check` flags it at the classification's line until the owner records why."""
    owner = Owner(tmp_path)
    owner.run("product", "new", "hr", "staff_directory", "--from", "employees")
    yml = owner.project / "models" / "hr" / "marts" / "staff_directory.yml"
    text = re.sub(r'description: "TODO\(owner\):[^"]*"', 'description: "Who works where."', yml.read_text())
    assert "classification: restricted" in text
    yml.write_text(text.replace("classification: restricted", "classification: internal"))
    result = owner.run("product", "check", "--no-impact", "hr.staff_directory", ok=False)
    line = line_of(text, "classification: restricted")
    assert (
        f"{yml}:{line}: classification: hr.staff_directory is internal but built from "
        "hr.employees (restricted)"
    ) in result.stdout, result.stdout
    reason = (
        'classification: internal\n          declassified: "names and titles only, published to all staff"'
    )
    yml.write_text(text.replace("classification: restricted", reason))
    assert (
        owner.run("product", "check", "--no-impact", "hr.staff_directory")
        .stdout.rstrip()
        .endswith("OK: hr.staff_directory")
    )


def test_check_names_a_model_that_takes_an_existing_product_name(tmp_path: Path) -> None:
    owner = Owner(tmp_path)
    marts = owner.project / "models" / "public_works" / "marts"
    (marts / "impostor.sql").write_text(f"select request_id, district from {STG}\n")
    (marts / "impostor.yml").write_text(
        MISSCOPED_YML.replace("name: misscoped", "name: impostor")
        .replace("scope_column: category", "scope_column: district\n          product: service_requests")
        .replace("      - name: category\n        data_type: varchar\n", "")
    )
    result = owner.run("product", "check", "--no-impact", "public_works.service_requests", ok=False)
    assert result.returncode == 1, result.stdout
    assert (
        f"{marts / 'service_requests.yml'}:2: spec: product name also declared by "
        "models/public_works/marts/impostor.yml"
    ) in result.stdout


def test_preview_shows_nobody_what_the_pii_gate_would_hold_back(tmp_path: Path) -> None:
    """A column derived from PII without a mask is served to nobody (the build holds the product
    back), so the preview does not print it unmasked as if bob would get it: it refuses, naming it."""
    owner = Owner(tmp_path)
    owner.run("generate", "--rows", "1000", "--seed", "3")
    marts = owner.project / "models" / "public_works" / "marts"
    (marts / "leaky_contacts.sql").write_text(LEAKY_SQL)
    (marts / "leaky_contacts.yml").write_text(LEAKY_YML)
    result = owner.run("product", "preview", "public_works.leaky_contacts", "--as", "bob", ok=False)
    assert result.returncode == 1, result.stdout
    assert "the PII gate would hold public_works.leaky_contacts back" in result.stderr
    assert "public_works.leaky_contacts.contact is derived from PII" in result.stderr
    assert "@" not in result.stdout  # no requester e-mail printed


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        (
            "select * from {{ ref('no_such_model') }}",
            "depends on a node named 'no_such_model' which was not found",
        ),
        ("select * from {{ ref('stg_public_works__service_requests' }}", "Compilation Error"),
    ],
    ids=["missing-ref", "jinja-error"],
)
def test_a_project_dbt_cannot_parse_fails_the_build_naming_the_file(
    tmp_path: Path, sql: str, says: str
) -> None:
    owner = Owner(tmp_path)
    (owner.project / "models" / "public_works" / "marts" / "broken.sql").write_text(sql + "\n")
    result = owner.run("build", ok=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "civicmesh build: dbt could not parse the project" in result.stderr
    assert "models/public_works/marts/broken.sql" in result.stderr and says in result.stderr


def test_the_shipped_pre_commit_hook_runs_product_check(tmp_path: Path) -> None:
    """`.pre-commit-config.yaml` enabled as transforms/README.md says (`.venv/bin/pre-commit install`,
    typed in the repository): a clean commit goes through, a broken yml stops the commit with the
    file and line."""
    owner = Owner(tmp_path)
    shutil.copy(REPO_ROOT / ".pre-commit-config.yaml", owner.repo)
    (owner.repo / ".venv").symlink_to(Path(CIVICMESH).parent.parent)
    env = {**owner.env, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache")}
    env |= {"GIT_AUTHOR_NAME": "owner", "GIT_COMMITTER_NAME": "owner"}
    env |= {"GIT_AUTHOR_EMAIL": "owner@city.example", "GIT_COMMITTER_EMAIL": "owner@city.example"}

    def shell(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command], cwd=owner.repo, env=env, capture_output=True, text=True, timeout=600
        )

    assert shell("git init -q && .venv/bin/pre-commit install").returncode == 0
    clean = shell("git add -A && git commit -q -m 'the project as shipped'")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert re.search(r"civicmesh product check\.+Passed", clean.stdout + clean.stderr)

    spec = owner.project / "models" / "public_works" / "marts" / "response_times.yml"
    text = spec.read_text()
    spec.write_text(text.replace("classification: public", "classification: secret", 1))
    assert spec.read_text() != text
    broken = shell("git commit -q -am 'a typo in the classification'")
    out = broken.stdout + broken.stderr
    assert broken.returncode == 1, out
    line = line_of(spec.read_text(), "classification: secret")
    assert re.search(rf"{re.escape(str(spec))}:{line}: spec: .*'secret' is not one of", out), out
    assert shell("git log --oneline").stdout.count("\n") == 1  # the broken commit did not happen
