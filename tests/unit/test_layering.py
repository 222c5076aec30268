"""The layering of docs/architecture.md and DESIGN.md's layout table, checked on the source.

Dependencies point one way: ``cli`` → ``app`` → ``web`` → services (``acd``, ``ivr``,
``recorder``, ``crm``) → the call-control seam (``pbx.control``, ``pbx.events``) → ``pbx``
and ``media`` internals. Every ``.py`` file of a package is parsed with :mod:`ast`; every
import counts, wherever it stands (module level, inside a function, under
``TYPE_CHECKING``, or ``importlib.import_module("...")`` with a literal name). A failure names
the file, the line and the statement.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("acd", "ivr", "recorder", "crm", "web")
# What services may use of pbx: the seam, its events, and the dialplan's data (time
# conditions an IVR flow tests).
SEAM = ("pbx.control", "pbx.events", "pbx.dialplan")
PACKAGES = ("pbx", "media", *SERVICES, "app", "cli", "config")


@dataclass(frozen=True, slots=True)
class Rule:
    packages: tuple[str, ...]  # whose modules the rule applies to
    forbidden: tuple[str, ...]  # modules (and their submodules) they may not import
    allowed: tuple[str, ...]  # exceptions among the forbidden
    why: str


RULES = {
    "services-use-the-seam": Rule(
        SERVICES, ("pbx",), SEAM, "services drive calls only through the call-control seam"
    ),
    "services-leave-media-to-the-seam": Rule(
        SERVICES,
        ("media",),
        (),
        "services play, tap and record through the seam, never through the media engine",
    ),
    "crm-knows-no-sip-or-rtp": Rule(
        ("crm",), ("pbx", "media"), (), "the store imports nothing from pbx/ or media/"
    ),
    "cli-is-a-thin-front-end": Rule(
        ("cli",), ("pbx", "media"), (), "the CLI calls app/; it builds no part of the server"
    ),
    "cores-know-no-services": Rule(
        ("pbx", "media"),
        (*SERVICES, "app", "cli"),
        (),
        "pbx/ and media/ know nothing about queues, flows, the store or who composes them",
    ),
    "media-knows-no-sip": Rule(("media",), ("pbx",), (), "media/ knows nothing about SIP"),
    "services-are-below-the-composition-root": Rule(
        SERVICES, ("app", "cli"), (), "dependencies point one way: cli -> app -> services"
    ),
    "services-are-below-the-web-panel": Rule(
        ("acd", "ivr", "recorder", "crm"), ("web",), (), "web/ calls the services, not back"
    ),
}

# Imports that break a rule today, each with why it is tolerated for now. A fixed one must
# be removed from here (test_known_exceptions_are_still_needed says so).
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


@dataclass(frozen=True, slots=True)
class Import:
    path: str  # relative to the repository
    line: int
    module: str  # the module it imports, absolute (``pbx.b2bua``)
    statement: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.statement}"


def _is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _absolute(path: str, level: int, module: str | None) -> str:
    """The absolute name of a relative import's module in the file at ``path``."""
    package = Path(path).parent.parts
    if level > 1:
        package = package[: len(package) - (level - 1)]
    return ".".join([*package, *([module] if module else [])])


def imports_in(source: str, path: str) -> Iterator[Import]:
    """Every module the source imports. ``from m import n`` imports ``m.n`` when that is a
    module of this repository, else ``m``."""
    for node in _walk(source, path):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name, ast.unparse(node))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = _absolute(path, node.level, node.module)
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                target = sub if _is_module(sub) else module
                yield Import(path, node.lineno, target, ast.unparse(node))
        elif (
            isinstance(node, ast.Call)
            and _called_name(node.func) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(path, node.lineno, node.args[0].value, ast.unparse(node))


@functools.cache
def _walk(source: str, path: str) -> tuple[ast.AST, ...]:
    """Every node of the module (parsed once per test run)."""
    return tuple(ast.walk(ast.parse(source, path)))


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def modules_of(*packages: str) -> Iterator[tuple[str, str]]:
    """(path relative to the repository, source) of every .py file of the packages."""
    for package in packages:
        for file in sorted((ROOT / package).rglob("*.py")):
            yield file.relative_to(ROOT).as_posix(), file.read_text(encoding="utf-8")


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def breaches(rule: Rule, modules: Iterator[tuple[str, str]]) -> list[Import]:
    return [
        imp
        for path, source in modules
        for imp in imports_in(source, path)
        if _within(imp.module, rule.forbidden) and not _within(imp.module, rule.allowed)
    ]


def private_reads(source: str, path: str, own_names: set[str]) -> Iterator[tuple[int, str]]:
    """``x._name`` where ``x`` is not ``self``/``cls`` and no module of the reading package
    defines ``_name``: another package's private state. Also private names imported from
    another package."""
    package = Path(path).parts[0]
    for node in _walk(source, path):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr not in own_names:
                yield node.lineno, ast.unparse(node)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] != package
            and any(_private(alias.name) for alias in node.names)
        ):
            yield node.lineno, ast.unparse(node)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def names_defined(modules: Iterator[tuple[str, str]]) -> set[str]:
    """Every name a package's modules define: functions, classes, attributes assigned,
    variables, parameters, keyword arguments (dataclass fields, ``__slots__`` strings)."""
    names: set[str] = set()
    for path, source in modules:
        for node in _walk(source, path):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg | ast.keyword) and node.arg:
                names.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[0])
    return names


def reaches_into_the_server(source: str, path: str) -> Iterator[tuple[int, str]]:
    """``server.b2bua``, ``x.media``: holding the B2BUA or the media engine of a server."""
    for node in _walk(source, path):
        if isinstance(node, ast.Attribute) and node.attr in ("b2bua", "media"):
            yield node.lineno, ast.unparse(node)


# --- the rules on this repository ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(RULES))
def test_imports_follow_the_layering(name: str) -> None:
    rule = RULES[name]
    found = [
        imp
        for imp in breaches(rule, modules_of(*rule.packages))
        if (imp.path, imp.module) not in KNOWN_EXCEPTIONS
    ]
    assert not found, f"{rule.why}:\n" + "\n".join(f"  {imp}" for imp in found)


def test_known_exceptions_are_still_needed() -> None:
    found = {
        (imp.path, imp.module)
        for rule in RULES.values()
        for imp in breaches(rule, modules_of(*rule.packages))
    }
    fixed = KNOWN_EXCEPTIONS - found
    assert not fixed, f"no longer imported, remove from KNOWN_EXCEPTIONS: {sorted(fixed)}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_reads_another_packages_private_state(package: str) -> None:
    own = names_defined(modules_of(package))
    found = [
        f"  {path}:{line}: {text}"
        for path, source in modules_of(package)
        for line, text in private_reads(source, path, own)
    ]
    assert not found, "private state of another package (add a method or an event):\n" + (
        "\n".join(found)
    )


def test_services_hold_no_b2bua_or_media_engine() -> None:
    found = [
        f"  {path}:{line}: {text}"
        for path, source in modules_of(*SERVICES)
        for line, text in reaches_into_the_server(source, path)
    ]
    assert not found, "services use the call-control seam, not the server's parts:\n" + (
        "\n".join(found)
    )


def test_every_package_has_modules() -> None:
    """A renamed folder would make the rules above pass on nothing."""
    for package in PACKAGES:
        assert any(True for _ in modules_of(package)), package


# --- the checks catch what they forbid ----------------------------------------------------------

SERVICE_MODULE = """\
from __future__ import annotations
from typing import TYPE_CHECKING
from pbx.events import CallEnded
from pbx import control
if TYPE_CHECKING:
    from pbx.b2bua import Call
from ..media import engine

def late(server):
    import pbx.server
    importlib.import_module("media.workers")
    server.b2bua.on_side_up = print
    return server._b2b.media
"""


def test_the_import_checks_see_every_kind_of_import() -> None:
    rule = RULES["services-use-the-seam"]
    found = breaches(rule, iter([("acd/example.py", SERVICE_MODULE)]))
    assert [(i.line, i.module) for i in found] == [(6, "pbx.b2bua"), (10, "pbx.server")]
    assert str(found[0]) == "acd/example.py:6: from pbx.b2bua import Call"
    media = breaches(
        RULES["services-leave-media-to-the-seam"], iter([("acd/x.py", SERVICE_MODULE)])
    )
    assert [(i.line, i.module) for i in media] == [(7, "media.engine"), (11, "media.workers")]


def test_the_private_state_check_tells_own_names_from_others() -> None:
    own = names_defined(iter([("acd/a.py", "class A:\n    def _mine(self): ...\n")]))
    source = "def f(host, server):\n    host._mine()\n    return server._b2b\n"
    assert list(private_reads(source, "acd/b.py", own)) == [(3, "server._b2b")]
    imported = "from pbx.b2bua import _Side\nfrom acd.a import _helper\n"
    assert [line for line, _ in private_reads(imported, "acd/b.py", own)] == [1]


def test_the_server_parts_check_sees_attribute_chains() -> None:
    found = sorted(reaches_into_the_server(SERVICE_MODULE, "acd/example.py"))
    assert found == [(12, "server.b2bua"), (13, "server._b2b.media")]
