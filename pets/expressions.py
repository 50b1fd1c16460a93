"""Row filters written in a scenario card, read as data and never run as code.

A card selects rows with small expressions: the data ``filter``, a party's ``query``
in an overlap split, a linkage party's eligibility ``criteria`` and a workload query's
``filter``. They are parsed here with Python's :mod:`ast` and accepted only if every
node is in a short whitelist, then evaluated with vectorised pandas operations. They
never reach :meth:`pandas.DataFrame.query` or :func:`pandas.eval`, which would let a
card call methods (``nhs_number.to_csv(...)``), reach ``@`` locals or import modules.

The grammar::

    expression := expression "or" expression | expression "and" expression
                | "not" expression | "(" expression ")" | comparison | BOOLEAN_COLUMN
    comparison := operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand)+
                | COLUMN ["not"] "in" "[" literal ("," literal)* "]"
    operand    := COLUMN | literal
    literal    := NUMBER | "-" NUMBER | STRING | True | False

Column names come from the card's data source (the cohort schema,
:data:`pets.data.COLUMNS`). Every accepted expression is also a valid pandas query with
the same meaning, so the masks agree with what ``DataFrame.query`` gave.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "FILTER_GRAMMAR",
    "MAX_LENGTH",
    "ExpressionError",
    "RowFilter",
    "filter_names",
    "parse_filter",
    "select_rows",
]

#: Longest expression accepted, in characters.
MAX_LENGTH = 100_000
_MAX_DEPTH = 40

#: What a filter may use, for error messages.
FILTER_GRAMMAR = (
    "column names, numbers, strings, comparisons (== != < <= > >=), and/or/not, "
    "parentheses and 'column in [...]' lists"
)

_COMPARE: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


class ExpressionError(ValueError):
    """A filter expression is outside the grammar or names an unknown column.

    The message is one line: what is wrong and what is allowed.
    """


@dataclass(frozen=True)
class RowFilter:
    """A parsed filter: its text, the columns it reads, and its checked syntax tree.

    Build one with :func:`parse_filter`; evaluate it with :meth:`mask`.
    """

    text: str
    columns: tuple[str, ...]
    tree: ast.Expression

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Return a boolean array, one entry per row of ``frame``: the rows it keeps.

        Raises
        ------
        ExpressionError
            A column is missing from ``frame``, or a comparison does not apply to the
            column's values (a text column compared with ``<`` against a number).
        """
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ExpressionError(
                f"filter {self.text!r} reads {', '.join(map(repr, missing))}, not a column of "
                f"this data; columns: {', '.join(map(str, frame.columns))}"
            )
        try:
            result = _Evaluator(frame).condition(self.tree.body)
        except (TypeError, ValueError) as exc:
            raise ExpressionError(f"filter {self.text!r} cannot be applied: {exc}") from None
        return np.asarray(result, dtype=bool)


def parse_filter(text: str, columns: Sequence[str] | None) -> RowFilter:
    """Parse ``text`` as a filter over ``columns``.

    Parameters
    ----------
    text : str
        The expression, as written in the card.
    columns : sequence of str or None
        Column names the expression may read; None accepts any name but a dunder one.

    Raises
    ------
    ExpressionError
        Syntax outside the grammar (calls, attributes, subscripts, arithmetic, ``@``
        names, lambdas), an unknown name (with "did you mean"), or too long.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"a filter must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"filter is {len(text)} characters long; at most {MAX_LENGTH}")
    if not text.strip():
        raise ExpressionError("filter is empty; leave the field out to keep every row")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        raise ExpressionError(
            f"filter {_clip(text)!r} is not an expression of the grammar ({reason}); "
            f"allowed: {FILTER_GRAMMAR}"
        ) from None
    checker = _Checker(text, None if columns is None else tuple(columns))
    checker.condition(tree.body, 0)
    return RowFilter(text, tuple(dict.fromkeys(checker.used)), tree)


def select_rows(frame: pd.DataFrame, text: str) -> pd.DataFrame:
    """Return the rows of ``frame`` that ``text`` keeps (all rows for an empty filter).

    The index is kept, as :meth:`pandas.DataFrame.query` keeps it.

    Raises
    ------
    ExpressionError
        See :func:`parse_filter` and :meth:`RowFilter.mask`.
    """
    if not text:
        return frame
    return frame[parse_filter(text, [str(c) for c in frame.columns]).mask(frame)]


def filter_names(text: str) -> tuple[str, ...]:
    """Return the names ``text`` reads, in order of first use (empty for no filter).

    Any name is accepted here (the grammar is still checked); :meth:`RowFilter.mask`
    checks them against the frame.
    """
    return parse_filter(text, None).columns if text else ()


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _describe(node: ast.AST) -> str:
    names = {
        ast.Call: "a function or method call",
        ast.Attribute: "attribute access ('.')",
        ast.Subscript: "subscripts ('[...]' after a name)",
        ast.BinOp: "arithmetic",
        ast.Lambda: "a lambda",
        ast.NamedExpr: "an assignment",
        ast.JoinedStr: "an f-string",
        ast.IfExp: "a conditional expression",
        ast.Starred: "'*'",
    }
    return names.get(type(node), f"'{type(node).__name__}'")


class _Checker:
    """Walk a parsed expression and refuse anything outside the grammar."""

    def __init__(self, text: str, columns: tuple[str, ...] | None) -> None:
        self.text = text
        self.columns = columns
        self.used: list[str] = []

    def refuse(self, node: ast.AST, what: str) -> ExpressionError:
        part = ast.get_source_segment(self.text.strip(), node) or ""
        where = f" in {_clip(part, 60)!r}" if part and part != self.text.strip() else ""
        return ExpressionError(
            f"filter {_clip(self.text)!r} uses {what}{where}, which a filter may not; "
            f"allowed: {FILTER_GRAMMAR}"
        )

    def condition(self, node: ast.AST, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise ExpressionError(f"filter is nested more than {_MAX_DEPTH} levels deep")
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And | ast.Or):
            for value in node.values:
                self.condition(value, depth + 1)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self.condition(node.operand, depth + 1)
        elif isinstance(node, ast.Compare):
            self.compare(node)
        elif isinstance(node, ast.Name):
            self.column(node)
        else:
            raise self.refuse(node, _describe(node))

    def compare(self, node: ast.Compare) -> None:
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            left, right = operands[i], operands[i + 1]
            if isinstance(op, ast.In | ast.NotIn):
                if len(node.ops) != 1 or not isinstance(left, ast.Name):
                    raise self.refuse(node, "'in' other than 'column in [...]'")
                self.column(left)
                if not isinstance(right, ast.List | ast.Tuple) or not right.elts:
                    raise self.refuse(right, "'in' without a non-empty list of values")
                for element in right.elts:
                    self.literal(element)
            elif type(op) in _COMPARE:
                for side in (left, right):
                    self.operand(side)
            else:
                raise self.refuse(node, "'is' (use == or !=)")

    def operand(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            self.column(node)
        else:
            self.literal(node)

    def literal(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, bool | int | float | str):
            return
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) in (int, float)
        ):
            return
        if isinstance(node, ast.Constant):
            raise self.refuse(node, f"a {type(node.value).__name__} value")
        raise self.refuse(node, _describe(node))

    def column(self, node: ast.Name) -> None:
        name = node.id
        if name.startswith("__"):
            raise self.refuse(node, f"the name {name!r}")
        if self.columns is not None and name not in self.columns:
            close = difflib.get_close_matches(name, self.columns, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ";"
            raise ExpressionError(
                f"filter {_clip(self.text)!r} names {name!r}, not a column{hint} "
                f"columns: {', '.join(self.columns)}"
            )
        self.used.append(name)


class _Evaluator:
    """Evaluate a checked expression to a boolean mask over ``frame``."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.n = len(frame)

    def condition(self, node: ast.AST) -> np.ndarray:
        if isinstance(node, ast.BoolOp):
            masks = [self.condition(v) for v in node.values]
            reduce = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            return reduce.reduce(masks)
        if isinstance(node, ast.UnaryOp):
            return ~self.condition(node.operand)
        if isinstance(node, ast.Name):
            return self.boolean_column(node.id)
        assert isinstance(node, ast.Compare)
        operands = [node.left, *node.comparators]
        result = np.ones(self.n, dtype=bool)
        for i, op in enumerate(node.ops):
            result &= self.compare(operands[i], op, operands[i + 1])
        return result

    def boolean_column(self, name: str) -> np.ndarray:
        series = self.frame[name]
        if not pd.api.types.is_bool_dtype(series):
            raise TypeError(f"column {name!r} is not true/false; compare it, e.g. {name} == 1")
        return series.to_numpy(dtype=bool)

    def compare(self, left: ast.AST, op: ast.cmpop, right: ast.AST) -> np.ndarray:
        if isinstance(op, ast.In | ast.NotIn):
            assert isinstance(left, ast.Name) and isinstance(right, ast.List | ast.Tuple)
            values = [_literal(e) for e in right.elts]
            hit = self.frame[left.id].isin(values).to_numpy(dtype=bool)
            return ~hit if isinstance(op, ast.NotIn) else hit
        symbol = _COMPARE[type(op)]
        if not isinstance(left, ast.Name) and isinstance(right, ast.Name):
            left, right, symbol = right, left, _FLIP[symbol]
        a = self.value(left)
        b = self.value(right)
        if not isinstance(a, pd.Series):
            return np.full(self.n, _apply(a, symbol, b), dtype=bool)
        return np.asarray(_apply(a, symbol, b), dtype=bool)

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            return self.frame[node.id]
        return _literal(node)


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.UnaryOp):
        return -_literal(node.operand)
    assert isinstance(node, ast.Constant)
    return node.value


def _apply(a: Any, symbol: str, b: Any) -> Any:
    if symbol == "==":
        return a == b
    if symbol == "!=":
        return a != b
    if symbol == "<":
        return a < b
    if symbol == "<=":
        return a <= b
    if symbol == ">":
        return a > b
    return a >= b
