"""Fixtures for the policy tests: the 9 demo products built by hand, and engines over tmp copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from policy_specs import DEMO_PRODUCTS

from meshcore.accesslog import AccessLog
from meshcore.products import ProductSpec
from meshcore.settings import REPO_ROOT, Settings
from meshcore.store import dispose_all, get_engine
from policies.engine import PolicyEngine

POLICIES = REPO_ROOT / "policies"


@pytest.fixture
def products() -> dict[str, ProductSpec]:
    return DEMO_PRODUCTS


@pytest.fixture
def settings(tmp_path: Path, metadata_url: str) -> Settings:
    return Settings(home=tmp_path, metadata_url=metadata_url)


@pytest.fixture(autouse=True)
def _dispose_engines() -> object:
    yield
    dispose_all()


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A private, editable copy of the shipped policy files."""
    target = tmp_path / "policies"
    target.mkdir()
    for name in ("model.conf", "policy.csv", "users.yaml"):
        shutil.copy(POLICIES / name, target / name)
    return target


@pytest.fixture
def make_engine(policy_dir: Path, settings: Settings) -> Callable[..., PolicyEngine]:
    """Engines as a serving gateway makes them: loads, refusals and expiries go to the access log
    (unsigned here: the signing itself is tested in tests/civicmesh)."""

    def make(**kwargs: object) -> PolicyEngine:
        metadata = get_engine(settings.metadata_url)
        kwargs.setdefault("audit_log", AccessLog(metadata).ensure_schema())
        kwargs.setdefault("serving", True)
        return PolicyEngine(policy_dir, metadata, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def shipped_engine() -> PolicyEngine:
    """The shipped policy files, no runtime grants (read-only tests share it)."""
    return PolicyEngine.from_dir(POLICIES)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy_dir: Path) -> Settings:
    """A home for the CLI and the gateway (CIVICMESH_HOME), serving `policy_dir`, with the audit
    set-up at its defaults (signing key under secrets/, public key and sink under audit/)."""
    monkeypatch.setenv("CIVICMESH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CIVICMESH_POLICIES_DIR", str(policy_dir))
    for name in (
        "METADATA_URL",
        "AUDIT_SINK",
        "AUDIT_SIGNING_KEY_FILE",
        "AUDIT_PUBLIC_KEY_FILE",
        "AUDIT_KEY",
    ):
        monkeypatch.delenv(f"CIVICMESH_{name}", raising=False)
    settings = Settings.from_env()
    settings.ensure_dirs()
    return settings
