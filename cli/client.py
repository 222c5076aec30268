"""A small synchronous client of the running server's HTTP API (docs/api.md), for the CLI.

Theory of operation
-------------------
:func:`locate` finds the server and the credential: the URL from ``SWITCHBOARD_URL``, else
``http.host``/``http.port`` of the config (``--config``, default ``var``; a wildcard host
such as ``0.0.0.0`` means this machine's loopback); the token from ``SWITCHBOARD_TOKEN``,
else ``<config folder>/admin.token``, which the server rewrites at every start.

:class:`ApiClient` sends one request per call and turns every failure into one
:class:`ApiError` carrying a single line for stderr and the exit code the CLI documents:

===  ===========================================================================
0    ok
1    the server refused (4xx other than 401/403): its ``{"error"}`` text
2    usage error, or no running server at the URL (connection refused)
3    not authorised (401, 403)
4    server error (5xx), or no answer in time
===  ===========================================================================

Nothing here knows what a call or an agent is: the commands in :mod:`cli.commands` name
paths and print what comes back.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAUTHORISED = 3
EXIT_SERVER = 4

URL_ENV = "SWITCHBOARD_URL"
TOKEN_ENV = "SWITCHBOARD_TOKEN"
TOKEN_FILE = "admin.token"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# The most the API hands out per page (docs/api.md): listings fetch all pages with it.
MAX_PER_PAGE = 500
TIMEOUT = 10.0
# Seconds a download may wait for its next bytes (a large export is built before it is sent).
DOWNLOAD_READ_TIMEOUT = 120.0

# Tests put an ``httpx.MockTransport`` here; None means the network.
transport: httpx.BaseTransport | None = None

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class ApiError(Exception):
    """A request that did not succeed: ``str(err)`` is the one line to show, ``exit_code``
    the CLI's exit status."""

    def __init__(self, message: str, exit_code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    """Where the server is and how to prove who we are."""

    url: str
    token: str | None
    token_source: str  # where the token came from (or was looked for), for error messages


def locate(config: Path, env: Mapping[str, str] | None = None) -> Target:
    """The server's URL and the token for ``config`` (a folder or a YAML file)."""
    env = os.environ if env is None else env
    from config import CONFIG_FILENAME, config_file_path

    config_file = config_file_path(config)
    if not config.exists() and config.suffix not in (".yaml", ".yml"):
        config_file = config / CONFIG_FILENAME  # a folder not made yet (the default var/)
    url = env.get(URL_ENV, "").strip().rstrip("/")
    if not url:
        host, port = http_address(config_file)
        url = f"http://{_bracket(host)}:{port}"
    token = env.get(TOKEN_ENV, "").strip() or None
    if token is not None:
        return Target(url, token, f"${TOKEN_ENV}")
    token_path = config_file.parent / TOKEN_FILE
    try:
        token = token_path.read_text().strip() or None
    except FileNotFoundError:
        token = None
    except OSError as exc:  # e.g. mode 0600 and another user: say so on a 401
        return Target(url, None, f"{token_path} ({exc.strerror or exc})")
    return Target(url, token, str(token_path))


def http_address(config_file: Path) -> tuple[str, int]:
    """``http.host`` and ``http.port`` of the config (the defaults when the file is missing
    or cannot be parsed; a config with problems elsewhere still gives its valid ``http:``)."""
    from config import check_config

    host, port = DEFAULT_HOST, DEFAULT_PORT
    if config_file.exists():
        # check_config keeps the valid sections of a config with problems elsewhere.
        cfg = check_config(config_file).config
        if cfg is not None:
            host, port = cfg.http.host, cfg.http.port
    return _WILDCARDS.get(host, host), port


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class ApiClient:
    """Requests to one server with one bearer token."""

    def __init__(
        self, target: Target, *, http_transport: httpx.BaseTransport | None = None
    ) -> None:
        self.target = target
        headers = {"Accept": "application/json", "User-Agent": "switchboard-cli"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        self._http = httpx.Client(
            base_url=target.url,
            headers=headers,
            timeout=TIMEOUT,
            transport=http_transport if http_transport is not None else transport,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- one request ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one request; return its JSON body (None when empty) or raise ApiError."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        with self._transport_errors():
            response = self._http.request(method, path, params=query, json=body)
        self._check(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"switchboard answered {method} {path} with something that is not JSON",
                EXIT_SERVER,
                response.status_code,
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self.request("POST", path, body=body)

    def put(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self.request("PUT", path, body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def items(self, path: str, *, limit: int | None = None, **params: Any) -> list[Any]:
        """Every item of a paged list (docs/api.md "Lists are paged"), or the first
        ``limit`` of them."""
        out: list[Any] = []
        # One page size throughout: pages are numbered by the size asked for.
        per_page = MAX_PER_PAGE if limit is None else max(1, min(MAX_PER_PAGE, limit))
        page = 1
        while True:
            body = self.get(path, page=page, per_page=per_page, **params)
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise ApiError(f"switchboard answered {path} without a list", EXIT_SERVER)
            batch: list[Any] = body["items"]
            out.extend(batch)
            total = body.get("total")
            if limit is not None and len(out) >= limit:
                return out[:limit]
            if len(batch) < per_page or (isinstance(total, int) and len(out) >= total):
                return out
            page += 1

    def download(
        self,
        path: str,
        write: Callable[[bytes], object],
        *,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Headers:
        """GET a file (audio, an export): its body is streamed to ``write`` chunk by chunk;
        returns the response headers. Errors as :meth:`request`; the body is only written
        for a successful answer."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        with (
            self._transport_errors("download from"),
            self._http.stream(
                "GET",
                path,
                params=query,
                headers={"Accept": "*/*"},
                timeout=httpx.Timeout(TIMEOUT, read=DOWNLOAD_READ_TIMEOUT),
            ) as response,
        ):
            if response.is_error:
                response.read()
                self._check(response)
            for chunk in response.iter_bytes():
                write(chunk)
            return response.headers

    def upload(
        self,
        path: str,
        content: bytes | Iterable[bytes],
        content_type: str,
        *,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """POST a file as the request body (``content`` may be an iterable of chunks, which
        are sent as they come: a progress bar can count them); the JSON answer, errors as
        :meth:`request`. The server may take long to answer (an import): the read timeout
        is that of a download."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        with self._transport_errors("upload to", waited=DOWNLOAD_READ_TIMEOUT):
            response = self._http.post(
                path,
                params=query,
                content=content,
                headers={"Content-Type": content_type},
                timeout=httpx.Timeout(TIMEOUT, read=DOWNLOAD_READ_TIMEOUT),
            )
        self._check(response)
        return response.json() if response.content else None

    def events(self, path: str = "/api/events") -> Iterator[dict[str, Any]]:
        """Server-Sent Events as JSON objects, until the server ends the stream."""
        with (
            self._transport_errors("event stream from"),
            self._http.stream(
                "GET",
                path,
                headers={"Accept": "text/event-stream"},
                timeout=httpx.Timeout(TIMEOUT, read=None),
            ) as response,
        ):
            if response.is_error:
                response.read()
                self._check(response)
            data: list[str] = []
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif not line and data:
                    text, data = "\n".join(data), []
                    try:
                        event = json.loads(text)
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        yield event

    def fetch_file(self, path: str, **params: Any) -> tuple[bytes, str]:
        """GET a file (a report as CSV, XLSX or PNG): its bytes and content type; failures
        as :meth:`request` raises them."""
        body = bytearray()
        headers = self.download(path, body.extend, params=params)
        return bytes(body), headers.get("content-type", "")

    # -- errors --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transport_errors(self, broke: str = "", waited: float = TIMEOUT) -> Iterator[None]:
        """httpx's transport failures as one-line ApiErrors: not running, no answer within
        ``waited`` seconds, or ``<broke> <url> broke: …`` (``<url>: …`` without ``broke``)."""
        try:
            yield
        except httpx.ConnectError:
            raise self._not_running() from None
        except httpx.TimeoutException:
            raise ApiError(
                f"switchboard at {self.target.url} did not answer within {waited:g} s",
                EXIT_SERVER,
            ) from None
        except httpx.HTTPError as exc:
            where = f"{broke} {self.target.url} broke" if broke else self.target.url
            raise ApiError(f"{where}: {exc}", EXIT_SERVER) from None

    def _not_running(self) -> ApiError:
        return ApiError(
            f"no running switchboard at {self.target.url} (start it with switchboard serve)",
            EXIT_USAGE,
        )

    def _check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        text = _error_text(response)
        if status in (401, 403):
            if status == 401 and not self.target.token:
                text = f"no token: {self.target.token_source} is missing, empty or unreadable"
            elif status == 401:
                text = f"{text} (token from {self.target.token_source})"
            raise ApiError(f"not authorised: {text}", EXIT_UNAUTHORISED, status)
        if status >= 500:
            raise ApiError(f"server error {status}: {text}", EXIT_SERVER, status)
        raise ApiError(text, EXIT_REFUSED, status)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]:
        text: str = body["error"]
    else:
        text = response.reason_phrase or f"HTTP {response.status_code}"
    return " ".join(text.split())  # one line, whatever the server sent
