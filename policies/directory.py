"""The staff directory (users.yaml): users, their attributes, and what each role means."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from policies.names import GLOBAL_DOMAIN, PolicyError, check_name


@dataclass(frozen=True)
class User:
    name: str
    email: str
    display_name: str
    department: str | None
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    scope: tuple[str, ...] = ()  # attributes that scope this user directly (besides scoped roles)


@dataclass(frozen=True)
class RoleDef:
    name: str
    description: str = ""
    owns: bool = False  # owners approve requests and are never row-scoped in their department
    scope: tuple[str, ...] = ()  # user attributes that limit the rows holders see
    classification_reads: bool = True  # False: the built-in staff read rules do not apply


@dataclass(frozen=True)
class Directory:
    users: dict[str, User]
    roles: dict[str, RoleDef]
    scopes: dict[str, str]  # user attribute -> product scope column


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | int):
        value = [value]
    if not isinstance(value, list):
        raise PolicyError(f"{where}: expected a list of names")
    return tuple(check_name(where, str(v)) for v in value)


def _mapping(where: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where}: expected a mapping")
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML 1.2 forbids it; PyYAML
    keeps the last one: a second `dana:` below the one a reviewer read would silently win)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def parse_directory(text: str, source: str = "users.yaml") -> Directory:
    """Parse and validate users.yaml; raises PolicyError naming the file and key."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}  # a SafeLoader: no tags run code
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
    data = _mapping(source, data)
    unknown = set(data) - {"scopes", "roles", "users"}
    if unknown:
        raise PolicyError(f"{source}: unknown top-level keys {sorted(unknown)}")
    scopes = {
        check_name(f"{source}: scopes key", k): check_name(f"{source}: scopes.{k}", v)
        for k, v in _mapping(f"{source}: scopes", data.get("scopes")).items()
    }
    roles: dict[str, RoleDef] = {}
    for name, raw in _mapping(f"{source}: roles", data.get("roles")).items():
        where = f"{source}: roles.{name}"
        check_name(where, name)
        raw = _mapping(where, raw)
        scope = _strings(f"{where}.scope", raw.get("scope"))
        for attr in scope:
            if attr not in scopes:
                raise PolicyError(f"{where}.scope: {attr!r} is not declared under scopes")
        roles[name] = RoleDef(
            name=name,
            description=str(raw.get("description") or ""),
            owns=bool(raw.get("owns", False)),
            scope=scope,
            classification_reads=bool(raw.get("classification_reads", True)),
        )
    users: dict[str, User] = {}
    for name, raw in _mapping(f"{source}: users", data.get("users")).items():
        where = f"{source}: users.{name}"
        check_name(where, name)
        if name in roles or name == GLOBAL_DOMAIN:
            raise PolicyError(f"{where}: a user may not share its name with a role or domain")
        raw = _mapping(where, raw)
        email = str(raw.get("email") or "")
        if email.count("@") != 1 or not all(email.split("@")) or any(c in email for c in ",]\n "):
            raise PolicyError(f"{where}.email: {email!r} is not an email address")
        department = raw.get("department")
        if department is not None:
            check_name(f"{where}.department", department)
        attributes = {
            check_name(f"{where}.attributes key", k): _strings(f"{where}.attributes.{k}", v)
            for k, v in _mapping(f"{where}.attributes", raw.get("attributes")).items()
        }
        scope = _strings(f"{where}.scope", raw.get("scope"))
        for attr in scope:
            if attr not in scopes:
                raise PolicyError(f"{where}.scope: {attr!r} is not declared under scopes")
        users[name] = User(
            name=name,
            email=email,
            display_name=str(raw.get("display_name") or name),
            department=department,
            attributes=attributes,
            scope=scope,
        )
    return Directory(users=users, roles=roles, scopes=scopes)
