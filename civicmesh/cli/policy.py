"""`civicmesh policy check|status|explain|who-can|diff`: lint, explain and impact-analyse the access
policy. Every one of them only reads: none writes to the access log or the store."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from civicmesh.cli import CommandError
from civicmesh.cli.times import moment
from meshcore.products import ProductSpec
from meshcore.settings import Settings

if TYPE_CHECKING:
    from meshcore.catalog import CatalogEntry
    from policies.engine import PolicyEngine

POLICY_FILES = {".conf": "model.conf", ".csv": "policy.csv", ".yaml": "users.yaml", ".yml": "users.yaml"}


def at_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--at",
        type=moment,
        metavar="DATE",
        help="as of then (2026-11-01, 2026-11-01T08:00:00Z or 30d): the policy and grants in force, "
        "rebuilt from the access log, and the change that made the difference",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    policy = subparsers.add_parser("policy", help="check, explain and diff the access policy")
    sub = policy.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")

    def manifest_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--manifest",
            type=Path,
            help="read products from a dbt manifest (e.g. transforms/target/manifest.json) "
            "instead of the catalog",
        )

    check = sub.add_parser("check", help="lint the policy files (exit 1 on findings)")
    check.add_argument("--dir", type=Path, help="policy folder (default: the configured one)")
    manifest_arg(check)
    check.set_defaults(handler=run_check)

    status = sub.add_parser(
        "status", help="the policy the gateway serves, refused reloads, and whether the files on disk pass"
    )
    status.add_argument("--dir", type=Path, help="policy folder (default: the configured one)")
    status.set_defaults(handler=run_status)

    explain = sub.add_parser("explain", help="why USER may or may not do ACTION on PRODUCT")
    explain.add_argument("user")
    explain.add_argument("product")
    explain.add_argument("action", nargs="?", help="one action (default: all of them)")
    manifest_arg(explain)
    at_arg(explain)
    explain.set_defaults(handler=run_explain)

    who = sub.add_parser("who-can", help="every user allowed ACTION on PRODUCT")
    who.add_argument("product")
    who.add_argument("action")
    manifest_arg(who)
    at_arg(who)
    who.set_defaults(handler=run_who_can)

    diff = sub.add_parser("diff", help="who gains or loses which rights between two policies")
    diff.add_argument(
        "folders",
        type=Path,
        nargs="*",
        metavar="OLD NEW",
        help="two policy folders, or policy files (policy.csv, ...); with --against: NEW only "
        "(default: the configured folder)",
    )
    diff.add_argument(
        "--against",
        metavar="REV",
        help="compare with the policy folder as committed at git revision REV (HEAD, main, a sha)",
    )
    diff.add_argument("--exit-code", action="store_true", help="exit 1 when there are changes")
    manifest_arg(diff)
    diff.set_defaults(handler=run_diff)


def load_products(settings: Settings, manifest: Path | None) -> list[ProductSpec]:
    """Products from a dbt manifest when given, else from the published catalog."""
    if manifest is not None:
        from meshcore.products import ProductSpecError, load_product_specs

        if not manifest.is_file():
            raise CommandError(f"no manifest at {manifest} (run dbt parse first)")
        try:
            return load_product_specs(manifest)
        except ProductSpecError as exc:
            raise CommandError(str(exc)) from exc
    return [entry.spec for entry in catalog_entries(settings)]


def catalog_entries(settings: Settings, include_retired: bool = False) -> list[CatalogEntry]:
    """The catalog's products (`Catalog.entries`); none while nothing was ever published."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from meshcore.catalog import Catalog
    from meshcore.store import get_engine

    url = make_url(settings.metadata_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return []  # nothing published yet; do not create an empty store as a side effect
    from sqlalchemy import inspect

    engine = get_engine(settings.metadata_url)
    try:
        if not inspect(engine).has_table("catalog_products"):
            return []  # no catalog yet (nothing published)
        return Catalog(engine, settings.home).entries(include_retired)
    except SQLAlchemyError as exc:  # e.g. a locked or unreachable store: say so, never "no products"
        raise CommandError(f"cannot read the catalog at {settings.metadata_url}: {exc}") from exc


def find_product(products: list[ProductSpec], name: str) -> ProductSpec:
    for product in products:
        if product.name == name:
            return product
    known = ", ".join(p.name for p in products) or "none: publish products or pass --manifest"
    raise CommandError(f"unknown product {name!r} (known: {known})")


def policy_engine(settings: Settings):
    """The configured policy and the store's grants, for reading: records nothing."""
    from policies.engine import PolicyEngine
    from policies.names import PolicyError

    try:
        return PolicyEngine.load(settings, check_interval=None)
    except (PolicyError, OSError) as exc:
        raise CommandError(f"the policy does not load: {exc} (run `civicmesh policy check`)") from exc


def existing_log(settings: Settings):
    """The access log for reading, or None when there is no store yet (never creates one)."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from meshcore.accesslog import AccessLog, access_log_table
    from meshcore.store import get_engine

    url = make_url(settings.metadata_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return None
    engine = get_engine(settings.metadata_url)
    return AccessLog(engine) if inspect(engine).has_table(access_log_table.name) else None


def _served_owned(settings: Settings) -> frozenset[str]:
    """Departments owned under the policy the log says is served (to catch a lost owner)."""
    from policies import versions

    log = existing_log(settings)
    return versions.served_owned(log) if log else frozenset()


def run_check(args: argparse.Namespace) -> int:
    from policies.lint import lint_texts, read_texts

    settings = Settings.from_env()
    folder = args.dir or settings.policies_dir
    products = load_products(settings, args.manifest) or None
    texts, unreadable = read_texts(folder)
    found = lint_texts(texts, products, previously_owned=_served_owned(settings))
    problems = unreadable + [p for p in found if p.code != "missing"]
    for problem in problems:
        print(problem)
    scope = f"{len(products)} products" if products else "no product list: existence not checked"
    if problems:
        print(f"{len(problems)} finding(s) in {folder} ({scope})")
        return 1
    print(f"policy OK: {folder} ({scope})")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from policies import versions

    settings = Settings.from_env()
    folder = args.dir or settings.policies_dir
    log = existing_log(settings)
    if log is None:
        raise CommandError(f"no access log at {settings.metadata_url}: no gateway has served yet")
    state = versions.status(log, folder)
    served = state.served
    if served is None:
        print("served:  no policy recorded yet (no gateway has loaded one)")
    else:
        print(f"served:  version {served.version} (files {served.digest[:16]}), {served.describe()}")
    if state.refused is not None:
        print(f"REFUSED: files {state.refused.digest[:16]}, {state.refused.describe()}")
    if state.problems:
        print(f"on disk: {folder} (files {state.disk[:16] or '?'}) does not pass policy check:")
        print("\n".join(f"  {p}" for p in state.problems))
    elif served is not None and state.disk == served.digest:
        print(f"on disk: {folder}: the served policy")
    else:
        print(f"on disk: {folder} (files {state.disk[:16]}) passes policy check; not loaded by a gateway yet")
    return 0 if state.ok else 1


def _history(settings: Settings):
    from policies.history import History, HistoryError

    log = existing_log(settings)
    if log is None:
        raise CommandError(f"no access log at {settings.metadata_url}: nothing was recorded yet")
    try:
        return History(log, log.engine)
    except HistoryError as exc:
        raise CommandError(str(exc)) from exc


def product_at(settings: Settings, product: ProductSpec, at: Any) -> ProductSpec:
    """The product as published at `at` (its classification and columns then), if the catalog
    knows; else as it is now."""
    from sqlalchemy import inspect

    from meshcore.catalog import Catalog, snapshots_table

    log = existing_log(settings)
    if log is None or not inspect(log.engine).has_table(snapshots_table.name):
        return product
    snapshot = Catalog(log.engine, settings.home).snapshot_as_of(product.name, at)
    return snapshot.spec if snapshot is not None else product


def run_explain(args: argparse.Namespace) -> int:
    from policies.decision import ACTIONS
    from policies.explain import explain
    from policies.history import HistoryError, explain_lines

    settings = Settings.from_env()
    if args.action is not None and args.action not in ACTIONS:
        raise CommandError(f"unknown action {args.action!r}; use one of {', '.join(ACTIONS)}")
    product = find_product(load_products(settings, args.manifest), args.product)
    actions = [args.action] if args.action else list(ACTIONS)
    if args.at is None:
        engine = policy_engine(settings)
        for action in actions:
            print("\n".join(explain(engine, args.user, product, action)))
        return 0  # a denial is an answer, not a failure
    history, then = _history(settings), product_at(settings, product, args.at)
    try:
        for action in actions:
            print("\n".join(explain_lines(history, args.user, then, action, args.at)))
    except HistoryError as exc:
        raise CommandError(str(exc)) from exc
    return 0


def run_who_can(args: argparse.Namespace) -> int:
    from policies.decision import ACTIONS
    from policies.explain import who_can
    from policies.history import HistoryError, who_could

    settings = Settings.from_env()
    if args.action not in ACTIONS:
        raise CommandError(f"unknown action {args.action!r}; use one of {', '.join(ACTIONS)}")
    product = find_product(load_products(settings, args.manifest), args.product)
    if args.at is None:
        decisions = list(who_can(policy_engine(settings), product, args.action))
    else:
        try:
            decisions = list(
                who_could(_history(settings), product_at(settings, product, args.at), args.action, args.at)
            )
        except HistoryError as exc:
            raise CommandError(str(exc)) from exc
    for d in decisions:
        extra = []
        if d.masks:
            extra.append(f"masked: {', '.join(sorted(d.masks))}")
        if d.row_filter:
            extra.append(f"rows: {d.row_filter.describe()}")
        print(f"{d.subject:<12} {d.rule}" + (f"  ({'; '.join(extra)})" if extra else ""))
    if not decisions:
        print(f"nobody may {args.action} {product.name}")
    return 0


def _policy_folder(path: Path, default: Path, tmp: Path) -> Path:
    """A folder with all three files: `path` itself, or one file overlaid on its folder/the default."""
    if path.is_dir():
        return path
    if not path.is_file():
        raise CommandError(f"{path} is neither a policy folder nor a policy file")
    target = POLICY_FILES.get(path.suffix)
    if target is None:
        raise CommandError(f"{path}: expected a .csv, .yaml or .conf policy file")
    tmp.mkdir(parents=True)
    for name in set(POLICY_FILES.values()):
        source = path.parent / name if (path.parent / name).is_file() else default / name
        shutil.copy(source, tmp / name)
    shutil.copy(path, tmp / target)
    return tmp


def policy_at_revision(folder: Path, revision: str, dest: Path) -> Path:
    """`folder`'s three policy files as committed at git `revision` (`git show REV:path`), written
    to `dest`; CommandError when `folder` is not in a git work tree or a file is not in REV."""
    import subprocess

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=False)

    prefix = git("rev-parse", "--show-prefix")
    if prefix.returncode != 0:
        raise CommandError(f"{folder} is not inside a git work tree: {prefix.stderr.strip()}")
    # Resolved to a commit first: an empty REV would read the index (`git show :path`), and one
    # starting with `-` would be an option of `git show` (`--output=FILE` writes a file).
    commit = git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}")
    if commit.returncode != 0:
        raise CommandError(f"{revision!r} is not a git revision of a commit in {folder}")
    dest.mkdir(parents=True)
    for name in sorted(set(POLICY_FILES.values())):
        shown = git("show", f"{commit.stdout.strip()}:{prefix.stdout.strip()}{name}")
        if shown.returncode != 0:
            raise CommandError(f"{name} at {revision}: {shown.stderr.strip()}")
        (dest / name).write_text(shown.stdout)
    return dest


def _diff_inputs(args: argparse.Namespace, settings: Settings, tmp: Path) -> list[tuple[str, Path]]:
    """(label, folder) of the old and the new policy, from the arguments."""
    if args.against is not None:
        if len(args.folders) > 1:
            raise CommandError("with --against REV give at most one folder (the new policy)")
        new = args.folders[0] if args.folders else settings.policies_dir
        new_folder = _policy_folder(new, settings.policies_dir, tmp / "new")
        old = policy_at_revision(new if new.is_dir() else new.parent, args.against, tmp / "old")
        return [(f"{args.against}:{new}", old), (str(new), new_folder)]
    if len(args.folders) != 2:
        raise CommandError("give OLD and NEW policy folders, or --against REV")
    old, new = args.folders
    return [
        (str(old), _policy_folder(old, settings.policies_dir, tmp / "old")),
        (str(new), _policy_folder(new, settings.policies_dir, tmp / "new")),
    ]


def _as_it_was(folder: Path) -> PolicyEngine:
    """The policy files of `folder` without the lint (names still validated while parsing)."""
    from meshcore.store import utcnow
    from policies.engine import Inputs, PolicyEngine
    from policies.lint import MODEL_FILE, POLICY_FILE, USERS_FILE

    model, policy, users = ((folder / n).read_text() for n in (MODEL_FILE, POLICY_FILE, USERS_FILE))
    return PolicyEngine.frozen(Inputs(model, policy, users, grants=()), utcnow())


def run_diff(args: argparse.Namespace) -> int:
    from policies.engine import PolicyEngine
    from policies.explain import diff
    from policies.names import PolicyError
    from policies.versions import line_changes

    settings = Settings.from_env()
    products = load_products(settings, args.manifest)
    if not products:
        raise CommandError("no products to compare on: publish products or pass --manifest")
    with tempfile.TemporaryDirectory() as tmp:
        engines: list[PolicyEngine] = []
        for label, folder in _diff_inputs(args, settings, Path(tmp)):
            try:
                # the old policy as it was, even where today's lint rules refuse it (the change
                # under review may be the fix); the new one under every rule a reload applies
                engines.append(PolicyEngine.from_dir(folder) if engines else _as_it_was(folder))
            except (PolicyError, OSError) as exc:
                raise CommandError(f"policy {label} does not load: {exc}") from exc
    lines = line_changes(engines[0].files(), engines[1].files())
    print("\n".join(lines) if lines else "no policy line changed")
    changes = diff(engines[0], engines[1], products)
    for change in changes:
        print(change.describe())
    gains = sum(c.kind == "gain" for c in changes)
    losses = sum(c.kind == "lose" for c in changes)
    print(f"{gains} right(s) gained, {losses} lost, {len(changes) - gains - losses} changed in scope/masks")
    return 1 if args.exit_code and changes else 0
