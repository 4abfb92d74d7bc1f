"""Every command the README shows runs, exactly as written, on the home `make demo` leaves.

- Each line of a ```sh block runs as typed (`bash -c`, from a scratch folder laid out like the
  repository, so relative paths such as `.venv/bin/civicmesh` and `policies` resolve and new files
  land there) and must exit 0. The README's first query runs 20 times in a row, each with its rows.
- A command the README names elsewhere (inline code: a CLI-table template such as
  `civicmesh policy check|explain`, or a command in the prose) must be covered: each subcommand of a
  template, and each option it shows, by a line that runs; a prose command by a line starting with
  it. The few commands that cannot run here are in EXEMPT, each with the reason or the test that
  runs it instead. So a README command nothing runs fails this test.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.mesh import cli, home_env

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
COMMAND_WORDS = {"civicmesh", "make", "dagster", "dbt", "uv", "pg_dump", "pg_restore", "psql", "curl", "cp"}
EXEMPT = {
    "make demo": "the first command a user runs; the home it leaves (`civicmesh demo --no-serve`) is "
    "the one these commands run on",
    "make test": "runs this test",
    "make dagster": "tests/orchestration/test_make_dagster.py",
    "make lock": "re-resolves uv.lock after a dependency change (a maintainer's step; `make install` "
    "checks the lock with uv sync --frozen)",
    "make clean": "deletes the virtualenv these tests run in",
    "make bench": "every benchmark at full size (minutes); tests/test_bench_smoke.py runs each quickly",
    "uv sync --frozen": "what `make install` runs before every test session",
    "dbt build": "names the step `civicmesh build` runs, not a command to type",
    "civicmesh serve": "tests/civicmesh/test_backup.py",
    "civicmesh snapshots withdraw": "tests/gateway/test_gateway_withdraw.py",  # would end a demo product
    "civicmesh product new": "tests/test_owner_loop.py",  # writes into the repository's dbt project
    "civicmesh product retire": "tests/test_owner_loop.py",  # would end a demo product
    "pg_dump": "needs a PostgreSQL server",
    "pg_restore": "needs a PostgreSQL server",
}
FIRST_QUERY_RUNS = 20

pytestmark = pytest.mark.slow


def _markdown() -> tuple[list[tuple[str, str]], str]:
    """(language, body) of each fenced block, and the text outside the blocks."""
    text = README.read_text()
    fence = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
    return [(m.group(1), m.group(2)) for m in fence.finditer(text)], fence.sub("", text)


def sh_commands() -> list[str]:
    """Every command line of the ```sh blocks, backslash continuations joined, as written."""
    commands = []
    for language, body in _markdown()[0]:
        if language != "sh":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def words(command: str) -> list[str]:
    """The command's words, without leading VAR=value assignments and with the CLI's path dropped."""
    tokens = shlex.split(command.replace("\\|", "|"), comments=True)
    while tokens and re.match(r"^[A-Z_]+=", tokens[0]):
        tokens.pop(0)
    return [Path(t).name if t.endswith("/civicmesh") else t for t in tokens]


def exemption(command: str) -> str | None:
    found = words(command)
    return next(
        (why for prefix, why in EXEMPT.items() if found[: len(prefix.split())] == prefix.split()), None
    )


def runnable() -> list[str]:
    return [c for c in sh_commands() if exemption(c) is None]


def shown_inline() -> list[str]:
    """Inline code outside the blocks that is a command: a command word and its arguments (a word
    alone, such as `dbt`, names a tool)."""
    spans = re.findall(r"`([^`\n]+)`", _markdown()[1])
    return [s for s in spans if len(s.split()) > 1 and s.split()[0].split("/")[-1] in COMMAND_WORDS]


def uncovered(shown: str, executed: list[list[str]]) -> str | None:
    """Why `shown` is not covered by the `executed` commands (their words), or None."""
    if exemption(shown):
        return None
    template = words(shown)
    path = []
    for token in template:
        if token.startswith(("[", "-", "'", "...")) or token.isupper():
            break
        path.append(token)
    *parents, last = path
    for choice in last.split("|"):
        prefix = [*parents, choice]
        runs = [w for w in executed if w[: len(prefix)] == prefix]
        if not runs:
            return f"nothing runs `{' '.join(prefix)}`"
        for option in re.findall(r"--[a-z][a-z-]*", shown):
            if not any(option in w for w in runs):
                return f"nothing runs `{' '.join(prefix)}` with {option}"
    return None


def test_every_command_the_readme_shows_is_run_or_exempt_with_a_reason() -> None:
    executed = [words(c) for c in runnable()]
    assert executed, "the README shows no runnable command"
    problems = [f"`{s}`: {why}" for s in shown_inline() if (why := uncovered(s, executed))]
    problems += [
        f"`{c}`: not run, and no test file {why!r}"
        for c in sh_commands()
        if (why := exemption(c)) and why.startswith("tests/") and not (REPO / why).is_file()
    ]
    assert not problems, "README commands nothing runs:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(scratch folder laid out like the repository, the home `make demo` leaves in it)."""
    scratch = tmp_path_factory.mktemp("clone")
    (scratch / ".venv").symlink_to(REPO / ".venv")
    shutil.copytree(REPO / "policies", scratch / "policies")  # copied: examples may edit copies of it
    home = scratch / "data"
    result = cli(home, "demo", "--no-serve", timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return scratch, home


def run(command: str, scratch: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=scratch,
        env=home_env(home),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def test_the_first_query_runs_twenty_times_in_a_row_with_its_rows(demo: tuple[Path, Path]) -> None:
    query = next(c for c in runnable() if " query --as " in c)
    assert "query --as alice" in query, "the README's first query is alice's"
    for attempt in range(FIRST_QUERY_RUNS):
        result = run(query, *demo)
        assert result.returncode == 0, f"run {attempt + 1}: exit {result.returncode}\n{result.stderr[-2000:]}"
        rows = json.loads(result.stdout)["data"]["publicWorks"]["serviceRequests"]
        assert rows["totalCount"] > 0 and len(rows["nodes"]) == 3, rows


def test_every_readme_command_runs_as_written(demo: tuple[Path, Path]) -> None:
    for command in runnable():
        result = run(command, *demo)
        assert result.returncode == 0, f"{command}\nexit {result.returncode}\n{result.stderr[-3000:]}"
