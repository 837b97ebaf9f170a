"""Safe conversion between equation text (TOML specs, saved files) and SymPy.

:func:`parse_expression` never evaluates text: it parses it with
``ast.parse(..., mode="eval")`` and builds SymPy objects from a strict whitelist
of syntax nodes, with bounds on size, nesting and numeric growth so that every
input is accepted or refused in bounded time.  :func:`expr_to_text` prints an
expression so that parsing the text gives back an equal expression (Floats are
printed with 17 significant digits, Rationals as ``p/q``).

Bounds: at most 20,000 characters, bracket/AST depth 100 (``a + b + c`` chains
count once), 5,000 AST nodes, literals up to 1e300 or 300 digits, constant
exponents up to 1000, exact numbers up to ~20,000 bits, 16 Min/Max arguments
per call (32 per equation), 64 comparisons with 300 nodes in all.

Caveats
-------
* ``#`` is refused: line breaks are turned into spaces, so a comment would hide the
  rest of a multi-line equation.
* Python's ``^`` is accepted as a power and rewritten to ``**`` before parsing,
  so ``x^2 + 1`` means ``x**2 + 1``; column numbers in errors refer to the
  text after this rewrite and after line breaks were turned into spaces.
* Function calls and non-integer powers with symbolic arguments are built
  with ``evaluate=False`` (SymPy's automatic simplification can run for
  minutes on large arguments): ``Abs(-x)`` stays ``Abs(-x)``.  Text printed by
  :func:`expr_to_text` from evaluated SymPy still parses back to an equal tree.
* A symbol named ``pi`` or ``E`` shadows the constant of that name; symbol
  names must be Python identifiers (not keywords such as ``lambda``).
* Floats round-trip at double precision (higher-precision Floats are rounded);
  ``oo``, ``nan`` and complex numbers are refused.
"""

from __future__ import annotations

import ast
from typing import Mapping

import sympy as sp
from sympy.printing.str import StrPrinter

from .functions import FUNCTIONS, TEXT_ALIASES
from ..errors import ExpressionError, suggest

__all__ = ["parse_expression", "expr_to_text", "ALLOWED_FUNCTIONS"]

MAX_CHARS, MAX_DEPTH, MAX_NODES = 20_000, 100, 5_000
MAX_ABS_LITERAL, MAX_INT_DIGITS, MAX_EXPONENT, MAX_NUMBER_BITS = 1e300, 300, 1000, 20_000
# SymPy compares Min/Max arguments pairwise and tries to decide every relation:
# both are costly on symbolic arguments, so their number is bounded too.
MAX_MINMAX_ARGS, MAX_MINMAX_TOTAL, MAX_COMPARISONS = 16, 32, 64
MAX_CONDITION_NODES = 300   # SymPy tries to decide each comparison: keep operands small

# name -> (SymPy callable, min args, max args): the functions the compiler supports
# (sysid.model.functions, the one list shared with the model and the compiler) and aliases.
_FUNCTIONS: dict[str, tuple] = {
    name: (FUNCTIONS[target].build, FUNCTIONS[target].min_args, FUNCTIONS[target].max_args)
    for name, target in [(n, n) for n in FUNCTIONS] + list(TEXT_ALIASES.items())}
ALLOWED_FUNCTIONS: tuple[str, ...] = tuple(_FUNCTIONS)
_CONSTANTS = {"pi": sp.pi, "E": sp.E}
_ARITH = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.BitXor)
_FAMILY = {ast.Add: "add", ast.Sub: "add", ast.Mult: "mul", ast.Div: "mul"}
_COMPARE = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge,
            ast.Eq: sp.Eq, ast.NotEq: sp.Ne}
_ALLOWED_TEXT = ("numbers, symbol names, pi, E, + - * / ** (or ^), unary -, calls "
                 f"to {', '.join(ALLOWED_FUNCTIONS)}, and Piecewise((value, condition), ...) "
                 "whose conditions use <, <=, >, >=, ==, !=, and, or, not, True, False")


class _Refused(Exception):
    """Internal: carries (message, node) up to parse_expression."""


def _bits(n) -> int:
    """Rough size in bits of the exact rational coefficient of ``n``."""
    c = n.as_coeff_Mul()[0] if isinstance(n, sp.Expr) else n
    return c.p.bit_length() + c.q.bit_length() if isinstance(c, sp.Rational) else 0


def _family(node) -> str | None:
    return _FAMILY.get(type(node.op)) if isinstance(node, ast.BinOp) else None


def _check_shape(tree: ast.AST) -> None:
    """Iteratively bound node count and depth (same-operator chains count once)."""
    count, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, ast.expr):
            count += 1
        if depth > MAX_DEPTH or count > MAX_NODES:
            what = f"nested deeper than {MAX_DEPTH} levels" if depth > MAX_DEPTH \
                else f"made of more than {MAX_NODES} parts"
            raise _Refused(f"Expression is {what}. Fix: simplify it or split it into "
                           "helper terms", node)
        fam = _family(node)
        for child in ast.iter_child_nodes(node):
            same = (fam is not None and child is getattr(node, "left", None)
                    and _family(child) == fam)
            stack.append((child, depth if same else depth + 1))


class _Builder:
    """Turn a checked Python AST into SymPy, refusing anything off the whitelist."""

    def __init__(self, symbols: Mapping[str, sp.Basic]):
        self.symbols = symbols
        self.n_minmax = self.n_compare = self.n_condition_nodes = 0

    def expr(self, node):
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None or isinstance(node, ast.Compare):   # conditions: see cond()
            self.refuse(node)
        return method(node)

    def cond(self, node):
        """Build a Piecewise condition."""
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return sp.true if node.value else sp.false
        if isinstance(node, ast.Compare):
            return self._Compare(node)
        if isinstance(node, ast.BoolOp):
            kind = sp.And if isinstance(node.op, ast.And) else sp.Or
            return kind(*map(self.cond, node.values))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return sp.Not(self.cond(node.operand))
        raise _Refused(f"{_describe(node)} is not a condition; a Piecewise condition must "
                       "be a comparison (<, <=, >, >=, ==, !=) combined with and/or/not, "
                       "or True/False", node)

    def refuse(self, node):
        hint = " Comparisons and and/or/not are only allowed as Piecewise conditions." \
            if isinstance(node, (ast.Compare, ast.BoolOp)) else ""
        raise _Refused(f"{_describe(node)} is not allowed in an equation.{hint} "
                       f"Allowed: {_ALLOWED_TEXT}", node)

    # --- leaves
    def _Constant(self, node):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.refuse(node)
        if isinstance(v, int):
            if abs(v) >= 10**MAX_INT_DIGITS:
                raise _Refused("Integer literal has more than 300 digits, too long "
                               f"(at most {MAX_INT_DIGITS}); use a float like 1.5e20", node)
            return sp.Integer(v)
        if not abs(v) <= MAX_ABS_LITERAL:
            raise _Refused(f"Number {v!r} is too large (|value| must be <= "
                           f"{MAX_ABS_LITERAL:g}). Fix: rescale the quantity (choose units "
                           "where it is moderate)", node)
        return sp.Float(v)

    def _Name(self, node):
        if node.id in self.symbols:
            return self.symbols[node.id]
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id in _FUNCTIONS:
            raise _Refused(f"Function '{node.id}' is used without arguments; call it, "
                           f"e.g. {node.id}(x)", node)
        known = list(self.symbols) + list(_CONSTANTS)
        raise _Refused(f"Unknown name '{node.id}'.{suggest(node.id, known)} Known symbols: "
                       f"{sorted(self.symbols)} (and the constants pi, E). Fix: declare it "
                       "as a state, input or parameter, or correct the spelling", node)

    # --- operators
    def _UnaryOp(self, node):
        if isinstance(node.op, ast.USub):
            return -self.expr(node.operand)
        if isinstance(node.op, ast.UAdd):
            return self.expr(node.operand)
        self.refuse(node)

    def _BinOp(self, node):
        op = type(node.op)
        if op not in _ARITH:
            self.refuse(node)
        if op in (ast.Pow, ast.BitXor):
            return self.power(self.expr(node.left), self.expr(node.right), node)
        # flatten the left spine of a + - or * / chain without recursion
        fam, items = _family(node), []
        while _family(node) == fam:
            items.append((type(node.op), node.right))
            node = node.left
        first = self.expr(node)
        pos, neg = [first], []
        for op, right in reversed(items):
            (pos if op in (ast.Add, ast.Mult) else neg).append(self.expr(right))
        if fam == "add":
            terms = pos + [-t for t in neg]
            self.check_bits(terms, node)
            return sp.Add(*terms)
        # a/b with integers becomes the exact Rational a/b
        facs = pos + [self.power(d, sp.Integer(-1), node) for d in neg]
        self.check_bits(facs, node)
        return sp.Mul(*facs)

    def power(self, base, exp, node):
        if exp.is_number:
            try:
                size = abs(complex(exp.evalf(15)))
            except (TypeError, ValueError):
                size = float("inf")
            if not size <= MAX_EXPONENT:
                raise _Refused(f"Constant exponent {_clip(exp)} is too large (|exponent| must be "
                               f"<= {MAX_EXPONENT}). Fix: use a smaller exponent or rescale the "
                               "variables", node)
            if base.is_number and not base.free_symbols:
                bits = max([_bits(a) for a in base.atoms(sp.Rational)] + [1])
                if bits * size > MAX_NUMBER_BITS:
                    raise _Refused(f"Power {_clip(base)}**{_clip(exp)} would create a number "
                                   f"with about {int(bits * size * 0.30103)} digits. Fix: use a "
                                   "float base, e.g. 9.0**50", node)
        if base.free_symbols and not exp.is_Integer:   # skip costly root simplification
            return sp.Pow(base, exp, evaluate=False)
        return sp.Pow(base, exp)

    def check_bits(self, args, node):
        if sum(_bits(a) for a in args) > MAX_NUMBER_BITS:
            raise _Refused("Exact numbers in this expression grow too large. Fix: "
                           "write large constants as floats, e.g. 1.5e20", node)

    def _Compare(self, node):
        self.n_compare += len(node.ops)
        self.n_condition_nodes += sum(isinstance(n, ast.expr) for n in ast.walk(node))
        if self.n_compare > MAX_COMPARISONS or self.n_condition_nodes > MAX_CONDITION_NODES:
            raise _Refused(f"Conditions are too large (at most {MAX_COMPARISONS} comparisons "
                           f"and {MAX_CONDITION_NODES} parts in all comparisons of one "
                           "equation). Fix: simplify the conditions, e.g. compare a "
                           "helper state instead of a long expression", node)
        parts, left = [], self.expr(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            if type(op) not in _COMPARE:
                self.refuse(node)
            right = self.expr(right_node)
            parts.append(_COMPARE[type(op)](left, right))
            left = right
        return parts[0] if len(parts) == 1 else sp.And(*parts)

    # --- calls
    def _Call(self, node):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name is None:
            raise _Refused(f"Only plain function names can be called, received "
                           f"{_describe(node.func)} as the function. Fix: call an allowed "
                           "function by name, e.g. sin(x)", node.func)
        if name not in _FUNCTIONS:
            raise _Refused(f"Unknown function '{name}'.{suggest(name, ALLOWED_FUNCTIONS)} "
                           f"Allowed functions: {', '.join(ALLOWED_FUNCTIONS)}", node)
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise _Refused(f"'{name}' takes positional arguments only (no keywords like "
                           "name=value, no *args). Fix: pass values in order, e.g. Min(x, 1)",
                           node)
        fn, lo, hi = _FUNCTIONS[name]
        if not lo <= len(node.args) <= (hi or MAX_NODES):
            want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi else f"at least {lo}"
            raise _Refused(f"'{name}' takes {want} argument(s), received {len(node.args)}. "
                           "Fix: correct the number of arguments", node)
        if name == "Piecewise":
            pairs = []
            for arg in node.args:
                if not (isinstance(arg, ast.Tuple) and len(arg.elts) == 2):
                    raise _Refused("Piecewise arguments must be (value, condition) pairs, "
                                   f"received {_describe(arg)}. Fix: write e.g. "
                                   "Piecewise((x, x > 0), (0, True))", arg)
                pairs.append((self.expr(arg.elts[0]), self.cond(arg.elts[1])))
            return fn(*pairs)
        if name in ("Min", "Max"):
            self.n_minmax += len(node.args)
            if len(node.args) > MAX_MINMAX_ARGS or self.n_minmax > MAX_MINMAX_TOTAL:
                raise _Refused(f"Too many Min/Max arguments (at most {MAX_MINMAX_ARGS} per "
                               f"call and {MAX_MINMAX_TOTAL} per equation). Fix: simplify, "
                               "or split the equation into helper terms", node)
        args = [self.expr(a) for a in node.args]
        if (name == "log" and len(args) == 2) or not any(a.free_symbols for a in args):
            return fn(*args)
        # SymPy's automatic simplification of a symbolic argument can run its
        # assumption system for minutes on large inputs (e.g. Heaviside, Abs,
        # Min); skipping it keeps parsing bounded and canonical input unchanged.
        return fn(*args, evaluate=False)


def _describe(node) -> str:
    if isinstance(node, ast.Constant):
        return f"constant {node.value!r} ({type(node.value).__name__})"
    if isinstance(node, ast.Name):
        return f"name '{node.id}'"
    names = {"Attribute": "attribute access (a.b)", "Subscript": "indexing (a[b])",
             "Lambda": "lambda", "IfExp": "conditional expression (a if c else b)",
             "NamedExpr": "assignment expression (:=)", "JoinedStr": "f-string",
             "ListComp": "list comprehension", "GeneratorExp": "generator expression",
             "Starred": "starred argument (*a)", "Tuple": "tuple", "List": "list",
             "Compare": "comparison", "BoolOp": "and/or", "Dict": "dict", "Set": "set"}
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        ops = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<",
               ast.RShift: ">>", ast.BitOr: "|", ast.BitAnd: "&", ast.Invert: "~",
               ast.Not: "not"}
        return f"operator '{ops.get(type(node.op), type(node.op).__name__)}'"
    return names.get(type(node).__name__, f"Python construct '{type(node).__name__}'")


def _clip(obj, n: int = 40) -> str:
    text = str(obj)
    return text if len(text) <= n else text[: n - 3] + "..."


def _bracket_depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    return deepest


def parse_expression(text: str, symbols: Mapping[str, sp.Symbol]) -> sp.Expr:
    """Parse equation text into a SymPy expression, safely.

    Parameters
    ----------
    text : str
        Python-like arithmetic, e.g. ``"a*x - b*x*y"`` or
        ``"Piecewise((-mu*v, v > 0), (mu*v, True))"``.
    symbols : mapping of str to sympy.Symbol
        The names the text may use (they shadow the constants ``pi`` and ``E``).

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ExpressionError
        For syntax errors, unknown names, constructs outside the whitelist, and
        inputs over the size bounds; the message names the construct and column.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"An equation must be a string, received {type(text).__name__} "
                              f"{text!r}. Fix: write it as text, e.g. \"-k*x\".")
    if len(text) > MAX_CHARS:
        raise ExpressionError(f"Equation text has {len(text)} characters, more than the "
                              f"limit of {MAX_CHARS}. Fix: split it into helper terms.")
    src = " ".join(text.split()).replace("^", "**")
    short = src if len(src) <= 80 else src[:77] + "..."
    if not src:
        raise ExpressionError("Equation text is empty. Fix: write an expression, e.g. \"-k*x\".")
    if "#" in src:
        # line breaks become spaces, so a comment would silently swallow the next lines
        raise ExpressionError(f"Equation {short!r} contains '#' at column {src.index('#') + 1}; "
                              "comments are not allowed inside equation text (they would "
                              "hide the rest of a multi-line equation). Fix: move the comment "
                              "out of the string, e.g. x = \"-k*x\"  # decay.")
    if _bracket_depth(src) > MAX_DEPTH:
        raise ExpressionError(f"Equation {short!r} nests brackets deeper than {MAX_DEPTH} "
                              "levels. Fix: simplify the expression.")
    try:
        tree = ast.parse(src, mode="eval")
        _check_shape(tree)
        expr = _Builder(symbols).expr(tree.body)
    except SyntaxError as exc:
        at = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"Invalid syntax in equation {short!r}{at}: "
                              f"{exc.msg}. Fix: use Python arithmetic syntax, e.g. "
                              "\"-k*x + c*sin(t)\".") from None
    except _Refused as exc:
        message, node = exc.args
        col = getattr(node, "col_offset", -1) + 1
        at = f", column {col}" if col > 0 else ""
        raise ExpressionError(f"In equation {short!r}{at}: {message}.") from None
    except (RecursionError, MemoryError) as exc:
        raise ExpressionError(f"Equation {short!r} is too deeply nested or too long for the "
                              f"parser ({type(exc).__name__}). Fix: simplify it or split it "
                              "into helper terms.") from None
    except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
        raise ExpressionError(f"Equation {short!r} could not be built ({type(exc).__name__}: "
                              f"{exc}). Fix: check the function arguments and the "
                              "conditions.") from None
    if not isinstance(expr, sp.Expr):
        raise ExpressionError(f"Equation {short!r} is a condition ({expr}), not a number. "
                              "Fix: wrap it, e.g. Piecewise((1, x > 0), (0, True)).")
    bad = [s for s in (sp.nan, sp.zoo, sp.oo, -sp.oo, sp.I) if expr.has(s)]
    if bad:
        raise ExpressionError(f"Equation {short!r} evaluates to a non-finite or complex value "
                              f"({bad[0]}), e.g. from a division by zero. Fix: rewrite it so "
                              "that it is finite and real.")
    return expr


class _SpecPrinter(StrPrinter):
    """StrPrinter whose output :func:`parse_expression` reads back exactly."""

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Relational(self, expr):
        op = {"==": "==", "!=": "!="}.get(expr.rel_op, expr.rel_op)
        prec = 0  # parenthesize nothing arithmetic: comparisons bind loosest
        return f"{self.parenthesize(expr.lhs, prec)} {op} {self.parenthesize(expr.rhs, prec)}"

    def _print_And(self, expr):
        return " and ".join(f"({self._print(a)})" for a in expr.args)

    def _print_Or(self, expr):
        return " or ".join(f"({self._print(a)})" for a in expr.args)

    def _print_Not(self, expr):
        return f"not ({self._print(expr.args[0])})"

    def _print_Xor(self, expr):
        # no xor in the grammar: spell it with and/or/not (equal values, other tree)
        if len(expr.args) > 3:
            raise ExpressionError(f"Cannot write Xor with {len(expr.args)} arguments as text "
                                  f"(received {_clip(expr)}). Fix: nest Xor of 2 arguments.")
        text = f"({self._print(expr.args[0])})"
        for arg in expr.args[1:]:
            other = f"({self._print(arg)})"
            text = f"(({text}) and not {other}) or (not ({text}) and {other})"
        return text

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"


def expr_to_text(expr: sp.Expr) -> str:
    """Print ``expr`` so that :func:`parse_expression` gives back an equal expression.

    Parameters
    ----------
    expr : sympy.Expr

    Returns
    -------
    str
    """
    return _SpecPrinter().doprint(expr)
