"""The layers show in the folders: domain modules (everything in `sentinel_assets` outside
`defs/`, `cli/` and `definitions.py`) know nothing of Dagster, not even through the modules
they import. Each is imported alone in a fresh interpreter, and whatever Dagster distribution
ends up loaded (dagster, dagster_duckdb, dagster_shared, ...) is named."""

import ast
import importlib.util
import os
import pkgutil
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import sentinel_assets

pytestmark = pytest.mark.long(30)

DAGSTER_LAYERS = ("sentinel_assets.defs", "sentinel_assets.cli", "sentinel_assets.definitions")
# The dashboard's Streamlit script: a UI layer over domain modules. Streamlit lives in the
# dashboard's own environment, so it is checked from its source only (no Dagster either).
UI_LAYERS = ("sentinel_assets.dashboard.app",)
REPO = Path(__file__).resolve().parents[1]
LIST_DAGSTER_MODULES = """
import importlib, sys
importlib.import_module(sys.argv[1])
print(*sorted(m for m in sys.modules if m.partition(".")[0].startswith("dagster")))
"""


def in_dagster_layer(module: str) -> bool:
    return any(module == layer or module.startswith(f"{layer}.") for layer in DAGSTER_LAYERS)


def domain_modules() -> list[str]:
    """Every module and package of sentinel_assets outside the Dagster layers."""
    found = pkgutil.walk_packages(sentinel_assets.__path__, "sentinel_assets.")
    names = [sentinel_assets.__name__, *(module.name for module in found)]
    return sorted(name for name in names if not in_dagster_layer(name) and name not in UI_LAYERS)


def dagster_modules_loaded_by(module: str, pythonpath: Iterable[Path] = ()) -> list[str]:
    """The Dagster modules loaded by importing `module` alone in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [*pythonpath, REPO]))}
    done = subprocess.run(
        [sys.executable, "-c", LIST_DAGSTER_MODULES, module],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"importing {module} failed:\n{done.stderr[-2000:]}"
    return done.stdout.split()


def modules_importing_dagster(
    modules: Iterable[str], pythonpath: Iterable[Path] = ()
) -> dict[str, list[str]]:
    """Each of `modules` that loads Dagster, with the first Dagster modules it loads."""
    modules, pythonpath = list(modules), list(pythonpath)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        loaded = pool.map(lambda m: dagster_modules_loaded_by(m, pythonpath), modules)
        return {m: dagster[:3] for m, dagster in zip(modules, loaded, strict=True) if dagster}


def test_the_domain_is_every_module_outside_defs_cli_and_definitions():
    modules = domain_modules()
    for domain in ("contracts", "validation", "sanitize", "recovery", "paths", "refresh"):
        assert f"sentinel_assets.{domain}" in modules
    assert "sentinel_assets.sql" in modules
    assert not [m for m in modules if in_dagster_layer(m)], modules
    assert in_dagster_layer("sentinel_assets.cli.orchestrate")
    assert not in_dagster_layer("sentinel_assets.definitions_of_done")


def imports_of(module: str) -> set[str]:
    """The modules a module's source imports (absolute names), read from its syntax tree."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    package = module if spec.submodule_search_locations else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_no_domain_module_names_dagster_or_a_dagster_layer_in_its_imports():
    """The fast tier's version: every import statement of every domain module, and of the
    project modules those import in turn, is outside Dagster and the Dagster layers."""
    domain = set(domain_modules())
    for module in domain:
        reached, todo = set(), [module]
        while todo:
            for name in imports_of(todo.pop()):
                top = name.partition(".")[0]
                assert not top.startswith("dagster"), f"{module} imports {name}"
                assert not in_dagster_layer(name), f"{module} imports {name}"
                if name in domain and name not in reached:
                    reached.add(name)
                    todo.append(name)


def test_the_dashboard_ui_layer_names_no_dagster_in_its_imports():
    for module in UI_LAYERS:
        names = imports_of(module)
        assert "streamlit" in names
        for name in names:
            assert not name.partition(".")[0].startswith("dagster"), f"{module} imports {name}"
            assert not in_dagster_layer(name), f"{module} imports {name}"


@pytest.mark.slow
def test_no_domain_module_imports_dagster_even_indirectly():
    assert modules_importing_dagster(domain_modules()) == {}


@pytest.mark.slow
def test_the_check_sees_a_direct_and_an_indirect_dagster_import(tmp_path: Path):
    (tmp_path / "leaks_through_defs.py").write_text("from sentinel_assets.defs import partitions\n")
    (tmp_path / "plain.py").write_text("from sentinel_assets import paths\n")
    modules = ["sentinel_assets.cli.progress", "leaks_through_defs", "plain"]
    leaks = modules_importing_dagster(modules, pythonpath=[tmp_path])
    assert sorted(leaks) == ["leaks_through_defs", "sentinel_assets.cli.progress"]
    assert all("dagster" in loaded for loaded in leaks.values()), leaks
