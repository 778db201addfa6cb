"""The structure the build enforces beside import-linter's layer contract (pyproject.toml):
no function-local import of the project's own modules, which would only hide a cycle.

Allowed: `AppConfig.ready` (Django's documented place for wiring apps together),
migrations (they run against historical models), management commands and the benchmarks in
`bench/` (entry points that must create their scratch database and call `django.setup()`
before any model can be imported).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("portal", "profiles", "pools", "services", "workspaces", "usage")
OURS = {*PACKAGES, "bench", "tests"}


def project_modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "migrations" in parts or "commands" in parts:
                continue
            yield path


def local_imports(path: Path) -> list[str]:
    """`file:line module` for each import of our own code inside a function body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if node.name == "ready" and path.name == "apps.py":
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom) and inner.module and inner.level == 0:
                names = [inner.module]
            elif isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] in OURS:
                    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                    found.append(f"{where}:{inner.lineno} {name}")
    return found


def test_the_checker_finds_a_function_local_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\n\ndef f():\n    from pools import tasks\n    return tasks\n")
    assert local_imports(sample) == [f"{sample}:5 pools"]


def test_no_function_local_imports_of_our_own_modules():
    found = [line for path in project_modules() for line in local_imports(path)]
    assert found == [], "import these at the top of the module: " + ", ".join(found)
