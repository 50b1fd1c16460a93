"""`import pets` and `import pets.api` stay light; every public name still resolves."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pets
import pets.api
import pets.registry
import pets.runner
import pets.runtime.context
import pets.scenarios
import pets.tasks
import pets.wire

HEAVY = ("pandas", "pyarrow", "sklearn", "scipy", "pets.runner")


def _fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter with this test's import path; return stdout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_importing_pets_and_its_api_loads_no_heavy_module():
    code = f"import pets, pets.api, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    assert _fresh(code).strip() == "[]"


def test_lazy_names_import_their_module_on_first_use():
    code = (
        "import json, sys\n"
        "import pets\n"
        "before = 'pets.runner' in sys.modules\n"
        "from pets import run\n"
        "import pets.runner\n"
        "from pets.api import Task\n"
        "import pets.tasks\n"
        "print(json.dumps([before, 'pets.runner' in sys.modules, run is pets.runner.run,\n"
        "                  pets.run is run, Task is pets.tasks.Task]))\n"
    )
    before, after, same, attribute, task = json.loads(_fresh(code))
    assert not before and after and same and attribute and task


def test_every_public_name_is_the_defining_modules_object():
    for name in pets.__all__:
        assert hasattr(pets, name), name
    for name in pets.api.__all__:
        assert hasattr(pets.api, name), name
    assert pets.run is pets.runner.run
    assert pets.load_scenario is pets.scenarios.load_scenario
    assert pets.Scenario is pets.scenarios.Scenario
    assert pets.Registry is pets.registry.Registry
    for module in (pets.tasks, pets.wire, pets.runtime.context):
        shared = set(module.__all__) & set(pets.api.__all__)
        assert shared
        for name in shared:
            assert getattr(pets.api, name) is getattr(module, name), name
    assert set(pets.__all__) <= set(dir(pets))
    assert set(pets.api.__all__) <= set(dir(pets.api))
    names: dict[str, object] = {}
    exec("from pets.api import *", names)
    assert set(names) - {"__builtins__"} == set(pets.api.__all__)


def test_an_unknown_name_is_still_an_attribute_error():
    for module in (pets, pets.api):
        assert not hasattr(module, "no_such_name")
