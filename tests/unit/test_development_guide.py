"""docs/development.md keeps up with the checkout: what it links, names and tells to run exists.

Whether its commands succeed is not checked here (they run the test suite, the benchmarks and the local
stack); this catches a guide naming a file, module, target, test or function that has gone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchbridge_local import template as tpl

ROOT = Path(__file__).resolve().parents[2]
GUIDE_PATH = ROOT / "docs" / "development.md"
GUIDE = GUIDE_PATH.read_text()
PACKAGE = ROOT / "layers" / "shared" / "batchbridge"
TOP = ("layers", "local", "client", "functions", "tests", "statemachine", "events", "schemas", "benchmarks")
COMMANDS = "\n".join(re.findall(r"```bash\n(.*?)```", GUIDE, flags=re.S))


def test_the_readme_links_the_guide():
    assert "(docs/development.md)" in (ROOT / "README.md").read_text()


def test_every_link_resolves():
    links = re.findall(r"\]\(([^)#]+)\)", GUIDE)
    assert links
    for link in links:
        assert (GUIDE_PATH.parent / link).exists(), link


def test_every_path_it_names_exists():
    named = [p.rstrip("/") for p in re.findall(r"`([\w./-]+)`", GUIDE) if p.split("/")[0] in TOP]
    named += re.findall(r"\s((?:events|tests)/[\w/]+\.(?:json|py))", COMMANDS)
    assert len(named) > 10
    for path in named:
        assert (ROOT / path).exists(), path


def test_every_module_of_the_package_it_names_exists():
    (table,) = re.findall(r"The package, by what it does:\n(.*?)\n## ", GUIDE, flags=re.S)
    modules = set(re.findall(r"`(\w+)\.py`", table)) | set(re.findall(r"`(\w+)/`", table))
    assert {"api", "tasks", "repository", "providers", "objects"} <= modules
    for module in modules:
        assert any(PACKAGE.rglob(f"{module}.py")) or (PACKAGE / module).is_dir(), module


def test_every_task_and_adapter_it_names_exists():
    for name in re.findall(r"tasks\.(\w+)", GUIDE):
        assert (PACKAGE / "tasks" / f"{name}.py").exists(), name
    for name in ("ivvy", "willsuite", "superoffice", "os1"):
        assert (PACKAGE / "providers" / f"{name}.py").exists()


def test_every_make_target_it_runs_is_a_target():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    used = set(re.findall(r"^make ([a-z-]+)", COMMANDS, flags=re.M))
    used |= set(re.findall(r"`make ([a-z-]+)", GUIDE))
    assert {"setup", "test", "bench-smoke"} <= used
    assert used <= targets, used - targets


def test_every_test_it_runs_exists():
    for path, name in re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", COMMANDS):
        assert (ROOT / path).exists(), path
        if name:
            assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), flags=re.M), name


@pytest.mark.parametrize("function", re.findall(r"batchbridge local invoke (\w+) ", COMMANDS))
def test_every_function_it_invokes_is_a_function_of_the_template(function):
    from batchbridge_local.invoke import event_folders

    folders = event_folders(tpl.load(ROOT / "template.yaml"))
    assert function in folders or function in folders.values()


def test_the_workflow_states_it_names_are_the_definitions():
    states = set((ROOT / "statemachine" / "batch.asl.json").read_text().split('"'))
    (drawing,) = re.findall(r"```\n(Cancel Requested.*?)```", GUIDE, flags=re.S)
    named = {s.strip() for s in re.split(r"->|\(|\)|,|looped by|\bor\b|\n", drawing)}
    named = {s for s in named if s and s[0].isupper() and "DynamoDB" not in s and "SNS" not in s}
    assert len(named) >= 10
    assert named <= states, named - states
