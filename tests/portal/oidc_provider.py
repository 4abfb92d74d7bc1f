"""A small, real OpenID provider for the portal's sign-in tests, run as its own process.

Authlib's server components on Flask: OpenID Connect Discovery 1.0, the authorization-code grant
with PKCE required on every request (RFC 7636, S256 only), ID tokens signed RS256 with a key made
at start-up and published as a JWKS. One confidential client (client_secret_basic, exact redirect URI).

The /authorize page is a login form: `username` becomes the ID token's `sub`. For the refusal
tests the form also takes `tamper` = `aud` (ID token for another audience) or `iss` (another
issuer): the provider misbehaves on purpose and the portal must refuse the result.

    python tests/portal/oidc_provider.py --port 9400 --client-id portal --client-secret s3cret \
        --redirect-uri http://127.0.0.1:8000/auth/callback
"""

from __future__ import annotations

import argparse
import html
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import run_simple

KEY = RSAKey.generate_key(2048, parameters={"kid": "portal-test-key", "use": "sig", "alg": "RS256"})


@dataclass(frozen=True)
class User:
    sub: str
    tamper: str = ""

    def get_user_id(self) -> str:
        return self.sub


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str
    redirect_uri: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in {"openid", "profile", "email"})

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


CODES: dict[str, Code] = {}


class RequiredS256(CodeChallenge):
    """PKCE for every client, confidential ones too (Authlib's `required` covers public clients only)."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE with code_challenge_method=S256 is required")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic"]

    def save_authorization_code(self, code: str, req: Any) -> None:
        data = req.payload.data
        CODES[code] = Code(
            code=code,
            client_id=req.client.client_id,
            redirect_uri=data.get("redirect_uri", ""),
            scope=req.payload.scope,
            user=req.user,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
        )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        found = CODES.get(code)
        return found if found and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        CODES.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: Code) -> User:
        return authorization_code.user


class SignedIdToken(OpenIDCode):
    def __init__(self, issuer: str) -> None:
        super().__init__(require_nonce=True)
        self.issuer = issuer

    def exists_nonce(self, nonce: str, req: Any) -> bool:
        return any(c.nonce == nonce for c in CODES.values())

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return KEY

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": KEY.kid or ""}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.issuer, "aud": [client.client_id], "exp": int(time.time()) + 600}

    def get_compatible_claims(self, req: Any) -> dict[str, Any]:
        claims = super().get_compatible_claims(req)
        if req.user.tamper == "aud":  # issued to another client, naming us as authorized party
            claims.update(aud=["some-other-client"], azp=req.client.client_id)
        elif req.user.tamper == "iss":
            claims["iss"] = "http://issuer.invalid"
        return claims

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return UserInfo(
            sub=user.sub, name=f"{user.sub} (from the provider)", email=f"{user.sub}@city.example"
        )


def create_app(issuer: str, client: Client) -> Flask:
    app = Flask(__name__)
    server = AuthorizationServer(
        app,
        query_client=lambda cid: client if cid == client.client_id else None,
        save_token=lambda token, req: None,
    )
    server.register_grant(AuthorizationCodeGrant, [RequiredS256(required=True), SignedIdToken(issuer)])

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Any:
        return jsonify(
            issuer=issuer,
            authorization_endpoint=f"{issuer}/authorize",
            token_endpoint=f"{issuer}/token",
            jwks_uri=f"{issuer}/jwks",
            response_types_supported=["code"],
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=["RS256"],
            code_challenge_methods_supported=["S256"],
            token_endpoint_auth_methods_supported=["client_secret_basic"],
            scopes_supported=["openid", "profile", "email"],
        )

    @app.get("/jwks")
    def jwks() -> Any:
        return jsonify(keys=[KEY.as_dict(private=False)])

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize() -> Any:
        try:
            server.get_consent_grant(end_user=None)
        except OAuth2Error as exc:
            return jsonify(error=exc.error, error_description=exc.description), 400
        if request.method == "GET":
            action = html.escape(request.full_path)
            return (
                f"<!doctype html><title>Test provider</title><form method=post action='{action}'>"
                "<label>User <input name=username></label><input type=hidden name=tamper value=''>"
                "<button>Sign in</button></form>"
            )
        user = User(request.form["username"], request.form.get("tamper", ""))
        return server.create_authorization_response(grant_user=user)

    @app.post("/token")
    def token() -> Any:
        return server.create_token_response()

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--port", "--client-id", "--client-secret", "--redirect-uri"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    issuer = f"http://127.0.0.1:{args.port}"
    app = create_app(issuer, Client(args.client_id, args.client_secret, args.redirect_uri))
    run_simple("127.0.0.1", int(args.port), app, threaded=True)


if __name__ == "__main__":
    main()
