"""Membership inference on a trained model (attacker model A0, the model's recipient).

The recipient holds the logistic model the cell produced and same-distribution
population data. The game: a target patient is drawn, with probability one half, from
the model's training rows (every data holder's rows: the members) or from the held-out
rows no party holds (the non-members); the attacker says which. Members and
non-members are balanced (``effort.attacks / 2`` of each at most, with the same number of
positive labels), so guessing scores one half. A backend that trains on some data
holders only (``local_only``) is attacked on membership of the federation's data, which
dilutes the signal by the share of rows it never saw.

Two attacks, both named ``membership_inference`` and told apart by the extra key
``method``:

- ``loss``: the loss-threshold attack (Yeom et al., 2018). The score is minus the
  target's cross-entropy loss under the model; members tend to have lower loss.
- ``lira``: the online likelihood-ratio attack (Carlini et al., 2022), sized for
  logistic regression. The attacker fits ``effort.shadows`` shadow models with the
  task's own plain logistic regression (:func:`pets.tasks.fit_logistic`): each target
  is in exactly half of the shadows, and each shadow is topped up with held-out rows
  (population data, never the other training patients) towards the target model's
  training size. For each target, the logit-scaled confidence
  ``phi = log(p_y / (1 - p_y))`` (for a logistic model, ``(2y - 1)`` times the linear
  score) of the shadows that trained on it and of those that did not gives two
  Gaussians; the score is ``log N(phi; mu_in, sigma_in) - log N(phi; mu_out, sigma_out)``
  at the target model's ``phi``. Per-example means; the variances are pooled over
  targets below :data:`PER_EXAMPLE_VARIANCE_SHADOWS` shadows (LiRA's fixed-variance
  variant, which is the better one with few shadows).

Both report the ROC figures of their score on all targets (``auc``, ``advantage`` =
max(TPR - FPR) over thresholds, ``tpr_at_fpr_1e-2``, ``tpr_at_fpr_1e-3``) and
``min_resolvable_fpr`` = 1 / non-members: a TPR at an FPR below it is the TPR at zero
false positives among the non-members at hand. Those figures pick the best threshold
in hindsight; the headline ``success_rate`` does not: it is the balanced accuracy of a
threshold chosen on one half of the targets and applied to the other half (both ways
round, so every target is scored once by a threshold it did not help choose), with a
Wilson interval, baseline one half, and residual risk ``2 * rate - 1`` (an out-of-sample
advantage).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from pets.leakage._base import AttackContext, AttackResult, not_applicable, rate_result
from pets.leakage.rates import balanced_halves, cross_fitted_hits, roc_figures
from pets.tasks import LogisticModel, design_matrix, fit_logistic, labels

__all__ = [
    "PER_EXAMPLE_VARIANCE_SHADOWS",
    "attack",
    "lira_scores",
]

ATTACK = "membership_inference"

#: From this many shadows on, LiRA estimates each target's variances on its own.
PER_EXAMPLE_VARIANCE_SHADOWS = 32


def attack(context: AttackContext) -> list[AttackResult]:
    """Run the loss-threshold and LiRA membership attacks on a trained model.

    Parameters
    ----------
    context : AttackContext
        The cell; only ``train`` tasks are attacked, by attacker model A0.

    Returns
    -------
    list of AttackResult
        One result per method, or one not-applicable result when there is no model.
    """
    problem = context.problem
    task = problem.task
    if task.kind != "train" or not context.applies("A0"):
        return []
    observer = task.recipient
    model = _model(context)
    if model is None:
        return [not_applicable(ATTACK, "A0", observer, "the recipient learned no logistic model")]
    features = list(task.params["features"])
    if tuple(model.features) != tuple(features):
        return [
            not_applicable(
                ATTACK, "A0", observer, "the model's features differ from the task's features"
            )
        ]
    frames = [f for f in problem.party_data.values() if isinstance(f, pd.DataFrame)]
    if not frames or "x_test" not in problem.evaluation:
        return [not_applicable(ATTACK, "A0", observer, "no training rows or held-out rows")]
    members = pd.concat(frames, ignore_index=True)
    x_in, y_in = design_matrix(members, features), labels(members, task)
    x_out = np.asarray(problem.evaluation["x_test"], dtype=np.float64)
    y_out = np.asarray(problem.evaluation["y_test"], dtype=np.float64)
    rng = context.rng
    per_side = min(context.effort.attacks // 2, len(y_in), len(y_out)) // 2 * 2
    picked = _stratified(y_in, y_out, per_side, rng)
    if picked is None:
        return [not_applicable(ATTACK, "A0", observer, "too few members or non-members to attack")]
    pick_in, pick_out = picked
    per_side = len(pick_in)
    # Targets first (members, then non-members), then the population rows the attacker
    # may use to fill its shadows' training sets: held-out rows only, since A0 has
    # same-distribution data but not the other training patients.
    rest_out = np.setdiff1d(np.arange(len(y_out)), pick_out)
    x_pool = np.vstack([x_in[pick_in], x_out[pick_out], x_out[rest_out]])
    y_pool = np.concatenate([y_in[pick_in], y_out[pick_out], y_out[rest_out]])
    n_targets = 2 * per_side
    is_member = np.concatenate([np.ones(per_side, bool), np.zeros(per_side, bool)])
    halves = balanced_halves(is_member, rng)
    common = {
        "members": int(per_side),
        "non_members": int(per_side),
        "target_train_rows": len(y_in),
    }

    results = []
    start = time.perf_counter()
    phi_target = _phi(model, x_pool[:n_targets], y_pool[:n_targets])
    loss_score = -np.logaddexp(0.0, -phi_target)  # minus the cross-entropy loss
    results.append(
        _result(
            "loss",
            loss_score,
            is_member,
            halves,
            observer,
            time.perf_counter() - start,
            common,
        )
    )

    start = time.perf_counter()
    shadows = context.effort.shadows
    scores = lira_scores(
        model, x_pool, y_pool, n_targets, task, shadows=shadows, train_rows=len(y_in), rng=rng
    )
    results.append(
        _result(
            "lira",
            scores,
            is_member,
            halves,
            observer,
            time.perf_counter() - start,
            {
                **common,
                "shadows": int(shadows),
                "shadow_train_rows": len(y_in),
                "fixed_variance": shadows < PER_EXAMPLE_VARIANCE_SHADOWS,
            },
        )
    )
    return results


def _model(context: AttackContext) -> LogisticModel | None:
    if isinstance(context.output, LogisticModel):
        return context.output
    recipient = context.problem.task.recipient
    for party, _, value in reversed(context.session.reveals):
        if party == recipient and isinstance(value, LogisticModel):
            return value
    return None


def _phi(model: LogisticModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Logit-scaled confidence in the true label: ``log(p_y / (1 - p_y))``."""
    return (2.0 * y - 1.0) * model.decision_function(x)


def lira_scores(
    model: LogisticModel,
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    n_targets: int,
    task: Any,
    *,
    shadows: int,
    train_rows: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return online LiRA scores (higher: more likely a member) of the first
    ``n_targets`` pool rows.

    Parameters
    ----------
    model : LogisticModel
        The target model.
    x_pool, y_pool : numpy.ndarray
        Rows the attacker trains shadows on (design matrix and 0/1 labels): the targets
        first, then rows that only fill the shadows' training sets.
    n_targets : int
        How many of the first pool rows are targets.
    task : Task
        The task; its logistic regression (``C``, ``max_iter``) trains the shadows.
    shadows : int
        Number of shadow models (at least 2, rounded down to an even number).
    train_rows : int
        Rows the target model was trained on; each shadow trains on as many (the
        targets drawn for it plus filler rows), so shadows overfit as the target does.
    rng : numpy.random.Generator
        Draws which shadows hold each target, and the filler rows.
    """
    shadows = max(2, shadows // 2 * 2)
    half = shadows // 2
    # Each target goes into exactly half of the shadows.
    inside = np.argsort(rng.random((n_targets, shadows)), axis=1) < half
    filler = np.arange(n_targets, len(y_pool))
    x_t, y_t = x_pool[:n_targets], y_pool[:n_targets]
    phi = np.empty((n_targets, shadows))
    for s in range(shadows):
        held = np.flatnonzero(inside[:, s])
        extra = min(max(0, train_rows - held.size), filler.size)
        rows = np.concatenate([held, rng.choice(filler, extra, replace=False)])
        phi[:, s] = _phi(_fit_shadow(x_pool[rows], y_pool[rows], task), x_t, y_t)
    phi_in = phi[inside].reshape(n_targets, half)
    phi_out = phi[~inside].reshape(n_targets, half)
    mu_in, mu_out = phi_in.mean(axis=1), phi_out.mean(axis=1)
    if shadows < PER_EXAMPLE_VARIANCE_SHADOWS:
        sd_in = np.full(n_targets, np.std(phi_in - mu_in[:, None]))
        sd_out = np.full(n_targets, np.std(phi_out - mu_out[:, None]))
    else:
        sd_in, sd_out = phi_in.std(axis=1), phi_out.std(axis=1)
    floor = 1e-9 * max(1.0, float(np.abs(phi).max()))
    sd_in, sd_out = np.maximum(sd_in, floor), np.maximum(sd_out, floor)
    observed = _phi(model, x_t, y_t)
    return norm.logpdf(observed, mu_in, sd_in) - norm.logpdf(observed, mu_out, sd_out)


def _fit_shadow(x: np.ndarray, y: np.ndarray, task: Any) -> LogisticModel:
    """Fit a shadow; a training set with one class gives the constant model."""
    if np.unique(y).size > 1:
        return fit_logistic(x, y, task)
    p = min(max(float(np.mean(y)), 1e-6), 1 - 1e-6)
    features = tuple(task.params["features"])
    return LogisticModel(np.zeros(x.shape[1]), float(np.log(p / (1 - p))), features)


def _stratified(
    y_in: np.ndarray, y_out: np.ndarray, per_side: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """Draw as many members as non-members, with the same number of positive labels on
    both sides (so the label mix of a random split is not mistaken for membership)."""
    pos_in, neg_in = np.flatnonzero(y_in == 1), np.flatnonzero(y_in != 1)
    pos_out, neg_out = np.flatnonzero(y_out == 1), np.flatnonzero(y_out != 1)
    prevalence = (pos_in.size + pos_out.size) / max(1, y_in.size + y_out.size)
    positives = min(round(per_side * prevalence), pos_in.size, pos_out.size)
    negatives = min(per_side - positives, neg_in.size, neg_out.size)
    if positives + negatives < 4:
        return None
    pick_in = np.concatenate(
        [rng.choice(pos_in, positives, replace=False), rng.choice(neg_in, negatives, replace=False)]
    )
    pick_out = np.concatenate(
        [
            rng.choice(pos_out, positives, replace=False),
            rng.choice(neg_out, negatives, replace=False),
        ]
    )
    if pick_in.size % 2:  # the two halves of the targets hold as many of each side
        pick_in, pick_out = pick_in[:-1], pick_out[:-1]
    return pick_in, pick_out


def _result(
    method: str,
    scores: np.ndarray,
    is_member: np.ndarray,
    halves: np.ndarray,
    observer: str,
    cost_s: float,
    extra: dict[str, Any],
) -> AttackResult:
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    scores = np.clip(scores, -1e300, 1e300)
    successes = cross_fitted_hits(scores, is_member, halves)
    return rate_result(
        ATTACK,
        "A0",
        observer,
        successes=successes,
        trials=len(scores),
        baseline=0.5,
        cost_s=cost_s,
        method=method,
        **roc_figures(scores, is_member),
        **extra,
    )
