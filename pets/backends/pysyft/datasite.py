"""PySyft 0.9.5 plumbing for the ``syft`` party programs: the data owner's datasite and
the researcher's client, and the messages that pace them.

A data holder's party process runs a PySyft ``Datasite`` (its database under the
cell's scratch ``TMPDIR``) and serves PySyft's HTTP API with uvicorn, in a thread, on
the loopback port the harness gives it. The researcher reaches it only at the harness
relay's address for that holder. Three harness messages pace the two sides, so no side
polls the other's state: the holder says ``ready`` once its server listens, the
researcher says how many requests it ``submitted``, the holder says when every one is
``decided``, and the researcher says ``finished`` once it has read the results, before
the holder stops its server.

``syft`` is imported only inside these functions: the module itself loads in the
harness's environment, where PySyft is not installed.
"""

from __future__ import annotations

import contextlib
import io
import linecache
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pets.api import PartyContext
from pets.wire import pack, unpack

__all__ = [
    "MOCK_ROWS",
    "Researcher",
    "compile_function",
    "connect_all",
    "import_syft",
    "mock_of",
    "quiet",
    "serve_as_data_owner",
]

#: Rows in the mock a researcher sees.
MOCK_ROWS = 200

#: A data owner's review of one request: ``review(source, run)`` returns ``""`` to
#: approve or the reason to deny; ``run()`` runs the submitted code on the private rows.
Review = Callable[[str, Callable[[], Any]], str]


def import_syft() -> Any:
    """Import PySyft, its loggers and those of its server kept to errors."""
    import syft as sy  # the backend's own environment

    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(("syft", "uvicorn", "urllib3")):
            logging.getLogger(name).setLevel(logging.ERROR)
    return sy


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep PySyft's printed notices (it displays its results) off the party's output."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


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


def compile_function(name: str, source: str) -> Any:
    """Compile generated ``source`` as a function whose source PySyft can read."""
    filename = f"<researcher:{name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)  # the harness's own generated code
    return namespace[name]


def serve_as_data_owner(context: PartyContext, researcher: str, review: Review) -> None:
    """Run this party's datasite for ``researcher`` until it has read its results.

    The party's rows are uploaded as the asset ``rows`` with a mock (:func:`mock_of`);
    each code request is run on the private rows and decided by ``review``.
    """
    sy = import_syft()
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
        with quiet():
            asset = sy.Asset(name="rows", data=context.data, mock=mock_of(context.data))
            owner.upload_dataset(sy.Dataset(name="cohort", asset_list=[asset]))
            owner.settings.allow_guest_signup(enable=True)
        while not server.started:
            time.sleep(0.01)
    context.send(researcher, pack({"datasite": "ready"}), tag="ready")
    expected = int(unpack(context.receive(researcher, tag="submitted"))["requests"])
    private = owner.datasets[0].assets[0].data
    decided: set[str] = set()
    with context.phase("compute"):
        while len(decided) < expected:
            with quiet():
                pending = [r for r in owner.requests if str(r.id) not in decided]
            for request in pending:
                _decide(request, private, review)
                decided.add(str(request.id))
            if len(decided) < expected:
                time.sleep(0.02)
    context.send(researcher, pack({"decided": len(decided)}), tag="decided")
    unpack(context.receive(researcher, tag="finished"))
    server.should_exit = True


def _decide(request: Any, private: pd.DataFrame, review: Review) -> None:
    """Approve ``request`` or deny it with the review's reason; code that fails on the
    private rows, or whose review fails, is denied with the error."""
    code = request.code

    def run() -> Any:
        with quiet():
            return code.run(rows=private)

    try:
        reason = review(str(code.raw_code), run)
    except Exception as exc:  # the submitted code or its check failed
        reason = f"not released: {exc}"[:300]
    with quiet():
        if reason:
            request.deny(reason=reason)
        else:
            request.approve(disable_warnings=True, approve_nested=True)


class Researcher:
    """The researcher's side of one datasite: sign up, read the mock, submit code,
    and collect what the data owner released.

    Parameters
    ----------
    context : PartyContext
        The researcher's party.
    holder : str
        The data holder whose datasite this is.
    """

    def __init__(self, context: PartyContext, holder: str) -> None:
        self.context = context
        self.holder = holder
        self.sy = import_syft()
        self.submitted: list[str] = []

    def connect(self) -> pd.DataFrame:
        """Wait for the datasite, sign up and log in; return the mock, the only rows
        the researcher sees (revealed to the harness as ``mock:<holder>``)."""
        sy = self.sy
        unpack(self.context.receive(self.holder, tag="ready"))
        host, port = self.context.network.peers[self.holder]  # type: ignore[union-attr]
        url = f"http://{host}"
        email, password = "researcher@tre.example", secrets.token_urlsafe(16)
        with quiet():
            guest = sy.login_as_guest(url=url, port=port)
            guest.register(
                name="Researcher", email=email, password=password, password_verify=password
            )
            self.client = sy.login(url=url, port=port, email=email, password=password)
            self.asset = self.client.datasets[0].assets[0]
            self.mock = self.asset.mock
        self.context.reveal(f"mock:{self.holder}", self.mock)
        return self.mock

    def submit(self, name: str, source: str) -> None:
        """Try the function in ``source`` on the mock, as a researcher does, then
        submit it as a code request on the private asset."""
        function = compile_function(name, source)
        with quiet():
            function(rows=self.mock)
            self.client.code.request_code_execution(
                self.sy.syft_function_single_use(rows=self.asset)(function)
            )
        self.submitted.append(name)

    def done_submitting(self) -> None:
        """Tell the data owner how many requests to decide."""
        self.context.send(self.holder, pack({"requests": len(self.submitted)}), tag="submitted")

    def collect(self) -> tuple[list[Any], dict[int, str]]:
        """Once every request is decided: each approved function's output (the datasite
        runs it on the private rows) and each denied one's reason, in submission order."""
        unpack(self.context.receive(self.holder, tag="decided"))
        outputs: list[Any] = [None] * len(self.submitted)
        refused: dict[int, str] = {}
        with quiet():
            requests = {str(r.code.service_func_name): r for r in self.client.requests}
        for i, name in enumerate(self.submitted):
            request = requests.get(name)
            status = "" if request is None else str(request.status)
            if status.endswith("APPROVED"):
                with quiet():
                    result = getattr(self.client.code, name)(rows=self.asset)
                    outputs[i] = result.get() if hasattr(result, "get") else result
            elif status.endswith("REJECTED"):
                with quiet():
                    refused[i] = str(request.deny_reason)  # type: ignore[union-attr]
            else:
                refused[i] = f"undecided ({status or 'no request found'})"
        self.context.send(self.holder, pack({"done": True}), tag="finished")
        return outputs, refused


def connect_all(context: PartyContext, holders: Sequence[str]) -> list[Researcher]:
    """A connected :class:`Researcher` per holder, in ``holders`` order."""
    sessions = [Researcher(context, holder) for holder in holders]
    with context.phase("setup"):
        for session in sessions:
            session.connect()
    return sessions
