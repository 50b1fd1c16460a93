"""``diffprivlib``: differentially private logistic regression (IBM diffprivlib).

diffprivlib's ``LogisticRegression`` perturbs the training objective (Chaudhuri et al.)
and needs the largest L2 norm of a row, ``data_norm``. Here every feature is scaled to
[0, 1] by public bounds (``pets.tasks.design_matrix``), so ``data_norm`` is the square
root of the number of features, stated without looking at the data; a feature without
public bounds is refused. diffprivlib then never has to infer a bound from the data
(it would warn with ``PrivacyLeakWarning``, which this backend raises as an error, so
the party fails rather than leak).

Every party runs in its own process:

- ``mode="central"``: the data holders send their rows (the scaled design matrix and
  labels, ``rows``) to a curator (``curator``, by default the first data holder), which
  trains one DP model and sends its weights to the recipient (``model``): the curator
  sees the rows, the recipient sees only the model.
- ``mode="per-trust"``: each data holder trains its own DP model on its own rows and
  releases its patient count with Laplace noise (OpenDP), sending both to the recipient
  (``model``); the recipient averages the models weighted by the noisy counts. Rows
  never leave a holder; each patient is in one holder, so the guarantee is the same.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np

from pets.api import (
    Backend,
    Capabilities,
    Claim,
    LogisticModel,
    PartyContext,
    PetClass,
    Task,
    UnsupportedTask,
)
from pets.backends.dp.opendp_ops import laplace_release, statistic
from pets.backends.randomness import DIFFPRIVLIB_NOISE, OPENDP_NOISE
from pets.tasks import DERIVED_FEATURES, design_matrix, labels, public_ranges
from pets.wire import pack, unpack

__all__ = ["Diffprivlib"]

# Imported with this module when diffprivlib is installed, so the fork server the
# parties come from holds it (with scikit-learn) for every party.
with contextlib.suppress(ImportError):
    import diffprivlib.models  # noqa: F401

_MODES = ("central", "per-trust")
#: Share of epsilon a holder spends on its count in per-trust mode.
_COUNT_SHARE = 0.1


def _data_norm(features: list[str]) -> float:
    ranges = public_ranges()
    unbounded = [f for f in features if f not in ranges and f not in DERIVED_FEATURES]
    if unbounded:
        raise UnsupportedTask(
            f"diffprivlib needs public bounds for every feature; {unbounded[0]!r} has none "
            "(pets.data.COLUMN_RANGES or REAL_RANGES)"
        )
    return math.sqrt(len(features))


class Diffprivlib(Backend):
    """DP logistic regression with diffprivlib.

    Parameters
    ----------
    epsilon : float
        Privacy loss per patient (pure epsilon-DP, add/remove).
    mode : {"central", "per-trust"}
        Train once at a curator, or once per data holder and average.
    curator : str or None
        The party that trains in central mode (default: the first data holder).
    """

    def __init__(
        self, *, epsilon: float = 1.0, mode: str = "central", curator: str | None = None
    ) -> None:
        self.epsilon = epsilon
        self.mode = mode
        self.curator = curator

    @property
    def capabilities(self) -> Capabilities:
        """Serves ``train``."""
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon!r}")
        if self.mode not in _MODES:
            raise ValueError(f"mode {self.mode!r}; allowed: {', '.join(_MODES)}")
        central = self.mode == "central"
        return Capabilities(
            task_kinds=frozenset({"train"}),
            pet_class=PetClass.DP,
            claim=Claim(
                epsilon=float(self.epsilon),
                delta=0.0,
                neighbouring="add-remove",
                accountant="single release (central); per holder, parallel across "
                "holders, model plus count (per-trust)",
                declared_leakage=("inputs", "output") if central else ("output",),
                formal=True,
                notes="The DP guarantee covers the model; in central mode the curator "
                "sees every holder's rows."
                if central
                else "The DP guarantee covers each holder's model and count.",
            ),
            extra="dp",
            unseeded_randomness=(DIFFPRIVLIB_NOISE, OPENDP_NOISE),
        )

    def _fit(self, x: np.ndarray, y: np.ndarray, task: Task, epsilon: float) -> np.ndarray:
        """Fit diffprivlib's model; a ``PrivacyLeakWarning`` (a bound it would infer
        from the data) is raised as an error, so the party fails instead."""
        from diffprivlib.models import LogisticRegression
        from diffprivlib.utils import PrivacyLeakWarning

        model = LogisticRegression(
            epsilon=epsilon,
            data_norm=_data_norm(list(task.params["features"])),
            C=task.params["C"],
            max_iter=task.params["max_iter"],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", PrivacyLeakWarning)
            model.fit(x, y)
        return np.append(model.coef_[0], model.intercept_[0]).astype(np.float64)

    def run_party(self, context: PartyContext) -> LogisticModel | None:
        """Train, as one party's program; the recipient gets the DP model."""
        self.capabilities  # noqa: B018
        task = context.task
        if task.kind != "train":
            raise UnsupportedTask(f"diffprivlib serves train, not {task.kind}")
        features = list(task.params["features"])
        _data_norm(features)
        holders = list(task.parties_with_role("data_holder"))
        if self.mode == "central":
            weights = self._central(context, holders)
        else:
            weights = self._per_trust(context, holders)
        if weights is None:
            return None
        model = LogisticModel(
            coef=weights[:-1], intercept=float(weights[-1]), features=tuple(features)
        )
        context.reveal("model", model)
        return model

    def _central(self, context: PartyContext, holders: list[str]) -> np.ndarray | None:
        """Holders send their scaled rows to the curator, which trains and sends the
        weights to the recipient; the recipient returns them, every other party None."""
        task = context.task
        curator = self.curator or holders[0]
        if curator not in task.party_names:
            raise UnsupportedTask(f"curator {curator!r} is not a party of this card")
        features = list(task.params["features"])
        if context.name in holders and context.name != curator:
            x, y = design_matrix(context.data, features), labels(context.data, task)
            context.send(curator, pack(np.column_stack([x, y])), tag="rows")
        if context.name == curator:
            blocks = []
            for holder in holders:
                if holder == curator:
                    x, y = design_matrix(context.data, features), labels(context.data, task)
                    blocks.append((x, y))
                else:
                    rows = unpack(context.receive(holder, tag="rows"))
                    blocks.append((rows[:, :-1], rows[:, -1]))
            with context.phase("train"):
                weights = self._fit(
                    np.vstack([b[0] for b in blocks]),
                    np.concatenate([b[1] for b in blocks]),
                    task,
                    self.epsilon,
                )
            if curator == task.recipient:
                return weights
            context.send(task.recipient, pack(weights), tag="model")
        if context.name == task.recipient:
            return unpack(context.receive(curator, tag="model"))
        return None

    def _per_trust(self, context: PartyContext, holders: list[str]) -> np.ndarray | None:
        """Each holder trains its own DP model and releases a noisy count with it; the
        recipient averages the models weighted by the counts."""
        task = context.task
        own = None
        if context.name in holders:
            with context.phase("setup"):
                count = laplace_release(
                    statistic(lambda f: [float(len(f))], 1.0), _COUNT_SHARE * self.epsilon
                )
            with context.phase("train"):
                weights = self._fit(
                    design_matrix(context.data, list(task.params["features"])),
                    labels(context.data, task),
                    task,
                    (1 - _COUNT_SHARE) * self.epsilon,
                )
                n = max(float(count(context.data)[0]), 1.0)
            own = np.append(weights, n)
            if context.name != task.recipient:
                context.send(task.recipient, pack(own), tag="model")
        if context.name != task.recipient:
            return None
        models = [
            own if h == context.name else unpack(context.receive(h, tag="model")) for h in holders
        ]
        sizes = np.array([m[-1] for m in models])
        return sum(m[:-1] * s for m, s in zip(models, sizes, strict=True)) / sizes.sum()
