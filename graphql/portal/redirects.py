"""Where a browser may be sent after sign-in: a same-site relative path, nothing else.

OWASP Unvalidated Redirects and Forwards: a `next` parameter is attacker-controlled. Browsers read
`//host` and `/\\host` as another host, strip tabs and newlines before parsing (`/\\t/host`), and
follow any absolute URL, so only a path that starts with exactly one `/`, holds no backslash, no
control character or space, and parses with no scheme and no host is kept.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT = "/"
MAX_LENGTH = 2048


def safe_next(target: str | None, default: str = DEFAULT) -> str:
    """`target` if it is a same-site relative path (`/path?query#fragment`), else `default`."""
    if not target or len(target) > MAX_LENGTH:
        return default
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
