"""Authentication through real HTTP: every bad token is a 401 for the whole request, and logged."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from meshcore.accesslog import AccessLog
from meshcore.store import get_engine

QUERY = "{ me { user } }"


def _claims(server, **overrides):
    now = int(time.time())
    claims = {
        "sub": "alice",
        "iss": server.settings.jwt_issuer,
        "aud": server.settings.jwt_audience,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs256(server, **overrides) -> str:
    return jwt.encode(_claims(server, **overrides), server.settings.jwt_secret, algorithm="HS256")


def _alg_none(server) -> str:
    import base64
    import json

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(_claims(server))}."


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda s: None, id="missing"),
        pytest.param(lambda s: "Bearer not-a-jwt", id="garbage"),
        pytest.param(lambda s: f"Basic {_hs256(s)}", id="wrong-scheme"),
        pytest.param(lambda s: f"Bearer {_hs256(s, exp=int(time.time()) - 3600)}", id="expired"),
        pytest.param(lambda s: f"Bearer {_hs256(s, exp=None)}", id="no-exp"),
        pytest.param(lambda s: f"Bearer {_hs256(s, aud='someone-else')}", id="wrong-audience"),
        pytest.param(lambda s: f"Bearer {_hs256(s, iss='evil')}", id="wrong-issuer"),
        pytest.param(lambda s: f"Bearer {_alg_none(s)}", id="alg-none"),
        pytest.param(
            lambda s: (
                "Bearer " + jwt.encode(_claims(s), "another-secret-of-enough-length-123", algorithm="HS256")
            ),
            id="wrong-secret",
        ),
    ],
)
def test_bad_tokens_get_401_unauthenticated_and_are_logged(server, make_header) -> None:
    log = AccessLog(get_engine(server.settings.metadata_url))
    before = log.head()
    header = make_header(server)
    headers = {"Authorization": header} if header else {}
    response = server.client.post("/graphql", json={"query": QUERY}, headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "Bearer" in response.headers["www-authenticate"]
    rows = list(log.rows(after_seq=before))
    assert len(rows) == 1
    assert rows[0]["status"] == 401 and rows[0]["error_code"] == "UNAUTHENTICATED"
    assert rows[0]["subject"] is None
    stored = " ".join(str(v) for v in rows[0].values())
    assert (header or "Bearer").split()[-1] not in stored or header is None  # never the token


def test_valid_token_is_accepted(server) -> None:
    body = server.gql(QUERY, "alice")
    assert body["data"]["me"]["user"] == "alice"


def test_rs256_tokens_from_a_configured_jwks_file(server, tmp_path, monkeypatch) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "idp-1", "use": "sig", "alg": "RS256"}]}))
    token = jwt.encode(_claims(server, sub="bob"), private, algorithm="RS256", headers={"kid": "idp-1"})
    headers = {"Authorization": f"Bearer {token}"}
    assert server.client.post("/graphql", json={"query": QUERY}, headers=headers).status_code == 401
    monkeypatch.setenv("CIVICMESH_JWKS_FILE", str(jwks))
    ok = server.client.post("/graphql", json={"query": QUERY}, headers=headers)
    assert ok.status_code == 200 and ok.json()["data"]["me"]["user"] == "bob"
    # the RSA public key must never work as an HMAC secret (algorithm confusion)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(_claims(server), other, algorithm="RS256", headers={"kid": "idp-1"})
    response = server.client.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401
