"""Docstring examples: each ``>>>`` example passes, and every public name has one.

- Every docstring example written as a doctest (``>>>``) in any ``actornet``
  module, and in the modules of the ``examples.chatty`` package (not its lab),
  runs and prints what it says. Each docstring runs as its own test, as
  in a fresh interpreter: on the default node, and every node it used is
  stopped afterwards, so no node or process leaks into the next example.
  Examples that cannot run alone (they need a peer node) are plain indented
  code blocks, which doctest does not run.
- Every public name of ``actornet.__all__``, and every public method of its
  classes, has a docstring with an example, so the rule cannot silently erode.
  The node's entry points for the runtime (`actornet._process.NodeApi`), which
  applications do not call, are documented by that protocol instead; the list
  of them here is checked against it, so it cannot hide an application method.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import io
import pkgutil
import types
from collections.abc import Iterator
from typing import Any

import pytest

import actornet
import examples.chatty
from actornet import _runtime
from actornet._process import NodeApi
from actornet.node import LOCAL_NODE_NAME


def _modules() -> list[types.ModuleType]:
    names = ["actornet"] + [m.name for m in pkgutil.walk_packages(actornet.__path__, "actornet.")]
    names += [f"examples.chatty.{m.name}" for m in pkgutil.iter_modules(examples.chatty.__path__)
              if not m.ispkg]  # the lab, a package, is not the chat service
    return [importlib.import_module(name) for name in names if not name.endswith(".__main__")]


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found: dict[str, doctest.DocTest] = {}
    for module in _modules():
        for test in finder.find(module):
            # Only the module's own docstrings: re-exported names are found where defined.
            if test.examples and test.name.startswith(module.__name__):
                found.setdefault(test.name, test)
    return sorted(found.values(), key=lambda t: t.name)


DOCTESTS = _doctests()


@pytest.fixture
def fresh_default_node(node: actornet.Node) -> Iterator[set[int]]:
    """No test node: the example acts on the default node, as in a new interpreter.

    Yields the ids of the nodes running before; any node still running after
    the example is stopped, pass or fail.
    """
    node.stop()
    before = set(map(id, _runtime.running_nodes()))
    try:
        yield before
    finally:
        for other in _runtime.running_nodes():
            if id(other) not in before:
                other.stop(timeout=5.0)


def test_the_modules_have_doctests() -> None:
    names = {t.name.rsplit(".", 1)[0] for t in DOCTESTS}
    assert {"actornet.process", "actornet.gen_server", "actornet.supervisor",
            "actornet.node.Node", "actornet.errors", "actornet.aio", "actornet.aio.pg"} <= names
    assert {"examples.chatty.service", "examples.chatty.client",
            "examples.chatty.history.RoomState", "examples.chatty.storage"} <= names


@pytest.mark.parametrize("test", DOCTESTS, ids=lambda t: t.name)
def test_docstring_example_passes(test: doctest.DocTest, fresh_default_node: set[int]) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    out = io.StringIO()
    result = runner.run(test, out=out.write)
    assert result.failed == 0, f"{test.name} ({test.filename}:{test.lineno}):\n{out.getvalue()}"
    left = [n.name for n in _runtime.running_nodes()
            if id(n) not in fresh_default_node and n.name != LOCAL_NODE_NAME]
    assert not left, f"{test.name} left nodes running: {left}"


# -- every public name has an example ---------------------------------------------------

# pykka calls these by name on the GenServer class; they are not actornet's API.
PYKKA_HOOKS = {"on_start", "on_receive"}
RUNTIME_ENTRY_POINTS = {
    "deliver", "deliver_alias", "deliver_name", "demonitor_target", "drop_alias", "end_process",
    "local_process", "monitor_as", "new_alias", "new_process", "node_down", "node_up",
    "resolve", "route", "signal_demonitor", "signal_down", "signal_exit", "signal_link",
    "signal_monitor", "signal_unlink", "spawn_reply", "spawn_request",
}



def _has_example(obj: Any) -> bool:
    doc = inspect.getdoc(obj) or ""
    return "Example:" in doc or "Examples:" in doc


def _public_api() -> Iterator[tuple[str, Any]]:
    for name in actornet.__all__:
        obj = getattr(actornet, name)
        if isinstance(obj, types.ModuleType) or not callable(obj):
            continue  # submodules are checked by their own names; NOREPLY is a constant
        yield name, obj
        if not inspect.isclass(obj):
            continue
        for cls in obj.__mro__:
            if not cls.__module__.startswith("actornet"):
                continue  # pykka's and Python's own methods
            for attr, raw in vars(cls).items():
                if attr.startswith("_") or attr in PYKKA_HOOKS or (
                        obj is actornet.Node and attr in RUNTIME_ENTRY_POINTS):
                    continue
                if isinstance(raw, property) or callable(raw) or isinstance(
                        raw, (staticmethod, classmethod)):
                    yield f"{name}.{attr}", raw if isinstance(raw, property) else getattr(
                        obj, attr)


PUBLIC = dict(_public_api())


def test_the_public_api_is_covered() -> None:
    for name in ("spawn", "receive", "GenServer.start", "GenServer.handle_call",
                 "Supervisor.which_children", "Node.stop", "Node.port", "NoProc"):
        assert name in PUBLIC, name


def test_the_runtime_entry_points_left_out_are_the_nodes_and_documented_there() -> None:
    for name in RUNTIME_ENTRY_POINTS:
        assert name in vars(NodeApi), f"Node.{name} is not a runtime entry point"
        assert callable(getattr(actornet.Node, name))
        assert inspect.getdoc(getattr(actornet.Node, name)), f"Node.{name} says nothing"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_name_has_an_example(name: str) -> None:
    assert _has_example(PUBLIC[name]), f"actornet.{name}: the docstring needs an Example section"
