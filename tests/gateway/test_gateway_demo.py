"""Demo mode: GraphiQL and introspection are on; data still needs a token. Runs the real app
in-process (httpx ASGI transport), the way `civicmesh query` does."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx

from civicmesh.asgi import create_app
from gateway.auth import issue_token


async def _calls(settings) -> list[httpx.Response]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            ide = await client.get("/graphql", headers={"accept": "text/html"})
            anonymous = await client.post("/graphql", json={"query": "{ __schema { queryType { name } } }"})
            token = issue_token(settings, "bob", 1)
            introspection = await client.post(
                "/graphql",
                json={"query": "{ __schema { queryType { name } } }"},
                headers={"Authorization": f"Bearer {token}"},
            )
            return [ide, anonymous, introspection]


def test_demo_mode_serves_graphiql_and_introspection(gw_settings) -> None:
    demo = dataclasses.replace(gw_settings, demo_mode=True)
    ide, anonymous, introspection = asyncio.run(_calls(demo))
    assert ide.status_code == 200 and "graphiql" in ide.text.lower()
    assert anonymous.status_code == 401
    assert introspection.json()["data"]["__schema"]["queryType"]["name"] == "Query"
