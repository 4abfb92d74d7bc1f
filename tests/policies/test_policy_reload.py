"""Safe reload: concurrent decisions never fail, a broken file keeps the last good policy."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from meshcore.products import ProductSpec
from meshcore.settings import Settings
from meshcore.store import get_engine
from policies.engine import PolicyEngine
from policies.grants import AccessRequests


def test_broken_files_keep_last_good(
    policy_dir: Path, make_engine: Callable[..., PolicyEngine], products: dict[str, ProductSpec]
) -> None:
    engine = make_engine(check_interval=None)
    good = engine.version
    sr = products["public_works.service_requests"]
    for name, broken in [
        ("policy.csv", "p, owner, public_works\n"),
        ("users.yaml", "users: [this is: not a mapping\n"),
        ("model.conf", "[matchers]\nm = eval(p.sub)\n"),
    ]:
        path = policy_dir / name
        original = path.read_text()
        path.write_text(broken)
        assert engine.refresh_if_changed() is False
        assert engine.last_error
        assert engine.version == good
        assert engine.decide("alice", sr, "read").allowed
        path.write_text(original)
    assert engine.refresh_if_changed(force=True) is True
    assert engine.last_error is None
    assert engine.version == good


def test_new_subject_in_broken_file_stays_denied(
    policy_dir: Path, make_engine: Callable[..., PolicyEngine], products: dict[str, ProductSpec]
) -> None:
    engine = make_engine(check_interval=None)
    users = policy_dir / "users.yaml"
    users.write_text(users.read_text() + "  zed:\n    email: not-an-email\n")
    assert engine.refresh_if_changed() is False
    assert not engine.decide("zed", products["environment.air_quality"], "read").allowed


def test_lazy_refresh_within_interval(
    policy_dir: Path, make_engine: Callable[..., PolicyEngine], products: dict[str, ProductSpec]
) -> None:
    engine = make_engine(check_interval=0.0)
    tc = products["transportation.collisions"]
    assert not engine.decide("mallory", tc, "export").allowed
    with (policy_dir / "policy.csv").open("a") as handle:
        handle.write("g, mallory, analyst, transportation\n")
    assert engine.decide("mallory", tc, "export").allowed  # no explicit refresh call


def test_concurrent_decisions_during_reloads(
    policy_dir: Path, make_engine: Callable[..., PolicyEngine], products: dict[str, ProductSpec]
) -> None:
    engine = make_engine(check_interval=None)
    path = policy_dir / "policy.csv"
    base = path.read_text()
    variants = [base, base + "g, mallory, analyst, transportation\n", base + "p, owner, x\n"]
    versions: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()
    specs = list(products.values())

    def worker() -> None:
        try:
            while not stop.is_set():
                for product in specs:
                    for user in ("alice", "bob", "dana", "mallory", "carol"):
                        decision = engine.decide(user, product, "read")
                        versions.add(decision.policy_version)
        except BaseException as exc:  # any exception at all fails the test
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for i in range(15):
            path.write_text(variants[i % 3])
            engine.refresh_if_changed()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
    assert len(versions) >= 2  # the threads really saw reloads happen


def test_decisions_are_cached_per_version(
    make_engine: Callable[..., PolicyEngine], products: dict[str, ProductSpec]
) -> None:
    engine = make_engine(check_interval=None)
    calls = 0
    original = engine._casbin

    def counting(*args: object) -> tuple[str, ...]:
        nonlocal calls
        calls += 1
        return original(*args)  # type: ignore[arg-type]

    engine._casbin = counting  # type: ignore[method-assign]
    sr = products["public_works.service_requests"]
    first = engine.decide("bob", sr, "read")
    after_first = calls
    for _ in range(100):
        assert engine.decide("bob", sr, "read") is first
    assert calls == after_first
    engine.refresh_if_changed(force=True)
    engine.decide("bob", sr, "read")
    assert calls > after_first


def test_broken_file_does_not_keep_a_revoked_grant_alive(
    policy_dir: Path,
    make_engine: Callable[..., PolicyEngine],
    settings: Settings,
    products: dict[str, ProductSpec],
) -> None:
    engine = make_engine(check_interval=None)
    store = AccessRequests(engine, get_engine(settings.metadata_url))
    employees = products["hr.employees"]
    request = store.request("mallory", employees, "read", "x", 3)
    store.approve(request.id, "frank")
    engine.refresh_if_changed()
    assert engine.decide("mallory", employees, "read").allowed
    (policy_dir / "policy.csv").write_text("p, broken\n")
    store.revoke(request.id, "frank")
    engine.refresh_if_changed()
    assert engine.last_error and "policy.csv" in engine.last_error
    assert not engine.decide("mallory", employees, "read").allowed
    assert engine.decide("frank", employees, "read").allowed  # last good policy still in force
