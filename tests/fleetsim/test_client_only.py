"""fleetsim is a client of the wire protocol: it knows the scheduler only over its sockets."""

import ast
from pathlib import Path

import fleetsim

APPS = ("dispatch", "nodes", "pools", "schedulerproj", "django", "channels")


def test_it_imports_none_of_the_apps_nor_django():
    for path in Path(fleetsim.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in APPS, f"{path.name} imports {name}"
