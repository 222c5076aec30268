"""A SipServer built from a YAML config the way ``app`` builds it, with its stack captured:
replies collect in a list and nothing leaves the process (for server-level unit tests)."""

from __future__ import annotations

from typing import Any

from app.settings import (
    build_dialplan,
    extensions_from_config,
    inbound_trunks_from_config,
    outbound_policy_from_config,
    outbound_trunks_from_config,
)
from config.loader import parse_config
from pbx.message import Response
from pbx.server import ServerSettings, SipServer
from pbx.stack import ListenSpec
from tests.unit.call_harness import FakeMedia


def server_from_config(text: str, send_request: Any = None) -> tuple[SipServer, list[Response]]:
    """The server for ``text`` and the list its responses go to. ``send_request`` replaces
    the stack's (default: swallow every request)."""
    cfg = parse_config(text, "test.yaml")
    server = SipServer(
        ServerSettings(listen=(ListenSpec("UDP", "127.0.0.1", 5060),)),
        extensions_from_config(cfg),
        media=FakeMedia(),
        dialplan=build_dialplan(cfg),
        inbound_trunks=inbound_trunks_from_config(cfg),
        outbound_trunks=outbound_trunks_from_config(cfg),
        outbound_policy=outbound_policy_from_config(cfg),
    )
    replies: list[Response] = []
    stack = server.stack
    stack.send_response = replies.append  # type: ignore[method-assign,assignment]
    stack.local_address = lambda transport="UDP": ("127.0.0.1", 5060)  # type: ignore[method-assign]
    stack.send_request = send_request or (lambda *a, **kw: "k")  # type: ignore[method-assign]
    return server, replies
