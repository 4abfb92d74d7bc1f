"""The staff data portal: server-rendered pages beside the gateway (Starlette + Jinja2).

`create_portal_routes(settings)` returns the routes the gateway app mounts at `/`: sign-in (OpenID
Connect with PKCE, or a persona picker in demo mode), the pages, the DCAT-AP catalog, the district
boundaries and the pinned front-end files. Pages read data through the gateway's governed
operations with the signed-in user's identity; this package never opens a snapshot itself.
"""
