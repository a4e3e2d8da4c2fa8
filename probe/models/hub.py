"""Whether the model hub answers, checked in seconds before anything asks it for files.

Context:
    ``from_pretrained`` and ``datasets.load_dataset`` retry an unreachable hub for about a
    minute before failing. :func:`hub_reachable` opens one TCP connection to the hub (or to the
    HTTPS proxy that would carry the request) with a short timeout, so a machine without a hub
    gets a clear error at once. With ``HF_HUB_OFFLINE`` set, callers skip the check and let the
    libraries read their local caches.
"""

from __future__ import annotations

import os
import socket
import urllib.request
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
CONNECT_TIMEOUT_S = 3.0
TRUE_VALUES = ("1", "true", "yes", "on")
DEFAULT_PORTS = {"https": 443, "http": 80}


def hub_endpoint() -> str:
    """The hub's URL: ``$HF_ENDPOINT`` or https://huggingface.co."""
    return os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT


def hub_host() -> str:
    """The hub's host name, for messages."""
    return urlsplit(hub_endpoint()).hostname or hub_endpoint()


def hub_offline(*variables: str) -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or one of ``variables``, e.g. ``HF_DATASETS_OFFLINE``) is set true."""
    return any(os.environ.get(name, "").strip().lower() in TRUE_VALUES for name in ("HF_HUB_OFFLINE", *variables))


def hub_reachable(timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub (or its HTTPS proxy) opens within ``timeout`` seconds."""
    url = urlsplit(hub_endpoint())
    address = proxy_address(url.scheme, url.hostname) or (url.hostname, url.port or DEFAULT_PORTS.get(url.scheme, 443))
    try:
        socket.create_connection(address, timeout=timeout).close()
    except (OSError, UnicodeError):
        return False
    return True


def proxy_address(scheme: str, host: str | None) -> tuple[str, int] | None:
    """``(host, port)`` of the proxy the environment sets for ``scheme`` requests to ``host``, if any."""
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or host is None or urllib.request.proxy_bypass(host):
        return None
    parsed = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return (parsed.hostname, parsed.port or DEFAULT_PORTS.get(parsed.scheme, 80)) if parsed.hostname else None
