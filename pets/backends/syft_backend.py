"""``syft``: remote data science with PySyft 0.9.5, a datasite the researcher never sees into.

The custodian runs a PySyft datasite in its own party process and serves it over HTTP
on the loopback port the harness gives it; the researcher, in another process, reaches
it only through the harness's relay, which meters every byte. The flow is PySyft's own:

1. The custodian uploads its table as a dataset asset with a **mock** beside it: the
   same columns, drawn from the harness's public cohort generator under a fresh random
   seed (:func:`mock_of`), so the mock holds no row, value range or identifier of the
   private table.
2. The researcher signs up, reads the asset's mock (the only rows it ever sees) and
   writes one ``syft_function`` per query of its workload (:func:`query_code`). Each
   function states the query it computes as a literal on its first line, and the
   researcher submits it as a code request.
3. The custodian, as data owner, reviews each request under the card's **approval
   policy** (:data:`POLICIES`): it reads the declared query, runs the submitted code on
   the private data, checks the code computes what it declares, applies the policy
   and approves the request or denies it with a reason. PySyft releases an approved
   output whole, so a policy decides per output, never per cell.
4. Once every request is decided, the researcher runs each approved function on the
   private asset (the datasite runs it and returns its output) and reads each denial's
   reason: a denied query is unanswered, with its reason in
   :attr:`~pets.tasks.QueryOutput.refused`.

Policies: ``approve_all`` (every output as computed), ``min_cell_size`` (an output with a
cell over fewer than ``min_cell_size`` patients is denied: a count, sum or mean of a
small population, or a histogram with a small bin) and ``acro`` (the output must pass
ACRO's checks: the decision of the ``acro`` backend with ``suppress = false`` and the
same settings, made by the same code).

PySyft 0.9.5 pins ``numpy<=1.24.4``, so the party programs run in an environment of
their own (``pets env sync syft``; see docs/environments.md); ``syft`` and ``acro`` are
imported only inside the party programs. The harness scores and attacks what the
researcher released, from outside; this module computes no score.
"""

from __future__ import annotations

import ast
import contextlib
import io
import linecache
import logging
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pets.api import (
    Backend,
    Capabilities,
    Claim,
    PartyContext,
    PetClass,
    QueryOutput,
    SecurityModel,
    UnsupportedTask,
)
from pets.backends.sdc import suppress_answer
from pets.tasks import answer_query, answers_from_wire, answers_to_wire, select_rows
from pets.wire import pack, unpack

__all__ = ["POLICIES", "REQUIREMENTS", "Syft", "mock_of", "query_code"]

#: What the party programs' environment holds besides the party runtime: PySyft 0.9.5
#: (the last release that runs a datasite offline), what it needs and does not declare
#: (``sniffio``), its numpy pin, and ACRO for the ``acro`` policy.
REQUIREMENTS = ("syft==0.9.5", "sniffio", "numpy<=1.24.4", "acro==1.0.2")

#: Approval policies the data owner can apply, with what each releases.
POLICIES = {
    "approve_all": "every output as the submitted code computed it",
    "min_cell_size": "only outputs whose every cell rests on at least min_cell_size patients",
    "acro": "only what ACRO's checks pass (threshold, zeros, nk-dominance, p-ratio)",
}

#: Rows in the mock the researcher sees.
MOCK_ROWS = 200
#: The variable a submitted function's first line binds to the query it declares.
DECLARED = "query"


def mock_of(frame: pd.DataFrame, rows: int = MOCK_ROWS) -> pd.DataFrame:
    """A mock of ``frame`` for the researcher: the same columns and kinds of type, with
    values from the harness's public cohort generator under a fresh random seed
    (columns the generator does not make are zeros or ``"mock"``; a categorical column
    gets the mock's own categories). Nothing in it comes from ``frame``'s values."""
    from pets.data import generate_cohort

    public = generate_cohort(rows, seed=secrets.randbits(32))
    mock = pd.DataFrame(index=range(rows))
    for column, dtype in frame.dtypes.items():
        if column in public.columns:
            values = public[column]
            # a categorical column keeps its kind, with the mock's own categories
            mock[column] = (
                values.astype(str).astype("category")
                if isinstance(dtype, pd.CategoricalDtype)
                else values.to_numpy()
            )
        elif pd.api.types.is_numeric_dtype(dtype):
            mock[column] = np.zeros(rows, dtype=dtype)
        else:
            mock[column] = "mock"
    return mock


def query_code(name: str, query: Mapping[str, Any]) -> str:
    """The source of the researcher's function for one query: it declares the query on
    its first line and computes it with pandas (a card's filter is also a valid pandas
    query with the same meaning; see :mod:`pets.expressions`)."""
    body = [f"def {name}(rows):", f"    {DECLARED} = {dict(query)!r}"]
    text = query.get("filter", "")
    body.append(f"    selected = rows.query({text!r})" if text else "    selected = rows")
    kind = query["kind"]
    if kind == "count":
        body.append("    return float(len(selected))")
    elif kind in ("sum", "mean"):
        body.append(f"    values = selected[{query['column']!r}].astype(float)")
        body.append(f"    return float(values.{kind}()) if len(values) else float('nan')")
    elif "categories" in query:
        body.append(f"    counts = selected[{query['column']!r}].astype(str).value_counts()")
        body.append(f"    return [float(counts.get(c, 0)) for c in {list(query['categories'])!r}]")
    else:
        lo, hi = query["range"]
        body += [
            "    import numpy as np",
            f"    x = np.clip(selected[{query['column']!r}].to_numpy(dtype=float), {lo!r}, {hi!r})",
            f"    scaled = (x - {lo!r}) / ({hi!r} - {lo!r}) * {query['bins']}",
            f"    codes = np.minimum(scaled.astype(np.int64), {query['bins'] - 1})",
            f"    return np.bincount(codes, minlength={query['bins']}).astype(float).tolist()",
        ]
    return "\n".join(body) + "\n"


def declared_query(source: str) -> dict[str, Any] | None:
    """The query a submitted function declares on its first line, or None."""
    try:
        (function,) = ast.parse(source).body
        first = function.body[0]  # type: ignore[attr-defined]
    except (SyntaxError, ValueError, AttributeError, IndexError):
        return None
    if not (
        isinstance(first, ast.Assign)
        and len(first.targets) == 1
        and isinstance(first.targets[0], ast.Name)
        and first.targets[0].id == DECLARED
    ):
        return None
    try:
        value = ast.literal_eval(first.value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Syft(Backend):
    """Remote data science on a PySyft 0.9.5 datasite, with a data owner's approval policy.

    Parameters
    ----------
    policy : str
        How the data owner decides each code request; one of :data:`POLICIES`.
    min_cell_size : int
        Fewest patients an output may rest on under ``min_cell_size``.
    threshold, nk_n, nk_k, p_ratio :
        ACRO's settings under ``acro`` (see :class:`pets.backends.acro_backend.Acro`).
    """

    def __init__(
        self,
        *,
        policy: str = "approve_all",
        min_cell_size: int = 10,
        threshold: int = 10,
        nk_n: int = 2,
        nk_k: float = 0.9,
        p_ratio: float = 0.1,
    ) -> None:
        self.policy = policy
        self.min_cell_size = min_cell_size
        self.threshold = threshold
        self.nk_n = nk_n
        self.nk_k = nk_k
        self.p_ratio = p_ratio

    @property
    def capabilities(self) -> Capabilities:
        """Serves query; parties in their own environment; a heuristic claim."""
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if not (isinstance(self.min_cell_size, int) and self.min_cell_size >= 1):
            raise ValueError(
                f"min_cell_size must be a whole number >= 1, got {self.min_cell_size!r}"
            )
        return Capabilities(
            deterministic=True,
            task_kinds=frozenset({"query"}),
            pet_class=PetClass.REMOTE,
            sockets=True,
            requirements=REQUIREMENTS,
            claim=Claim(
                security_model=SecurityModel.TRUSTED_THIRD_PARTY,
                declared_leakage=("output",),
                formal=False,
                notes=f"Heuristic, no formal guarantee. The researcher sees a mock, never the "
                f"rows; the data owner releases {POLICIES[self.policy]}. Each request is "
                "judged on its own, so answers that differ by a few patients can each pass.",
            ),
        )

    def acro(self) -> Any:
        """The ``acro`` backend with this backend's ACRO settings and suppression off
        (an output with a failing cell is withheld whole), for the ``acro`` policy."""
        from pets.backends.acro_backend import Acro

        return Acro(
            threshold=self.threshold,
            nk_n=self.nk_n,
            nk_k=self.nk_k,
            p_ratio=self.p_ratio,
            suppress=False,
        )

    def run_party(self, context: PartyContext) -> QueryOutput | None:
        """The custodian serves the datasite; the researcher works through it."""
        self.capabilities  # noqa: B018
        task = context.task
        if task.kind != "query":
            raise UnsupportedTask(f"syft serves query, not {task.kind}")
        if context.network is None:
            raise UnsupportedTask("syft needs the harness's sockets")
        (custodian,) = [n for n in task.party_names if n != task.recipient]
        if context.name == custodian:
            self._serve(context, task.recipient)
            return None
        if context.name != task.recipient:
            return None
        return self._research(context, custodian)

    # -- the data owner ------------------------------------------------------------

    def decide(self, frame: pd.DataFrame, query: Mapping[str, Any], output: Any) -> str:
        """The data owner's decision on one output: ``""`` to approve it, else the
        reason it is denied. PySyft releases an approved output whole, so a histogram
        with one failing bin is denied whole, as ACRO does with suppression off.

        Raises
        ------
        ValueError
            If ``output`` is not the declared query's answer on ``frame``.
        """
        truth = answer_query(frame, query)
        if not np.allclose(
            np.asarray(output, dtype=float), np.asarray(truth, dtype=float), equal_nan=True
        ):
            raise ValueError("the code does not compute the query it declares")
        if self.policy == "approve_all":
            return ""
        if self.policy == "min_cell_size":
            n_rows = len(select_rows(frame, query.get("filter", "")))
            released = suppress_answer(query, truth, n_rows, self.min_cell_size)
            if released is None or np.isnan(np.asarray(released, dtype=float)).any():
                return f"an output cell rests on fewer than {self.min_cell_size} patients"
            return ""
        with tempfile.TemporaryDirectory(prefix="acro-") as scratch:
            _, refused = self.acro().answer_workload(frame, [dict(query)], Path(scratch))
        return refused.get("0", "")

    def _serve(self, context: PartyContext, researcher: str) -> None:
        sy = _import_syft()
        import uvicorn
        from fastapi import APIRouter, FastAPI
        from syft.server.datasite import Datasite
        from syft.server.routes import make_routes

        with context.phase("setup"):
            datasite = Datasite.named(
                name=f"pets-{context.name}", reset=True, processes=1, in_memory_workers=True
            )
            app = FastAPI(title=context.name)
            router = APIRouter()
            router.include_router(make_routes(worker=datasite))
            app.include_router(router, prefix="/api/v2")
            host, port = context.network.listen  # type: ignore[union-attr]
            server = uvicorn.Server(
                uvicorn.Config(app, host=host, port=port, log_level="error", access_log=False)
            )
            threading.Thread(target=server.run, daemon=True).start()
            owner = datasite.root_client
            with _quiet():
                owner.upload_dataset(
                    sy.Dataset(
                        name="cohort",
                        asset_list=[
                            sy.Asset(name="rows", data=context.data, mock=mock_of(context.data))
                        ],
                    )
                )
                owner.settings.allow_guest_signup(enable=True)
            while not server.started:
                time.sleep(0.01)
        context.send(researcher, pack({"datasite": "ready"}), tag="ready")
        expected = int(unpack(context.receive(researcher, tag="submitted"))["requests"])
        private = owner.datasets[0].assets[0].data
        decided: set[str] = set()
        with context.phase("compute"):
            while len(decided) < expected:
                pending = [r for r in owner.requests if str(r.id) not in decided]
                for request in pending:
                    self._review(request, private)
                    decided.add(str(request.id))
                if len(decided) < expected:
                    time.sleep(0.02)
        context.send(researcher, pack({"decided": len(decided)}), tag="decided")
        unpack(context.receive(researcher, tag="finished"))
        server.should_exit = True

    def _review(self, request: Any, private: pd.DataFrame) -> None:
        """Decide one code request: run it on the private rows, check it computes the
        query it declares, apply the policy, and approve or deny it with the reason."""
        code = request.code
        query = declared_query(code.raw_code)
        reason = "the code declares no query on its first line"
        if query is not None:
            try:
                with _quiet():
                    output = code.run(rows=private)
                reason = self.decide(private, query, output)
            except Exception as exc:  # the submitted code or its check failed
                reason = f"not released: {exc}"[:300]
        with _quiet():
            if reason:
                request.deny(reason=reason)
            else:
                request.approve(disable_warnings=True, approve_nested=True)

    # -- the researcher ------------------------------------------------------------

    def _research(self, context: PartyContext, custodian: str) -> QueryOutput:
        sy = _import_syft()
        unpack(context.receive(custodian, tag="ready"))
        host, port = context.network.peers[custodian]  # type: ignore[union-attr]
        url = f"http://{host}"
        email, password = "researcher@tre.example", secrets.token_urlsafe(16)
        with context.phase("setup"), _quiet():
            guest = sy.login_as_guest(url=url, port=port)
            guest.register(
                name="Researcher", email=email, password=password, password_verify=password
            )
            client = sy.login(url=url, port=port, email=email, password=password)
            asset = client.datasets[0].assets[0]
            mock = asset.mock
        context.reveal("mock", mock)
        queries = list(context.task.params["queries"])
        names = [f"q{i}" for i in range(len(queries))]
        with context.phase("compute"):
            with _quiet():
                for name, query in zip(names, queries, strict=True):
                    function = _function(name, query_code(name, query))
                    function(rows=mock)  # tried on the mock first, as a researcher does
                    client.code.request_code_execution(
                        sy.syft_function_single_use(rows=asset)(function)
                    )
            context.send(custodian, pack({"requests": len(names)}), tag="submitted")
            unpack(context.receive(custodian, tag="decided"))
            answers, refused = self._collect(client, asset, names)
        context.send(custodian, pack({"done": True}), tag="finished")
        out = QueryOutput(answers_from_wire(answers), refused=refused)
        context.reveal("answers", out)
        return out

    def _collect(
        self, client: Any, asset: Any, names: Sequence[str]
    ) -> tuple[list[Any], dict[int, str]]:
        """Each approved request's output, run on the private data, or the denial's
        reason (every request is decided by now: the data owner said so)."""
        answers: list[Any] = [None] * len(names)
        refused: dict[int, str] = {}
        with _quiet():
            requests = {str(r.code.service_func_name): r for r in client.requests}
        for i, name in enumerate(names):
            request = requests.get(name)
            status = "" if request is None else str(request.status)
            if status.endswith("APPROVED"):
                with _quiet():
                    result = getattr(client.code, name)(rows=asset)
                    answers[i] = result.get() if hasattr(result, "get") else result
            elif status.endswith("REJECTED"):
                with _quiet():
                    refused[i] = str(request.deny_reason)  # type: ignore[union-attr]
            else:
                refused[i] = f"undecided ({status or 'no request found'})"
        return answers_to_wire(answers), refused


def _function(name: str, source: str) -> Any:
    """Compile ``source`` as a function PySyft can read the source of."""
    filename = f"<researcher:{name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)  # the harness's own generated code
    return namespace[name]


def _import_syft() -> Any:
    """Import PySyft, its loggers kept to errors."""
    import syft as sy  # the backend's own environment

    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(("syft", "uvicorn", "urllib3")):
            logging.getLogger(name).setLevel(logging.ERROR)
    return sy


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep PySyft's printed notices (it displays its results) off the party's output."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
