"""The researcher's code for the ``syft`` backend, and what the data owner reads from it.

Each function the researcher submits states what it computes as a dict literal on its
first line (``spec = {...}``), then computes it with pandas. The data owner reads that
declaration (:func:`declared`, with :func:`ast.literal_eval`, never by running it),
runs the code on the private rows, and checks the output against its own computation
of the declared spec (:func:`pets.tasks.answer_query` for a query, :func:`site_table`
for a table) before its policy looks at it.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DECLARED",
    "DP_MECHANISM",
    "declared",
    "dp_query_code",
    "function_name",
    "query_code",
    "site_table",
    "table_code",
]

#: The variable a submitted function's first line binds to what it declares.
DECLARED = "spec"
#: The one DP mechanism the ``dp`` policy approves: the ``opendp`` backend's own
#: OpenDP measurement of a workload query (Laplace noise, pure epsilon-DP).
DP_MECHANISM = "pets.backends.dp.opendp_backend.query_measurement"


def query_code(name: str, query: Mapping[str, Any]) -> str:
    """The source of the researcher's function for one workload query (a card's filter
    is also a valid pandas query with the same meaning; see :mod:`pets.expressions`)."""
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


def dp_query_code(name: str, query: Mapping[str, Any], epsilon: float) -> str:
    """The source of the researcher's function for one workload query released through
    :data:`DP_MECHANISM` at ``epsilon``: the template the ``dp`` policy approves."""
    spec = {"query": dict(query), "mechanism": DP_MECHANISM, "epsilon": float(epsilon)}
    module, function = DP_MECHANISM.rsplit(".", 1)
    return (
        "\n".join(
            [
                f"def {name}(rows):",
                f"    {DECLARED} = {spec!r}",
                f"    from {module} import {function}",
                f"    released = {function}(spec['query'], spec['epsilon'])(rows)",
                "    histogram = spec['query']['kind'] == 'histogram'",
                "    return list(released) if histogram else released[0]",
            ]
        )
        + "\n"
    )


def function_name(source: str) -> str | None:
    """The name of the one function ``source`` defines, or None."""
    try:
        (function,) = ast.parse(source).body
    except (SyntaxError, ValueError):
        return None
    return function.name if isinstance(function, ast.FunctionDef) else None


def table_code(
    name: str, group_by: Sequence[str], sums: Sequence[str], min_cell_size: int | None
) -> str:
    """The source of the researcher's function for one site's table: ``n`` and the sum
    of each of ``sums`` per observed cell of ``group_by``. With ``min_cell_size`` the
    researcher suppresses cells of fewer patients itself (their values NaN), as a TRE's
    researchers write code to its output rules."""
    spec = {"group_by": list(group_by), "sums": list(sums), "min_cell_size": min_cell_size}
    return (
        "\n".join(
            [
                f"def {name}(rows):",
                f"    {DECLARED} = {spec!r}",
                "    keys, sums = spec['group_by'], spec['sums']",
                "    frame = rows[keys + sums].astype({c: 'float64' for c in sums})",
                "    grouped = frame.groupby(keys, observed=True)",
                "    table = grouped[sums].sum().add_suffix('_sum')",
                "    table.insert(0, 'n', grouped.size().astype('float64'))",
                "    if spec['min_cell_size']:",
                "        table[table['n'] < spec['min_cell_size']] = float('nan')",
                "    table = table.reset_index()",
                "    return table.astype({k: str for k in keys})",
            ]
        )
        + "\n"
    )


def site_table(frame: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """The data owner's own computation of a declared table spec (as :func:`table_code`
    computes it), to check the researcher's code against."""
    keys, sums = list(spec["group_by"]), list(spec["sums"])
    columns = frame[keys + sums].astype(dict.fromkeys(sums, np.float64))
    grouped = columns.groupby(keys, observed=True)
    table = (
        grouped[sums].sum().add_suffix("_sum") if sums else pd.DataFrame(index=grouped.size().index)
    )
    table.insert(0, "n", grouped.size().astype(np.float64))
    if spec.get("min_cell_size"):
        table[table["n"] < spec["min_cell_size"]] = np.nan
    table = table.reset_index()
    return table.astype(dict.fromkeys(keys, str))


def declared(source: str) -> dict[str, Any] | None:
    """What a submitted function declares on its first line, or None."""
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
