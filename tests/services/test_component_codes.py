"""No module outside a component's own class mentions a component code.

How a component runs, what it needs and how it is checked live in its class
(`services/components/<module>.py`); everything else asks the class. So a component's code
(e.g. the notebook server's) may appear only in the module that defines it: not in the
backends, the tasks, the pages, the templates, nor in another component's module (which
names a peer through its class). Migrations are history and tests are exempt.
"""

import re
from pathlib import Path

import pytest

from services import components

ROOT = Path(__file__).resolve().parent.parent.parent
COMPONENTS_DIR = ROOT / "services" / "components"
SUFFIXES = {".py", ".html", ".js", ".txt", ".css"}
SKIPPED_DIRS = {".venv", ".git", "node_modules", "tests", "migrations", "__pycache__", "var"}
CODES = sorted(components.COMPONENTS)
IMPORT_OF_A_COMPONENT = re.compile(r"^from services\.components\.\w+ import", re.MULTILINE)
# Words that are a component's code but mean something else where they appear.
HOMONYMS = {("services/components/ray.py", "gcs")}  # Ray's Global Control Store port


def mentions(text: str) -> set[str]:
    """The component codes `text` mentions, each as a whole word (`x-ray` is not `ray`)."""
    return {code for code in CODES if re.search(rf"(?<!\w){re.escape(code)}(?![\w-])", text)}


def source_files():
    for path in sorted(ROOT.rglob("*")):
        parts = set(path.relative_to(ROOT).parts)
        skipped = parts & SKIPPED_DIRS or any(part.endswith(".egg-info") for part in parts)
        if path.suffix in SUFFIXES and path.is_file() and not skipped:
            yield path


def own_codes(path: Path) -> set[str]:
    """The codes of the component classes a module of the catalog defines."""
    module = path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
    return {c.code for c in components.COMPONENTS.values() if type(c).__module__ == module}


def test_the_checker_finds_a_code_as_a_word_only():
    assert mentions('if ctx.code == "jupyterlab":') == {"jupyterlab"}
    assert mentions("url = f'http://{name}-minio:9000'") == {"minio"}
    assert mentions("from services.components.mlflow import PORT") == {"mlflow"}
    assert mentions("an array; JupyterLab; MLflow; feasts; ray-worker") == set()


def test_every_component_is_a_class_of_its_own_module():
    for found in components.COMPONENTS.values():
        module = type(found).__module__
        assert module.startswith("services.components."), found
        assert module != "services.components.base", found


def test_no_module_outside_a_components_class_mentions_its_code():
    found = []
    for path in source_files():
        allowed = own_codes(path) if path.is_relative_to(COMPONENTS_DIR) else set()
        where = path.relative_to(ROOT).as_posix()
        allowed |= {code for file, code in HOMONYMS if file == where}
        text = path.read_text(errors="replace")
        if path.is_relative_to(COMPONENTS_DIR):  # a peer is imported by its module's name
            text = IMPORT_OF_A_COMPONENT.sub("", text)
        stray = mentions(text) - allowed
        if stray:
            found.append(f"{path.relative_to(ROOT)}: {', '.join(sorted(stray))}")
    assert found == [], "ask the component's class instead: " + "; ".join(found)


@pytest.mark.parametrize("code", CODES)
def test_each_code_is_found_where_its_class_lives(code):
    """The checker can fail: each code is in the source, in its own module."""
    module = type(components.component(code)).__module__
    path = ROOT / (module.replace(".", "/") + ".py")
    assert code in mentions(path.read_text())
