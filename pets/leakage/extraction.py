"""Model extraction from returned scores (attacker model A0: the provider).

In an ``inference`` task the provider learns the supplier's score ``s = sigmoid(w.x + b)``
for each of its own patients, whose features it knows. ``logit(s)`` is linear in the
weights, so ``d + 1`` scores of linearly independent rows give the weights exactly.
Two attacks, both named ``model_extraction`` and told apart by the extra key ``method``:

- ``exact``: the provider picks ``d + 1`` of its rows that are linearly independent
  (in a random order, each row kept if it raises the rank) and whose scores lie strictly
  between 0 and 1, and solves the square system on ``logit(s)``.
- ``least_squares``: the provider takes up to ``effort.attacks`` of its rows, fits
  ``logit(s)`` by least squares on the rows whose scores lie inside (0, 1), then refines
  the fit in score space (nonlinear least squares of ``s - sigmoid(w.x + b)``). Backends
  that return approximate scores (a polynomial sigmoid under CKKS, fixed-point weights)
  break the exact solve but not, to their precision, this fit.

Success: the share of the supplier's ``d + 1`` parameters (weights and intercept)
recovered within :data:`RTOL` relative plus :data:`ATOL` absolute error, i.e.
``|w_hat - w| <= RTOL * |w| + ATOL`` (features are scaled to [0, 1] by their public
ranges, so an absolute error of 0.01 moves a logit by at most 0.01 per feature). The
control is what the provider gets without the scores: the share recovered, with the same
tolerance, by a model the provider fits on its own labelled rows. Extra keys: the largest
absolute parameter error, and the decision agreement (at the task's threshold) of the
extracted model with the supplier's on provider rows the attack did not use, next to
that of the control model.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit, logit

from pets.leakage._base import AttackContext, AttackResult, not_applicable, rate_result
from pets.tasks import InferenceOutput, LogisticModel, design_matrix, fit_logistic, labels

__all__ = [
    "ATOL",
    "LINKS",
    "RTOL",
    "attack",
    "extract_exact",
    "extract_least_squares",
    "sigmoid_polynomial",
]

ATTACK = "model_extraction"

#: Relative tolerance of a recovered parameter.
RTOL = 0.01
#: Absolute tolerance of a recovered parameter (in logit units per unit of feature).
ATOL = 0.01


def attack(context: AttackContext) -> list[AttackResult]:
    """Extract the supplier's model from the scores the provider received.

    Parameters
    ----------
    context : AttackContext
        The cell; only ``inference`` tasks are attacked, by attacker model A0.

    Returns
    -------
    list of AttackResult
        One result per method (``exact`` and ``least_squares``), or a not-applicable
        result when the provider learned no scores.
    """
    problem = context.problem
    task = problem.task
    if task.kind != "inference" or not context.applies("A0"):
        return []
    provider, supplier = task.recipient, task.params["supplier"]
    scores = _scores(context)
    if scores is None:
        return [not_applicable(ATTACK, "A0", provider, "the provider learned no scores")]
    truth = problem.party_data.get(supplier)
    if not isinstance(truth, LogisticModel):
        return [not_applicable(ATTACK, "A0", provider, "the supplier holds no logistic model")]
    patients = problem.party_data[provider]
    features = list(task.params["features"])
    x = design_matrix(patients, features)
    if scores.shape != (len(x),):
        return [
            not_applicable(
                ATTACK, "A0", provider, "the scores do not match the provider's rows one to one"
            )
        ]
    theta = np.append(np.asarray(truth.coef, dtype=np.float64), truth.intercept)
    rng = context.rng
    order = rng.permutation(len(x))

    # The control: the provider's own model, fitted on its labelled rows without scores.
    control_theta = None
    target = task.params["target"]
    if target in patients.columns and np.unique(patients[target]).size > 1:
        own = fit_logistic(x, labels(patients, task), task)
        control_theta = np.append(own.coef, own.intercept)
    control = None if control_theta is None else _recovered(control_theta, theta).mean()

    results = []
    for method in ("exact", "least_squares"):
        start = time.perf_counter()
        link = "sigmoid"
        if method == "exact":
            used, estimate = extract_exact(x, scores, order)
        else:
            used = order[: max(context.effort.attacks, x.shape[1] + 1)]
            estimate, link = extract_least_squares(x[used], scores[used])
        cost = time.perf_counter() - start
        held = np.setdiff1d(np.arange(len(x)), used)
        ok = _recovered(estimate, theta)
        extra: dict[str, Any] = {
            "method": method,
            "rows_used": len(used),
            "link": link,
            "parameters": len(theta),
            "rtol": RTOL,
            "atol": ATOL,
            "max_abs_coef_error": float(np.max(np.abs(estimate - theta))),
        }
        if held.size:
            threshold = task.params["threshold"]
            true_scores = expit(_design(x[held]) @ theta)
            extra["decision_agreement"] = _agreement(estimate, x[held], true_scores, threshold)
            extra["max_score_error"] = float(
                np.max(np.abs(expit(_design(x[held]) @ estimate) - true_scores))
            )
            if control_theta is not None:
                extra["control_decision_agreement"] = _agreement(
                    control_theta, x[held], true_scores, threshold
                )
        note = ""
        if len(used) < len(theta):
            note = "the provider's rows do not span every feature: some weights are unidentifiable"
        results.append(
            rate_result(
                ATTACK,
                "A0",
                provider,
                successes=int(ok.sum()),
                trials=len(theta),
                baseline=0.0 if control is None else float(control),
                control=None if control is None else float(control),
                cost_s=cost,
                note=note,
                **extra,
            )
        )
    return results


def _scores(context: AttackContext) -> np.ndarray | None:
    output = context.output
    if not isinstance(output, InferenceOutput):
        recipient = context.problem.task.recipient
        output = next(
            (
                v
                for p, _, v in reversed(context.session.reveals)
                if p == recipient and isinstance(v, InferenceOutput)
            ),
            None,
        )
    if output is None:
        return None
    return np.asarray(output.scores, dtype=np.float64).ravel()


def _design(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))])


def _recovered(estimate: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return np.abs(estimate - theta) <= RTOL * np.abs(theta) + ATOL


def _agreement(
    estimate: np.ndarray, x: np.ndarray, true_scores: np.ndarray, threshold: float
) -> float:
    guess = expit(_design(x) @ estimate)
    return float(np.mean((guess >= threshold) == (true_scores >= threshold)))


def _inside(scores: np.ndarray) -> np.ndarray:
    return np.isfinite(scores) & (scores > 0.0) & (scores < 1.0)


def extract_exact(
    x: np.ndarray, scores: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Solve for the weights from ``d + 1`` scores.

    Parameters
    ----------
    x : numpy.ndarray
        The provider's design matrix (rows, d).
    scores : numpy.ndarray
        The score returned for each row.
    order : numpy.ndarray
        The order in which rows are tried.

    Returns
    -------
    used : numpy.ndarray
        The rows used (``d + 1`` of them unless the rows do not span the features).
    estimate : numpy.ndarray
        Weights then intercept (minimum-norm solution if fewer than ``d + 1`` rows).
    """
    a = _design(x)
    need = a.shape[1]
    chosen: list[int] = []
    basis = np.zeros((0, need))
    inside = _inside(scores)
    for i in order:
        if not inside[i]:
            continue
        row = a[i]
        # Keep the row if it is not (numerically) in the span of the rows kept so far.
        residual = row - basis.T @ (basis @ row) if len(basis) else row
        norm = np.linalg.norm(residual)
        if norm > 1e-8 * max(1.0, np.linalg.norm(row)):
            basis = np.vstack([basis, residual / norm])
            chosen.append(int(i))
            if len(chosen) == need:
                break
    used = np.array(chosen, dtype=int)
    if used.size == 0:
        return used, np.zeros(need)
    estimate, *_ = np.linalg.lstsq(a[used], logit(scores[used]), rcond=None)
    return used, estimate


@functools.lru_cache(maxsize=256)
def sigmoid_polynomial(degree: int, half_range: float) -> np.ndarray:
    """Least-squares polynomial approximation of the sigmoid on ``[-half_range,
    half_range]`` (a fine uniform grid), power basis, constant first: the published way
    HE backends replace the sigmoid, which an attacker can reproduce."""
    grid = np.linspace(-half_range, half_range, 4001)
    coef = np.polynomial.Polynomial.fit(grid, expit(grid), degree).convert().coef
    coef.setflags(write=False)
    return coef


#: Links the attacker tries: the sigmoid, then polynomial sigmoids (degree, half range)
#: of the kind HE backends publish.
LINKS: tuple[tuple[int, float] | None, ...] = (
    None,
    *((degree, float(r)) for degree in (3, 5, 7, 9, 11, 13, 15) for r in range(2, 13)),
)


#: Root-mean-square score residual below which the sigmoid is taken as the link.
_PRECISION = 1e-4
#: Function evaluations of a ranking fit and of the final fit.
_SHORT_NFEV = 15
_NFEV = 200


def _link(spec: tuple[int, float] | None) -> tuple[Any, Any]:
    """Return (g, g') for a link spec."""
    if spec is None:
        return expit, lambda z: expit(z) * (1.0 - expit(z))
    poly = np.polynomial.Polynomial(sigmoid_polynomial(*spec))
    return poly, poly.deriv()


def _describe(spec: tuple[int, float] | None) -> str:
    if spec is None:
        return "sigmoid"
    return f"polynomial sigmoid, degree {spec[0]} on [-{spec[1]:g}, {spec[1]:g}]"


def extract_least_squares(
    x: np.ndarray, scores: np.ndarray, links: tuple[tuple[int, float] | None, ...] = LINKS
) -> tuple[np.ndarray, str]:
    """Fit the weights to many scores: least squares on ``logit(s)``, then nonlinear
    least squares on ``s`` itself under each candidate link; the link with the smallest
    residual wins.

    Parameters
    ----------
    x : numpy.ndarray
        Design matrix of the rows used.
    scores : numpy.ndarray
        Their returned scores.
    links : tuple
        Candidate links: None for the sigmoid, ``(degree, half_range)`` for a
        least-squares polynomial sigmoid (:func:`sigmoid_polynomial`).

    Returns
    -------
    estimate : numpy.ndarray
        Weights then intercept.
    link : str
        The link that fitted best.
    """
    a = _design(x)
    inside = _inside(scores)
    if inside.sum() == 0:
        return np.zeros(a.shape[1]), "none"
    a, s = a[inside], scores[inside]
    start, *_ = np.linalg.lstsq(a, logit(s), rcond=None)

    def fit(spec: tuple[int, float] | None, t0: np.ndarray, budget: int) -> Any:
        g, dg = _link(spec)
        return least_squares(
            lambda t: g(a @ t) - s,
            t0,
            jac=lambda t: dg(a @ t)[:, None] * a,
            method="lm" if len(s) >= a.shape[1] else "trf",
            xtol=1e-15,
            ftol=1e-15,
            gtol=1e-15,
            max_nfev=budget,
        )

    # A short fit under every link ranks them; the best is then fitted to convergence.
    # Scores that the sigmoid explains to their printed precision need no search.
    first = fit(links[0], start, _NFEV)
    tried = [(float(np.mean(first.fun**2)), links[0], first.x)]
    if np.sqrt(tried[0][0]) > _PRECISION:
        for spec in links[1:]:
            trial = fit(spec, start, _SHORT_NFEV)
            tried.append((float(np.mean(trial.fun**2)), spec, trial.x))
    _, spec, t0 = min(tried, key=lambda item: item[0])
    best = (0.0, fit(spec, t0, _NFEV).x, _describe(spec))
    return best[1], best[2]
