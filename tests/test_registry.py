"""register_router / get_router_class: mistakes are ConfigErrors, a taken name is not replaced."""

from __future__ import annotations

import pytest

import lmroute
from lmroute import registry
from lmroute.exceptions import CheckpointError, ConfigError
from lmroute.routers.length import LengthRouter
from lmroute.routers.mf import MFRouter
from lmroute.routers.random import RandomRouter


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch):
    monkeypatch.setattr(registry, "_ROUTERS", dict(registry._ROUTERS))


def test_a_taken_name_is_not_silently_replaced():
    with pytest.raises(ConfigError, match="'mf' is already registered"):
        lmroute.register_router("mf", RandomRouter)
    with pytest.raises(ConfigError, match="already registered"):
        lmroute.register_router("length", "lmroute.routers.random:RandomRouter")
    assert lmroute.get_router_class("mf").name == "mf"
    # the same router again, as a class or as its import string, is fine
    lmroute.register_router("length", LengthRouter)
    lmroute.register_router("length", "lmroute.routers.length:LengthRouter")
    lmroute.register_router("short", LengthRouter)
    lmroute.register_router("short", LengthRouter)
    assert lmroute.get_router_class("short") is LengthRouter


@pytest.mark.parametrize(
    ("name", "target", "message"),
    [
        ("ints", int, "not a subclass of lmroute.Router"),
        ("obj", LengthRouter(), "not a subclass of lmroute.Router"),
        ("nocolon", "lmroute.routers.random", "not of the form 'module:Class'"),
        ("", LengthRouter, "non-empty string"),
        (None, LengthRouter, "non-empty string"),
    ],
)
def test_a_target_that_is_no_router_class_is_refused_when_registered(name, target, message):
    with pytest.raises(ConfigError, match=message):
        lmroute.register_router(name, target)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_x:Router", "cannot be imported: No module named 'no_such_module_x'"),
        ("lmroute.routers.random:Nope", "cannot be imported: .*no attribute 'Nope'"),
        ("lmroute.routers.random:RandomConfig", "not a Router class"),
    ],
)
def test_a_lazy_target_that_imports_no_router_is_a_config_error(target, message):
    lmroute.register_router("lazy", target)
    with pytest.raises(ConfigError, match=message):
        lmroute.get_router_class("lazy")
    with pytest.raises(ConfigError, match=message):
        lmroute.load_router("lazy")


class _KeptBaseName(lmroute.Router):
    """A router class that forgot to set ``name`` (it keeps the base's "router")."""


class _KeptMfName(MFRouter):
    """A subclass of mf that kept mf's ``name``."""


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (_KeptBaseName, "has name = 'router'.* would not load; set name = 'mine' in the class"),
        (_KeptMfName, "has name = 'mf'.* would load as lmroute.routers.mf:MFRouter"),
        (f"{__name__}:_KeptMfName", "would load as lmroute.routers.mf:MFRouter"),
    ],
)
def test_a_class_whose_own_name_would_load_something_else_is_refused(target, message):
    # A saved router records its class's name as its kind and is loaded back by it: registered
    # under another name, it saved what load_router then refused, or loaded as plain mf.
    with pytest.raises(ConfigError, match=message):
        lmroute.register_router("mine", target)
        lmroute.get_router_class("mine")
    # an alias of a class registered under its own name stays fine
    lmroute.register_router("short", LengthRouter)


@pytest.mark.parametrize("spec", [5, None, ["mf"]])
def test_load_router_of_something_that_names_no_router_is_a_config_error(spec):
    with pytest.raises(ConfigError, match="takes a router name or directory"):
        lmroute.load_router(spec)


def test_a_saved_directory_is_suggested_only_where_one_is_taken(tmp_path, capsys):
    from lmroute.cli import main
    from lmroute.exceptions import UnknownRouterError

    with pytest.raises(
        UnknownRouterError, match=r"known routers: .*mf.* \(or give the path of a saved router"
    ):
        lmroute.load_router("mff")
    # lmroute train and lmroute routers take a router kind: a directory was what the user gave.
    saved = LengthRouter().save(tmp_path / "saved")
    for argv in (["routers", str(saved)], ["train", str(saved), "--data", "gold:mt-bench", "--out", "x"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"unknown router '{saved}'" in err and "saved router directory" not in err, err


def test_an_empty_router_name_is_unknown_and_never_the_working_directory(tmp_path, monkeypatch, capsys):
    # Path("") is ".": an empty name (an unset shell variable) loaded a router saved in the working
    # directory, or else failed with " is not a router directory", naming nothing.
    from lmroute.cli import main
    from lmroute.exceptions import UnknownRouterError

    LengthRouter().save(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownRouterError, match=r"^unknown router ''; known routers: .*mf"):
        lmroute.load_router("")
    (tmp_path / "p.txt").write_text("hello\n")
    assert main(["score", "--router", "", "--input", "p.txt"]) == 1
    assert capsys.readouterr().err.startswith("lmroute: error: unknown router ''; known routers: ")


def test_the_base_class_load_points_to_load_router(tmp_path):
    """``lmroute.Router.load(dir)`` cannot know which router a directory holds; it said 'invalid options
    for router 'router': half_length: Extra inputs are not permitted' and now names load_router."""
    lmroute.load_router("length").save(tmp_path)
    with pytest.raises(CheckpointError, match=r"holds a 'length' router: load it with lmroute\.load_router"):
        lmroute.Router.load(tmp_path)
    with pytest.raises(CheckpointError, match="holds a 'length' router, not 'random'"):
        RandomRouter.load(tmp_path)
    assert isinstance(LengthRouter.load(tmp_path), LengthRouter)
