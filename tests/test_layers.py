"""The package's folders are its layers, and no layer imports one above it.

Read every module's imports with ``ast`` (nothing is imported to check) and hold
them to the rules in LAYERS: a package may import only the layers listed for it.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "smanager"
SERVICES = PACKAGE.parent / "services"

# What each part of the package may import from smanager, besides itself.
# service.py and config.py are the top of the tree as a reader meets it (the
# author's API and the settings), but they sit low in the layering: everything
# may use them, and they use only the wire.
LAYERS = {
    "wire": set(),
    "service": {"wire"},
    "config": {"wire"},
    "collector": set(),  # the author's side of a metrics collector, as service is of a service
    "auth": {"wire", "service", "config"},
    # engines the bundled services share (supervising programs): beside the
    # core, never reaching into it, so a service's commands stay its surface
    "supervise": {"wire", "service", "config"},
    # the monitor service's engine: collecting, storing, alerting, exporting
    # (an exec collector runs its program through supervise's runner)
    "metrics": {"wire", "service", "config", "supervise", "collector"},
    "core": {"wire", "service", "config", "auth"},
    "server": {"wire", "service", "config", "auth", "core"},
    "client": {"wire", "config", "auth.scram"},
    "tshell": {"wire", "config", "client"},
    "cli": {"wire", "service", "config", "auth", "core", "server", "client", "tshell",
            "supervise", "metrics"},  # check-config reads the bundled services' tables
}
# The package's face (__init__, __main__) may import what it presents.
ENTRY_POINTS = {"__init__": {"wire", "service", "collector", "core.commands", "auth.levels"},
                "__main__": {"cli"}}
BUNDLED_ENGINES = {"supervise", "metrics"}  # what bundled services may use beyond the face
NO_IO_IN = {"wire": {"asyncio", "socket", "ssl", "selectors", "threading", "subprocess"}}


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path):
    """Every module a file imports: absolute dotted names, relative ones resolved."""
    here = module_name(path).split(".")
    return imports_in(path.read_text(), here if path.name == "__init__.py" else here[:-1])


def imports_in(source, package):
    """The imports of SOURCE, a module of PACKAGE (a list of names)."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module == "smanager" and all(a.name.startswith("__") for a in node.names):
                continue  # the package's own facts (__version__), not its API
            found.append(module)
            # `from . import errors` imports a module too.
            found += [f"{module}.{alias.name}" for alias in node.names]
    return found


def smanager_imports(path):
    """The modules of smanager a file imports.  The package itself (``import
    smanager``, ``from .. import X``) counts as what its __init__ imports."""
    found = []
    for dotted in imports_of(path):
        if dotted == "smanager":
            found += [f"smanager.{part}" for part in ENTRY_POINTS["__init__"]]
        elif dotted.startswith("smanager.") and is_module(dotted):
            found.append(dotted)
    return found


def part_of(dotted):
    """smanager.core.runner -> "core"; smanager.service -> "service"."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def allowed(dotted, rules):
    inside = dotted.split(".", 1)[1] if "." in dotted else ""
    return any(inside == rule or inside.startswith(rule + ".") for rule in rules)


def is_module(dotted):
    target = PACKAGE.parent.joinpath(*dotted.split("."))
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer():
    unknown = [str(p.relative_to(PACKAGE)) for p in MODULES
               if part_of(module_name(p)) not in LAYERS
               and p.stem not in ENTRY_POINTS]
    assert unknown == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path):
    name = module_name(path)
    layer = part_of(name)
    if path.parent == PACKAGE and path.stem in ENTRY_POINTS:
        rules = ENTRY_POINTS[path.stem]
    else:
        rules = LAYERS[layer] | {layer}
    upward = [dotted for dotted in smanager_imports(path) if not allowed(dotted, rules)]
    assert upward == [], f"{name} may import only {sorted(rules)}"


@pytest.mark.parametrize("path", [p for p in MODULES if part_of(module_name(p)) in NO_IO_IN],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_wire_layer_does_no_io(path):
    banned = NO_IO_IN[part_of(module_name(path))]
    used = {dotted.split(".")[0] for dotted in imports_of(path)}
    assert used & banned == set()


def test_nothing_but_the_entry_point_imports_the_cli():
    importers = [module_name(p) for p in MODULES
                 if part_of(module_name(p)) != "cli" and p.stem != "__main__"
                 and any(part_of(d) == "cli" for d in imports_of(p) if d.startswith("smanager."))]
    assert importers == []


@pytest.mark.parametrize("path", sorted(SERVICES.glob("*.py")), ids=lambda p: p.name)
def test_bundled_services_use_only_the_public_api(path):
    reached_in = [dotted for dotted in imports_of(path)
                  if dotted.startswith("smanager.") and is_module(dotted)
                  and part_of(dotted) not in BUNDLED_ENGINES]
    assert reached_in == [], ("a service imports what `from smanager import ...` gives, "
                              "and the engines in smanager.supervise")


def test_the_rules_catch_an_upward_import():
    # The check itself must be able to fail: a wire module importing the core.
    found = imports_in("from ..core import runner\nimport asyncio\n", ["smanager", "wire"])
    assert "smanager.core.runner" in found and "asyncio" in found
    assert not allowed("smanager.core.runner", LAYERS["wire"] | {"wire"})
    # The package's face brings the core with it, however it is reached.
    assert "smanager" in imports_in("from .. import filtered\n", ["smanager", "wire"])


def test_the_clients_never_load_the_server():
    """At run time too: what tshell and the client library import stays clear of
    the server (the package's face loads only the author's API)."""
    probe = ("import sys, smanager.client, smanager.tshell.main; "
             "print(' '.join(m for m in sys.modules if m.startswith('smanager.server')))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=PACKAGE.parent,
                            capture_output=True, text=True, check=True, timeout=30)
    assert loaded.stdout.split() == []
