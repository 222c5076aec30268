"""A tiny HTTP/1.1 JSON client for IVR ``lookup`` webhooks (no new dependency).

Theory of operation: one request per connection (``Connection: close``), so the response
ends at EOF; ``Content-Length`` and ``chunked`` bodies are also understood (RFC 9112 §6, §7.1).
The whole exchange runs under one deadline (``asyncio.timeout``): a slow or silent server
costs the caller at most ``timeout`` seconds before the flow takes its fallback.

``POST`` sends the payload as a JSON object; ``GET`` sends it as query parameters. A 2xx
response must carry a JSON object, which is returned; 404 means "not found" (``None``);
anything else raises :class:`WebhookError`.

This is the only network code in ``ivr/``; hosts that prefer their own client pass another
``Webhook`` callable to :class:`ivr.engine.IvrSession`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

__all__ = ["MAX_RESPONSE_BYTES", "WebhookError", "http_json"]

MAX_RESPONSE_BYTES = 1 << 20


class WebhookError(Exception):
    """The webhook could not be reached or did not answer with a JSON object."""


async def http_json(
    url: str, method: str, payload: Mapping[str, Any], timeout: float
) -> dict[str, Any] | None:
    """Call ``url`` and return its JSON object, or ``None`` on 404.

    Raises :class:`WebhookError` (also on timeout).
    """
    try:
        async with asyncio.timeout(timeout):
            return await _exchange(url, method, payload)
    except TimeoutError:
        raise WebhookError(f"no answer from {url} within {timeout:g} s") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(f"{url}: {exc}") from None


async def _exchange(url: str, method: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"unsupported URL {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    target = parts.path or "/"
    body = b""
    if method == "GET":
        query = urlencode({k: str(v) for k, v in payload.items()})
        target += "?" + "&".join(q for q in (parts.query, query) if q)
    else:
        if parts.query:
            target += "?" + parts.query
        body = json.dumps(dict(payload)).encode()
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: {host_header}\r\nAccept: application/json\r\n"
        f"User-Agent: switchboard-ivr\r\nConnection: close\r\n"
    )
    if method != "GET":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    reader, writer = await asyncio.open_connection(
        parts.hostname, port, ssl=ssl.create_default_context() if tls else None
    )
    try:
        writer.write(head.encode("latin-1") + b"\r\n" + body)
        await writer.drain()
        raw = await reader.read(MAX_RESPONSE_BYTES + 1)
        data = bytearray(raw)
        while raw and len(data) <= MAX_RESPONSE_BYTES:
            raw = await reader.read(MAX_RESPONSE_BYTES + 1 - len(data))
            data += raw
    finally:
        writer.close()
    if len(data) > MAX_RESPONSE_BYTES:
        raise ValueError("response too large")
    return _parse_response(bytes(data))


def _parse_response(data: bytes) -> dict[str, Any] | None:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("truncated HTTP response")
    lines = head.decode("latin-1").split("\r\n")
    status_parts = lines[0].split(" ", 2)
    if len(status_parts) < 2 or not status_parts[0].startswith("HTTP/"):
        raise ValueError(f"bad status line {lines[0]!r}")
    status = int(status_parts[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    if status == 404:
        return None
    if not 200 <= status < 300:
        raise ValueError(f"HTTP status {status}")
    if not body.strip():
        return {}
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError("response is not a JSON object")
    return value


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            raise ValueError("truncated chunked body")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        body = rest[size + 2 :]
