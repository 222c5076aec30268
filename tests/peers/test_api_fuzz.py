"""A schema fuzz of the HTTP API: Hypothesis builds requests from the server's own OpenAPI
document (right and wrong path parameters, query values and JSON bodies) and sends them to a
running Switchboard. No request may get a 500, and none without credentials may get data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.peers.switchboard import Switchboard

pytestmark = pytest.mark.peers

PUBLIC = {("get", "/api/health"), ("post", "/api/login"), ("get", "/metrics")}
STREAMS = {"/api/events"}  # endless responses: checked by test_api.py
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="/?#%"), max_size=24)


def _value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value that fits ``schema`` sometimes and does not other times."""
    kinds = {s.get("type") for s in schema.get("anyOf", [schema])}
    fitting: list[st.SearchStrategy[Any]] = [TEXT]
    if "integer" in kinds:
        fitting.append(st.integers(-5, 10**9))
    if "string" in kinds and schema.get("format") == "date-time":
        fitting.append(st.datetimes().map(lambda d: d.isoformat()))
    if "enum" in schema:
        fitting.append(st.sampled_from(schema["enum"]))
    return st.one_of(*fitting)


def _body(spec: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    content = spec.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return st.none()
    ref = content["schema"].get("$ref") or next(
        (s.get("$ref") for s in content["schema"].get("anyOf", []) if "$ref" in s), None
    )
    props: dict[str, Any] = components[ref.rsplit("/", 1)[1]]["properties"] if ref else {}
    fields = {name: st.one_of(_value(p), JSON_VALUES) for name, p in props.items()}
    return st.one_of(
        st.fixed_dictionaries({}, optional=fields),
        st.dictionaries(TEXT, JSON_VALUES, max_size=3),
        JSON_VALUES,
    )


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, spec)
        for path, item in doc["paths"].items()
        for method, spec in item.items()
        if path not in STREAMS
    ]


def test_fuzzed_requests_never_crash_and_never_leak(
    server_factory: Callable[..., Switchboard],
) -> None:
    sb = server_factory(
        extra_yaml="agents:\n  bob: {extensions: ['1002']}\nqueues:\n  support: {members: [bob]}\n"
    )
    doc = httpx.get(sb.api_url + "/api/openapi.json").json()
    components = doc["components"]["schemas"]
    ops = _operations(doc)
    assert len(ops) >= 30
    admin = {"Authorization": f"Bearer {sb.admin_token()}"}
    client = httpx.Client(base_url=sb.api_url, timeout=10.0)

    @st.composite
    def requests(draw: st.DrawFn) -> tuple[str, str, str, dict[str, Any], Any, bool]:
        method, template, spec = draw(st.sampled_from(ops))
        path, query = template, {}
        for param in spec.get("parameters", []):
            value = draw(_value(param.get("schema", {})))
            if param["in"] == "path":
                segment = quote(str(value), safe="") or "x"  # as any HTTP client sends it
                path = path.replace("{" + param["name"] + "}", segment)
            elif param["in"] == "query" and draw(st.booleans()):
                query[param["name"]] = value
        body = draw(_body(spec, components))
        return method, template, path, query, body, draw(st.booleans())

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(requests())
    def check(req: tuple[str, str, str, dict[str, Any], Any, bool]) -> None:
        method, template, path, query, body, authorised = req
        r = client.request(
            method.upper(),
            path,
            params=query,
            json=body,
            headers=admin if authorised else {},
        )
        assert r.status_code < 500, (method, path, query, body, r.status_code, r.text)
        if r.headers.get("content-type", "").startswith("application/json"):
            assert isinstance(r.json(), dict)
        if not authorised and (method, template) not in PUBLIC:
            assert r.status_code in (401, 404, 405, 422), (method, path, r.status_code, r.text)
            if r.status_code == 422:  # refused before authentication: no data either
                assert set(r.json()) == {"error"}

    with client:
        check()
    assert "Traceback" not in sb.log_text()
