# The package's shape: its modules import each other relatively (never by bare name, never through a sys.path edit)
# and without a circle, so any module can be imported first and the import order never matters.
from __future__ import annotations

import ast
import os
import unittest

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def modules() -> dict[str, ast.Module]:
    """Module name -> syntax tree of every module of the package (not its tests)."""
    out: dict[str, ast.Module] = {}
    for name in sorted(os.listdir(PACKAGE_DIR)):
        if name.endswith(".py"):
            with open(os.path.join(PACKAGE_DIR, name)) as f:
                out[name[:-3]] = ast.parse(f.read(), name)
    return out


def sibling_imports(tree: ast.Module, siblings: set[str]) -> tuple[set[str], list[str]]:
    """(the siblings a module imports relatively, its imports of siblings by bare name)."""
    rel: set[str] = set()
    bare: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is None:
                rel.update(a.name for a in node.names if a.name in siblings)
            elif node.module.split(".")[0] in siblings:
                rel.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in siblings:
            bare.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Import):
            bare.extend(f"import {a.name}" for a in node.names if a.name.split(".")[0] in siblings)
    return rel, bare


class Package(unittest.TestCase):
    def test_imports_are_relative_and_nothing_edits_sys_path(self) -> None:
        mods = modules()
        for name, tree in mods.items():
            _, bare = sibling_imports(tree, set(mods) - {"__init__"})
            self.assertEqual(bare, [], f"{name}.py imports a sibling by bare name")
            edits = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "path"
                     and isinstance(n.value, ast.Name) and n.value.id == "sys"]
            self.assertEqual(edits, [], f"{name}.py uses sys.path")

    def test_no_import_circle(self) -> None:
        mods = modules()
        graph = {n: sibling_imports(t, set(mods))[0] for n, t in mods.items()}
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(n: str, path: list[str]) -> None:
            state[n] = 1
            for m in sorted(graph[n]):
                if state.get(m) == 1:
                    self.fail(f"import circle: {' -> '.join(path[path.index(m):] + [m])}")
                if m not in state:
                    visit(m, path + [m])
            state[n] = 2

        for n in sorted(graph):
            if n not in state:
                visit(n, [n])
        self.assertGreater(sum(len(v) for v in graph.values()), 20, "the reader sees the package's imports")

    def test_the_reader_sees_relative_and_bare_imports(self) -> None:
        a = ast.parse("from .b import x\n")
        b = ast.parse("from . import a\nimport os\n")
        self.assertEqual(sibling_imports(a, {"a", "b"})[0], {"b"})
        self.assertEqual(sibling_imports(b, {"a", "b"})[0], {"a"})
        self.assertEqual(sibling_imports(ast.parse("import b\nfrom a import y\n"), {"a", "b"})[1],
                         ["import b", "from a import ..."])


if __name__ == "__main__":
    unittest.main()
