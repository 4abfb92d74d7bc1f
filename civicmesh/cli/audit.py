"""`civicmesh audit verify|archive|export|verify-export|report|readers`: the access log for auditors.

- `verify`: the records against the hash chain, the chain against the signed checkpoints and the
  checkpoints against the external sink, with the public key only; names the first bad record and
  says how many newest records are not sealed yet. Archived segments are verified as the start of
  the chain.
- `archive`: move sealed records out of the store into compressed files (`meshcore.audit.archiving`).
- `export`: a period of the log as CSV or JSONL plus a manifest (public key, checkpoints, seals)
  an auditor checks without the store.
- `verify-export`: check an export against its manifest (no database needed, the public key only).
- `report`: the access review (rights held, unused grants, denials, PII reads).
- `readers --derived-from X`: who read products derived from X (lineage downstream joined with the log).

These tools read the metadata store directly, like any local admin tool: whoever runs them can read
the store anyway. Exports are themselves appended to the log.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from civicmesh.cli import CommandError
from civicmesh.cli.times import moment
from meshcore.audit.verify import verify_report
from meshcore.settings import Settings


def key_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--public-key",
        type=Path,
        help="the audit public key (PEM) you hold (default: CIVICMESH_AUDIT_PUBLIC_KEY_FILE, "
        "exported under the home's audit/)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    audit = subparsers.add_parser("audit", help="verify, export and review the access log")
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")

    verify = sub.add_parser("verify", help="check the chain, the signed checkpoints and the external sink")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    key_args(verify)
    verify.add_argument(
        "--sink", help="the checkpoint sink to verify against (default: CIVICMESH_AUDIT_SINK or the home's)"
    )
    verify.set_defaults(handler=run_verify)

    _register_archive(sub)

    export = sub.add_parser("export", help="export a period of the log with a verification manifest")
    export.add_argument("--since", type=moment, help="from this time (inclusive)")
    export.add_argument("--until", type=moment, help="up to this time (exclusive)")
    export.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    export.add_argument("--out", help="export file (default access-log-<first>-<last>.<format>)")
    export.add_argument("--manifest", type=Path, help="manifest file (default <out>.manifest.json)")
    export.set_defaults(handler=run_export)

    check = sub.add_parser("verify-export", help="check an export file against its manifest")
    check.add_argument("file", type=Path)
    check.add_argument("--manifest", type=Path, help="default <file>.manifest.json")
    key_args(check)
    check.add_argument(
        "--with-key",
        action="store_true",
        help="require the configured public key (CIVICMESH_AUDIT_PUBLIC_KEY_FILE; used by default "
        "whenever it exists): without a key you hold, the result is UNVERIFIED (exit 1)",
    )
    check.set_defaults(handler=run_verify_export)

    report = sub.add_parser(
        "report",
        help="access review: every right per subject, its source, last use, unused ones; denials, PII reads",
    )
    report.add_argument(
        "--days",
        type=int,
        default=90,
        help="the review period: rights unused this long are flagged (default 90)",
    )
    report.add_argument("--format", choices=("text", "json"), default="text")
    report.add_argument("--manifest", type=Path, help="products from a dbt manifest, not the catalog")
    report.set_defaults(handler=run_report)

    _register_readers(sub)


def _register_readers(sub: argparse._SubParsersAction) -> None:
    readers = sub.add_parser("readers", help="who read products derived from a product or source")
    readers.add_argument(
        "--derived-from",
        required=True,
        metavar="DATASET_OR_PRODUCT",
        help="a product (department.product), a landing file, or a raw/staging table",
    )
    readers.add_argument("--since", type=moment)
    readers.add_argument("--until", type=moment)
    readers.add_argument("--depth", type=int, default=10)
    readers.add_argument("--as", dest="user", help="only products USER may audit (as the gateway does)")
    readers.add_argument("--format", choices=("text", "json"), default="text")
    readers.set_defaults(handler=run_readers)


def _register_archive(sub: argparse._SubParsersAction) -> None:
    archive = sub.add_parser(
        "archive", help="move sealed records out of the store into compressed, verifiable archive files"
    )
    when = archive.add_mutually_exclusive_group(required=True)
    when.add_argument("--before", type=moment, help="records stamped before this time (and sealed)")
    when.add_argument("--sealed", action="store_true", help="every record sealed in the external sink")
    archive.set_defaults(handler=run_archive)


def _store_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(settings.metadata_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        raise CommandError(f"no metadata store at {url.database} (nothing served or built yet)")
    return settings.metadata_url


def _verifier(settings: Settings, path: Path | None) -> Any:
    from meshcore.seals.signing import AuditKeyError, Verifier

    try:
        return Verifier.from_file(path or settings.audit_public_key_file)
    except AuditKeyError as exc:
        raise CommandError(f"{exc}; pass --public-key FILE (the key you were given)") from exc


def _reading_log(settings: Settings, public_key: Path | None, sink: str | None) -> Any:
    """The log as an auditor checks it: the public key and the sink, never the private key."""
    from meshcore.accesslog import AccessLog
    from meshcore.seals.sinks import SinkError, open_sink
    from meshcore.store import get_engine

    verifier = _verifier(settings, public_key)
    try:
        checkpoint_sink = open_sink(sink or settings.audit_sink)
    except SinkError as exc:
        raise CommandError(str(exc)) from exc
    engine = get_engine(_store_url(settings))
    archive_dir = settings.audit_archive_dir
    return AccessLog(engine, verifier=verifier, sink=checkpoint_sink, archive_dir=archive_dir).ensure_schema()


def _plain_log(settings: Settings) -> Any:
    """The log for reading only (reports, readers): nothing is signed or written."""
    from meshcore.accesslog import AccessLog
    from meshcore.store import get_engine

    return AccessLog(get_engine(_store_url(settings)), archive_dir=settings.audit_archive_dir).ensure_schema()


def _complete_since(log: Any, since: datetime | None) -> None:
    """Refuse a period that reaches into archived records (the store alone would be incomplete)."""
    from meshcore.audit.archive import ArchivedPeriod, refuse_archived

    try:
        refuse_archived(log, since)
    except ArchivedPeriod as exc:
        raise CommandError(str(exc)) from exc


def _writing_log(settings: Settings) -> Any:
    from meshcore.audit.sealing import open_log
    from meshcore.seals.signing import AuditKeyError

    _store_url(settings)
    try:
        return open_log(settings)
    except AuditKeyError as exc:
        raise CommandError(str(exc)) from exc


# -- verify -----------------------------------------------------------------------------------------


def _verify_lines(check: Any) -> list[str]:
    if check.ok:
        sealed = (
            f"{check.checkpoints} checkpoints in {check.sink} seal records 1..{check.sealed}"
            if check.sealed
            else f"no checkpoint in {check.sink} yet"
        )
        unsealed = (
            f"; the {check.unsealed} newest records are signed in the store but not yet sealed outside it"
            if check.unsealed
            else "; every record is sealed"
        )
        archived = f"; records 1..{check.archived} read from the archive" if check.archived else ""
        head = f"head seq {check.head} (key {check.key_id}; {sealed}{unsealed}{archived})"
        return [f"OK: access log verified, {head}"]
    first = check.first
    lines = [f"BAD: first bad seq {first.seq}: {first.problem}: {first.detail}"]
    lines += [f"BAD: seq {f.seq}: {f.problem}: {f.detail}" for f in check.findings if f is not first]
    if check.unsealed:
        lines.append(f"note: the {check.unsealed} newest records are not sealed in {check.sink} yet")
    return lines


def run_verify(args: argparse.Namespace) -> int:
    check = verify_report(_reading_log(Settings.from_env(), args.public_key, args.sink))
    if args.json:
        result = {
            "ok": check.ok,
            "head": check.head,
            "first_bad": check.first_bad,
            "problem": check.problem,
            "detail": check.detail,
            "findings": [f.as_dict() for f in check.findings],
            "checkpoints": check.checkpoints,
            "last_checkpoint": check.last_checkpoint,
            "sealed": check.sealed,
            "unsealed": check.unsealed,
            "key_id": check.key_id,
            "sink": check.sink,
            "archived": check.archived,
        }
        print(json.dumps(result))
    else:
        print("\n".join(_verify_lines(check)))
    return 0 if check.ok else 1


# -- archive ----------------------------------------------------------------------------------------


def run_archive(args: argparse.Namespace) -> int:
    from meshcore.accesslog import AccessLogUnavailable, AccessRecord, utc_timestamp
    from meshcore.audit.archive import ArchiveError
    from meshcore.audit.archiving import ArchiveRefused, archive_sealed

    log = _writing_log(Settings.from_env())
    try:
        report = archive_sealed(log, utc_timestamp(args.before) if args.before else None)
    except (ArchiveRefused, ArchiveError) as exc:
        raise CommandError(str(exc)) from exc
    if report.finished:
        print(f"deleted {report.finished} stored records an interrupted run had already archived")
    for segment in report.segments:
        print(
            f"archived seq {segment.first_seq}..{segment.last_seq} ({segment.record_count} records, "
            f"checkpoint #{segment.checkpoint['index']}) to {segment.path}"
        )
    if not report.segments:
        print("nothing to archive: no sealed record in the store is old enough")
        return 0
    span = f"seq {report.segments[0].first_seq}..{report.segments[-1].last_seq}"
    record = AccessRecord(
        request_id=f"audit-archive-{report.segments[-1].sha256[:16]}",
        action="audit_archive",
        status=200,
        decision="allow",
        reason=f"civicmesh audit archive: {span} to {log.archive_dir}",
        subject=f"local:{getpass.getuser()}",
        client="cli",
        rows=sum(s.record_count for s in report.segments),
    )
    try:
        log.append([record])
    except AccessLogUnavailable as exc:
        raise CommandError(f"archived, but the archiving could not be logged: {exc}") from exc
    return 0


# -- export -----------------------------------------------------------------------------------------


def _log_export(log: Any, manifest: dict[str, Any]) -> None:
    from meshcore.accesslog import AccessLogUnavailable, AccessRecord

    span = (
        f"seq {manifest['first_seq']}..{manifest['last_seq']}" if manifest["record_count"] else "no records"
    )
    record = AccessRecord(
        request_id=f"audit-export-{manifest['sha256'][:16]}",
        action="audit_export",
        status=200,
        decision="allow",
        reason=f"civicmesh audit export: {span}, {manifest['record_count']} records, "
        f"{manifest['format']}, sha256 {manifest['sha256']}",
        subject=f"local:{getpass.getuser()}",
        client="cli",
        rows=manifest["record_count"],
    )
    try:
        log.append([record])
    except AccessLogUnavailable as exc:
        raise CommandError(f"the export could not be logged, so it was removed: {exc}") from exc


def run_export(args: argparse.Namespace) -> int:
    import tempfile

    from civicmesh.audit.export import ExportError, export_log, sign_manifest

    if args.since and args.until and args.since >= args.until:
        raise CommandError("--since must be before --until")
    log = _writing_log(Settings.from_env())
    to_stdout = args.out == "-"
    if to_stdout and args.manifest is None:
        raise CommandError("--out - (stdout) needs --manifest FILE")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / f"access-log.{args.format}" if to_stdout or not args.out else Path(args.out)
        try:
            manifest = export_log(log, target, args.format, args.since, args.until)
        except ExportError as exc:
            raise CommandError(str(exc)) from exc
        if not to_stdout and not args.out:  # name it after the range it holds
            name = f"access-log-{manifest['first_seq'] or 0}-{manifest['last_seq'] or 0}.{args.format}"
            final = Path(name)
            target.replace(final)
            target = final
            manifest["file"] = final.name
            sign_manifest(log.signer, manifest)
        try:
            _log_export(log, manifest)
        except CommandError:
            if not to_stdout:
                target.unlink(missing_ok=True)
            raise
        if to_stdout:
            sys.stdout.write(target.read_text(encoding="utf-8"))
            sys.stdout.flush()
        manifest_path = args.manifest or target.with_name(target.name + ".manifest.json")
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    out = sys.stderr if to_stdout else sys.stdout
    count = manifest["record_count"]
    span = f"seq {manifest['first_seq']}..{manifest['last_seq']}" if count else "no records in the period"
    print(
        f"exported {count} records ({span}) to {'stdout' if to_stdout else target}; "
        f"manifest {manifest_path} (sha256 {manifest['sha256'][:16]}…, key {manifest['key_id']}, "
        f"{len(manifest['checkpoints'])} signed checkpoints and {len(manifest['seals'])} commit seals)",
        file=out,
    )
    chain = manifest["chain"]
    if not chain["store_verified"]:
        print(
            f"WARNING: the stored chain does not verify: first bad seq {chain['store_first_bad']} "
            f"({chain['store_problem']}); run `civicmesh audit verify`",
            file=sys.stderr,
        )
        return 1
    return 0


def _export_verifier(args: argparse.Namespace, manifest: dict[str, Any]) -> tuple[Any, str, bool]:
    """(the key to check signatures with, how it was chosen, whether it is one the auditor holds).

    A key you hold: `--public-key`, else the configured one when it exists. Otherwise the
    manifest's own key checks only that the export agrees with itself: anyone can make a key and
    re-sign a forged export with it, so that is never an OK."""
    from meshcore.seals.signing import AuditKeyError, Verifier

    settings = Settings.from_env()
    if args.public_key or args.with_key or settings.audit_public_key_file.exists():
        verifier = _verifier(settings, args.public_key)
        return verifier, f"signatures checked with your key {verifier.key_id}", True
    if not manifest.get("public_key"):
        return None, "no public key: signatures not checked; pass --public-key FILE", False
    try:
        verifier = Verifier.from_pem(manifest["public_key"].encode(), "the manifest's public key")
    except AuditKeyError as exc:
        raise CommandError(str(exc)) from exc
    return (
        verifier,
        (
            f"signatures checked only with the key the manifest carries ({verifier.key_id}), which "
            "proves nothing about who wrote it: pass --public-key FILE (the key you were given)"
        ),
        False,
    )


def run_verify_export(args: argparse.Namespace) -> int:
    from civicmesh.audit.export import verify_export

    manifest_path = args.manifest or args.file.with_name(args.file.name + ".manifest.json")
    if not args.file.is_file():
        raise CommandError(f"no export at {args.file}")
    if not manifest_path.is_file():
        raise CommandError(f"no manifest at {manifest_path} (pass --manifest)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise CommandError(f"{manifest_path} is not JSON: {exc}") from exc
    verifier, how, held = _export_verifier(args, manifest)
    problems = verify_export(args.file, manifest, verifier)
    for problem in problems:
        print(f"BAD: {problem}")
    if problems:
        return 1
    print(
        f"{'OK' if held else 'UNVERIFIED'}: {manifest['record_count']} records, seq "
        f"{manifest['first_seq']}..{manifest['last_seq']}, chain and sha256 match the manifest; {how}"
    )
    return 0 if held else 1


# -- report -----------------------------------------------------------------------------------------


def _engine_in_force(settings: Settings, log: Any, now: datetime) -> Any:
    """The policy and grants in force now as the log records them (what the gateway serves); the
    files on disk only while no gateway has loaded a policy yet."""
    from civicmesh.cli.policy import policy_engine
    from policies.history import History, HistoryError, NotRecorded

    try:
        return History(log, log.engine).at(now).engine
    except NotRecorded:
        return policy_engine(settings)
    except HistoryError as exc:
        raise CommandError(f"the rights in force cannot be established: {exc}") from exc


def run_report(args: argparse.Namespace) -> int:
    from civicmesh.audit.report import build_report, render_json, render_text
    from civicmesh.cli.policy import load_products
    from policies.review import access_review

    if args.days < 1:
        raise CommandError("--days must be at least 1")
    settings = Settings.from_env()
    log = _plain_log(settings)
    products = load_products(settings, args.manifest)
    now = datetime.now(UTC)
    _complete_since(log, now - timedelta(days=args.days))
    review = access_review(_engine_in_force(settings, log, now), products, log, now=now, days=args.days)
    report = build_report(
        log,
        since=now - timedelta(days=args.days),
        review=review.as_dict(),
        pii_columns={p.name: p.pii_columns for p in products},
    )
    print(render_json(report) if args.format == "json" else render_text(report))
    return 0


# -- readers of derived data ------------------------------------------------------------------------


def _may_audit(settings: Settings, user: str, entries: dict[str, Any]) -> Callable[[str], bool]:
    """Whether `user` holds `audit` on a published product (the policy files and the store's grants)."""
    from civicmesh.cli.policy import policy_engine

    policy = policy_engine(settings)
    return lambda name: name in entries and policy.decide(user, entries[name].spec, "audit").allowed


def run_readers(args: argparse.Namespace) -> int:
    from lineage.outbox import Outbox
    from lineage.readers import UnknownDataset, load_graph, readers_from
    from meshcore.audit.archive import ArchivedPeriod
    from meshcore.catalog import Catalog
    from meshcore.store import get_engine

    if args.depth < 1:
        raise CommandError("--depth must be at least 1")
    settings = Settings.from_env()
    log = _plain_log(settings)
    engine = get_engine(settings.metadata_url)
    entries = {e.spec.name: e for e in Catalog(engine, settings.home).ensure_schema().entries()}
    graph = load_graph(Outbox(engine).ensure_schema())
    may_audit = _may_audit(settings, args.user, entries) if args.user else (lambda name: True)
    try:
        derived, readers = readers_from(
            graph, log, args.derived_from, args.since, args.until, args.depth, entries, may_audit
        )
    except ArchivedPeriod as exc:
        raise CommandError(str(exc)) from exc
    except UnknownDataset as exc:
        raise CommandError(
            f"lineage knows no dataset {args.derived_from!r}: name a product (department.product), "
            "a landing file or a warehouse table"
        ) from exc
    if args.format == "json":
        print(
            json.dumps(
                {
                    "derivedFrom": args.derived_from,
                    "products": derived,
                    "readers": [r.as_dict() for r in readers],
                },
                indent=2,
            )
        )
        return 0
    print(f"derived from {args.derived_from}: {', '.join(derived) or '(no products)'}")
    if not readers:
        print("  (no reads recorded)")
    for r in readers:
        masks = ", ".join(f"{c}={k}" for c, k in sorted(r.masks.items())) or "none"
        rows = (
            "; ".join(f"{f['column']} in {','.join(map(str, f['values']))}" for f in r.row_filters) or "all"
        )
        print(
            f"  {r.product:<36} {r.subject or '?':<10} {r.reads:>4} reads {r.rows:>7} rows  "
            f"{r.first} .. {r.last}  masked: {masks}  rows: {rows}"
        )
    return 0
