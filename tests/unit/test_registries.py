"""Open registries: built-ins one file each, plugins through entry points, duplicates and unknown names refused."""
from __future__ import annotations

import sys
import textwrap

import pytest

from transferlab.errors import UserError
from transferlab.registry import Registry, accepted_options, check_options


def _plugin_tree(root, group: str, plugin_body: str) -> None:
    """A package of built-ins and an installed plugin distribution whose entry point registers into it."""
    (root / "plugreg.py").write_text(f"from transferlab.registry import Registry\nREG = Registry('thing', 'plugpkg', '{group}')\n")
    (root / "plugpkg").mkdir()
    (root / "plugpkg" / "__init__.py").write_text("")
    (root / "plugpkg" / "builtin_a.py").write_text("from plugreg import REG\nREG.register('a', 1)\n")
    (root / "myplugin.py").write_text(textwrap.dedent(plugin_body))
    dist = root / "myplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\nthing = myplugin\n")


@pytest.fixture()
def on_path(tmp_path):
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in ("plugreg", "plugpkg", "plugpkg.builtin_a", "myplugin"):
        sys.modules.pop(name, None)


def test_a_plugin_entry_point_adds_an_entry(on_path):
    _plugin_tree(on_path, "transferlab_test.ok", "from plugreg import REG\nREG.register('b', 2)\n")
    import plugreg

    assert plugreg.REG.entries() == {"a": 1, "b": 2}


def test_a_plugin_that_reuses_a_builtin_name_fails_loudly(on_path):
    _plugin_tree(on_path, "transferlab_test.clash", "from plugreg import REG\nREG.register('a', 3)\n")
    import plugreg

    with pytest.raises(ValueError, match="'a' is already registered by"):
        plugreg.REG.entries()


def test_builtin_sources_refuse_a_duplicate_name():
    from transferlab.sources import DATA_SOURCES, MODEL_SOURCES

    for reg in (MODEL_SOURCES, DATA_SOURCES):
        with pytest.raises(ValueError, match="already registered"):
            reg.register("demo", lambda name: None)
    assert {"demo", "timm", "torchvision", "hf", "torch"} <= set(MODEL_SOURCES.names())
    assert {"demo", "images", "table", "text", "npz", "mnist", "usps"} <= set(DATA_SOURCES.names())


def test_unknown_names_and_options_get_the_closest_hint():
    from transferlab.measurements import MEASUREMENTS
    from transferlab.sources import load_data, load_model

    with pytest.raises(UserError, match="did you mean: timm"):
        load_model("tim:resnet18")
    with pytest.raises(UserError, match="no option 'label_colum'.*did you mean: label_col"):
        load_data("table:x.csv", label_colum="y")
    with pytest.raises(UserError, match="did you mean: profile"):
        MEASUREMENTS.get("profle")
    assert {"profile", "activations", "similarity", "inputs", "batchnorm"} <= set(MEASUREMENTS.names())


def test_accepted_options_follow_the_functions_options_go_on_to():
    def inner(path, size=1, *, mode="a", **rest):
        return None

    def loader(path, model=None, **options):
        return inner(path, **options)

    loader.options_of = (inner,)
    assert accepted_options(loader) == {"model", "size", "mode"}
    assert accepted_options(inner) is None  # ends in **rest and says nothing more: any option passes
    check_options("x", ["size"], {"size"})
    with pytest.raises(UserError, match="its options are: size"):
        check_options("x", ["sise"], {"size", "model"}, hidden=("model",))
    Registry("thing", "transferlab.sources.models", "transferlab_test.none")  # constructing loads nothing


def test_a_strategy_with_parameters_is_read_from_one_string():
    from transferlab.config import StudyConfig, parse_strategy, split_strategies

    assert split_strategies("scratch, truncate(n=2, tune=true),head(cut=each)") == [
        "scratch", "truncate(n=2, tune=true)", "head(cut=each)"]
    assert parse_strategy("truncate(n=2, tune=true)") == {"name": "truncate", "params": {"n": 2, "tune": True}}
    assert parse_strategy("linear_probe(cut=each, Cs=[0.1, 1])") == {
        "name": "linear_probe", "params": {"cut": "each", "Cs": [0.1, 1]}}
    assert parse_strategy(" head ") == {"name": "head"}
    config = StudyConfig(strategies=["scratch", "truncate(n=1)"])
    assert [s.get("params", {}) for s in config.strategies] == [{}, {"n": 1}]
