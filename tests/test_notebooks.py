"""The workshop notebooks run top to bottom in a real Jupyter kernel.

Each notebook is executed by nbclient in the ``python3`` kernel of the interpreter that
runs the tests, with its run folders under ``tmp_path``. Every notebook ends its main
section with an assertion cell that checks the figure it shows (lines, points, marks),
so a silently empty chart fails here. The notebooks are stored without outputs.

The default suite runs each notebook with fewer backends and knob values (``ROOM_LIGHT``:
the same cells, charts and assertions, on runs without the long DP audits); the
notebooks exactly as shipped run under ``-m slow``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
SCENARIO_IDS = sorted(p.stem for p in (NOTEBOOKS.parent / "scenarios").glob("*.toml"))


def _parameters_cell(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "one cell tagged 'parameters' holds every knob"
    return tagged[0]


def execute(name: str, out: Path, *, after: str = "", **overrides: object) -> nbformat.NotebookNode:
    """Execute notebook ``name`` with ``OUT`` (and ``overrides``) set after its
    parameters cell, as papermill injects parameters, and the code ``after`` in a last
    cell; return the executed notebook."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    index = notebook.cells.index(_parameters_cell(notebook))
    assignments = {"OUT": str(out), **overrides}
    injected = nbformat.v4.new_code_cell(
        "\n".join(f"{k} = {v!r}" for k, v in assignments.items())
        + f"\nimport sys\nassert sys.executable == {sys.executable!r}, sys.executable"
    )
    notebook.cells.insert(index + 1, injected)
    if after:
        notebook.cells.append(nbformat.v4.new_code_cell(after))
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    return notebook


def _workshop():
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import workshop
    finally:
        sys.path.remove(str(NOTEBOOKS))
    return workshop


def test_party_views_hold_no_identifiers():
    # the notebooks' look at each party's data: counts and summaries, no identifier
    from pets.data import IDENTIFIERS
    from pets.scenarios import build_problem, load_scenario

    workshop = _workshop()
    problem = build_problem(load_scenario("trial_recruitment_linkage"), 4000, seed=0)
    held = workshop.holdings(problem)
    assert set(held["party"]) == {"cancer_registry", "gp_federation"}
    assert (held["patients"] > 0).all()
    text = held.to_csv() + "".join(
        workshop.party_summary(data).to_csv() for data in problem.party_data.values()
    )
    for data in problem.party_data.values():
        assert not set(IDENTIFIERS) & set(workshop.party_summary(data).index)
        assert not any(str(n) in text for n in data["nhs_number"])


def test_every_card_has_a_notebook():
    assert set(SCENARIO_IDS) <= set(NAMES)
    assert {"00_welcome", "bring_your_own_backend", "reading_the_report"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    _parameters_cell(notebook)
    # one assertion cell checks what a figure shows
    assert any("assert" in c.source and ("chart" in c.source or "figure" in c.source) for c in code)
    # the public API only: no private module of pets is imported
    assert not any("pets._" in c.source or "import _" in c.source for c in code)


#: Presses the room's Run button on a value the notebook has not run: the widget's
#: callback runs it into the notebook's run folder and redraws the chart.
PRESS_RUN = """
room = workshop.knob_widget(
    SCENARIO, SWEEP_BACKENDS, KNOB, [5.0], params=SWEEP_FIXED, out=run_dir, quick=True,
    leakage="off", jobs=JOBS, cost=COST,
)
room.children[0].children[1].click()
from pets.report import load_run

pressed = load_run(run_dir).frame
pressed = pressed[pressed["backend"].isin(SWEEP_BACKENDS) & (pressed["status"] == "ok")]
assert 5.0 not in KNOB_VALUES
assert any(json.loads(p).get(KNOB) == 5.0 for p in pressed["params"]), pressed["params"]
redrawn = workshop.knob_figure(pressed, KNOB, cost=COST)  # as the callback draws it
for ax in redrawn.axes:
    assert [len(line.get_xdata()) for line in ax.lines] == [len(KNOB_VALUES) + 1]
"""


@pytest.fixture(scope="module")
def room_out(tmp_path_factory):
    """One folder of run folders for every notebook, as a workshop machine has
    (``results/notebooks``): the welcome's run of its card is the card notebook's."""
    return tmp_path_factory.mktemp("room") / "results"


@pytest.fixture(scope="module")
def shipped_room(tmp_path_factory):
    """The room of the notebooks run as shipped (apart from the light runs' room)."""
    return tmp_path_factory.mktemp("shipped-room") / "results"


#: Each notebook's parameters for the default suite: a few backends of different kinds
#: and two knob values, leaving out the backends whose fast DP audits take 20-60 s a cell
#: (``-m slow`` runs the notebooks as shipped). The welcome and the prevalence notebook
#: share their backends, so the second reuses the first's runs as in a workshop.
ROOM_LIGHT: dict[str, dict[str, object]] = {
    "00_welcome": {"BACKENDS": ["plaintext", "sdc-suppress", "tenseal-ckks"], "FIXED": None},
    "multi_site_prevalence": {
        "BACKENDS": ["plaintext", "sdc-suppress", "tenseal-ckks"],
        "FIXED": None,
        "KNOB": "threshold",
        "KNOB_VALUES": [5, 20],
        "SWEEP_BACKENDS": ["sdc-suppress"],
        "WIDGET_VALUES": [5, 10, 20],
    },
    "breast_cancer_model": {
        "BACKENDS": ["plaintext", "diffprivlib", "fedavg"],
        "KNOB_VALUES": [0.1, 1.0],
    },
    "encrypted_supplier_inference": {
        "BACKENDS": ["plaintext", "tenseal-bfv"],
        "KNOB_VALUES": [1024, 2048],
    },
    "federated_risk_model": {
        "BACKENDS": ["plaintext", "fedavg", "diffprivlib"],
        "KNOB_VALUES": [3, 10],
    },
    "research_data_release": {"BACKENDS": ["raw", "sdc-kanon"], "KNOB_VALUES": [2, 5]},
    "tre_queries": {
        "BACKENDS": ["plaintext", "sdc-suppress", "sdc-round"],
        "FIXED": {"threshold": 10},
        "KNOB_VALUES": [5, 20],
    },
    "trial_recruitment_linkage": {"BACKENDS": ["plaintext", "mpyc"], "KNOB_VALUES": [3, 4]},
    "reading_the_report": {"BACKENDS": ["plaintext", "sdc-suppress", "opendp"], "EPSILONS": [5.0]},
    "bring_your_own_backend": {},
}


def test_every_notebook_has_light_parameters():
    assert set(ROOM_LIGHT) == set(NAMES)
    for name, overrides in ROOM_LIGHT.items():
        source = _parameters_cell(nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)).source
        assigned = set(re.findall(r"^([A-Z_]+) =", source, flags=re.M))
        assert set(overrides) <= assigned, (name, set(overrides) - assigned)


@pytest.mark.parametrize("name", NAMES)
def test_runs_top_to_bottom(name, room_out):
    _check_run(name, room_out, **ROOM_LIGHT[name])


@pytest.mark.slow  # about 7 minutes: every backend of each card, with its DP audits
@pytest.mark.parametrize("name", NAMES)
def test_runs_top_to_bottom_as_shipped(name, shipped_room):
    _check_run(name, shipped_room)


def _check_run(name: str, room_out: Path, **overrides: object) -> None:
    after = "import json\n" + PRESS_RUN if name == "breast_cancer_model" else ""
    notebook = execute(name, room_out, after=after, **overrides)
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    # every notebook shows at least one chart, drawn as SVG
    assert any(
        "image/svg+xml" in o.get("data", {}) or "<svg" in o.get("data", {}).get("text/html", "")
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    # shown outputs hold no NHS number (ten digits) from the synthetic cohort
    shown = json.dumps([c.get("outputs", []) for c in notebook.cells if c.cell_type == "code"])
    assert not _nhs_numbers(shown)


#: Matplotlib's SVG element ids and references to them: a letter and the first ten hex
#: digits of a salted SHA-256, which are all decimal digits in about one id in 110.
_SVG_IDS = re.compile(r'(?:id=\\?"|#)[a-z][0-9a-f]{10}(?![0-9a-f])')


def _nhs_numbers(text: str) -> list[str]:
    """Ten-digit runs (not part of a longer number, a hex digest or an SVG element id)
    that are valid NHS numbers (mod-11 check digit)."""
    from pets.data import nhs_number_is_valid

    text = _SVG_IDS.sub(" ", text)
    runs = re.findall(r"(?<![0-9a-fA-F.])\d{10}(?![0-9a-fA-F.])", text)
    return [r for r in runs if nhs_number_is_valid([int(r)])[0]]


def test_nhs_number_search_finds_one():
    # a valid number from the cohort's own generator is found, a digest is not
    from pets.data import generate_cohort

    number = str(generate_cohort(5, seed=0)["nhs_number"].iloc[0])
    assert _nhs_numbers(f'"text": "{number}"') == [number]
    assert not _nhs_numbers(f"sha256 ab{number}cd")
    # matplotlib's SVG ids (m + ten hex digits, here all decimal) are not numbers shown,
    # in the page and as the notebook's outputs hold them (JSON-escaped); shown digits are
    svg = f'<path id="m{number}"/><use xlink:href="#m{number}" x="1"/>'
    assert not _nhs_numbers(json.dumps(svg)) and not _nhs_numbers(svg)
    assert _nhs_numbers(json.dumps(svg + f"<text>{number}</text>")) == [number]
