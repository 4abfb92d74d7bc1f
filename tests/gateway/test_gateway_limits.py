"""Hostile-query defences: limits are codes, not crashes, and introspection is off outside demo mode."""

from __future__ import annotations

import pytest


def test_body_size_limit_is_413(server) -> None:
    response = server.post("{ me { user } }" + " " * 200_000, "alice")
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"


def test_depth_limit(server) -> None:
    deep = "{ products { columns { name } " + "myAccess { rowFilter { column } } " * 1 + "} }"
    assert "errors" not in server.gql(deep, "alice")
    nested = "query Deep { " + "publicWorks { " * 12 + "x" + " }" * 12 + " }"
    body = server.gql(nested, "alice")
    assert body["errors"][0]["extensions"]["code"] in {"LIMIT_EXCEEDED", "BAD_USER_INPUT"}


def test_alias_limit(server) -> None:
    query = "{ " + " ".join(f"a{i}: me {{ user }}" for i in range(40)) + " }"
    body = server.gql(query, "alice")
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"


def test_token_limit(server) -> None:
    query = "{ me { " + " ".join(["user"] * 3000) + " } }"
    body = server.gql(query, "alice")
    assert body["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"


def test_introspection_is_disabled_outside_demo_mode(server) -> None:
    body = server.gql("{ __schema { types { name } } }", "alice")
    assert body["data"] is None
    assert body["errors"]


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("get", {"params": {"query": "{ me { user } }"}}),
        (
            "post",
            {
                "content": "query={ me { user } }",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
        ),
    ],
)
def test_only_json_posts_are_executed(server, method: str, kwargs: dict) -> None:
    headers = {"Authorization": f"Bearer {server.token('alice')}", **kwargs.pop("headers", {})}
    response = getattr(server.client, method)("/graphql", headers=headers, **kwargs)
    assert response.status_code in {400, 404, 405}
    assert "alice" not in response.text


def test_batching_is_off(server) -> None:
    response = server.client.post(
        "/graphql",
        json=[{"query": "{ me { user } }"}, {"query": "{ me { user } }"}],
        headers={"Authorization": f"Bearer {server.token('alice')}"},
    )
    assert response.status_code == 400


def test_fragment_field_multiplication_is_limited(server) -> None:
    fragments = ["fragment F0 on Me { user email displayName department }"]
    for i in range(1, 12):
        fragments.append(f"fragment F{i} on Me {{ ...F{i - 1} ...F{i - 1} }}")
    query = "{ me { ...F11 } } " + " ".join(fragments)
    body = server.gql(query, "alice")
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
    small = "{ me { ...F2 } } " + " ".join(fragments[:3])
    assert server.gql(small, "alice")["data"]["me"]["user"] == "alice"
