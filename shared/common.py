"""Standard-library-only helpers the engine and the Graph simulator share (docs/decisions.md 18):
what a GUID looks like and what counts as loopback. Nothing here knows the engine or Graph."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

# A GUID (object id, SKU id) in its 8-4-4-4-12 hex form, either case; unanchored, for embedding
# in larger patterns. policy/licensing-policy.schema.json repeats it anchored (a test compares).
GUID = r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
# \Z, not $: in Python `$` also matches before a final newline, and an id with one is not an id.
GUID_RE = re.compile(rf"^{GUID}\Z")


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return bool(host) and is_loopback_host(host or "")
