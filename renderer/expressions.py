"""Safe expressions of time and music for preset values: `0.02 + 0.01 * sin(4b)`.

Parsed with Python's `ast` and checked against a whitelist (numbers, the names below, arithmetic,
comparisons, `a if c else b` and the listed functions) before anything runs; never `eval`.
Evaluated vectorised: every name is an array over the frames (or control points) at once.

Periods and times may carry a unit: `4b` beats, `2s` seconds, `48f` frames (`2` alone is
seconds). Oscillators take a period: `sin(4b)`, `tri(2s)`, `saw(1b)` go -1..1 (saw 0..1),
`pulse(1b, 0.25)` is 1 for the first quarter of each period, else 0.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import numpy as np

# names an expression may read; bound by the caller to arrays over the evaluation times
VARIABLES = ("t", "beat", "bar", "phase", "bpm", "frame", "onset", "percussive", "harmonic",
             "rms", "low", "mid", "high", "section")
_UNIT = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?|\.\d+)([bsf])\b")


@dataclass(frozen=True)
class Period:
    """A length with its unit: beats, seconds or frames."""
    value: float
    unit: str  # "b", "s" or "f"


class ExpressionError(ValueError):
    """An expression that does not parse or uses what it may not."""


@dataclass(frozen=True)
class TimeSpec:
    """A time on the timeline: seconds (`12.5`, `1:04.2`), beats (`16b`), bars (`4bar`, from
    the first downbeat) or frames (`48f`)."""
    value: float
    unit: str  # "s", "b", "bar" or "f"

    @classmethod
    def parse(cls, given) -> "TimeSpec":
        text = str(given).strip()
        try:
            if isinstance(given, bool):
                raise ValueError
            if isinstance(given, (int, float)):  # a YAML number: seconds, range checked below
                value, unit = float(given), "s"
            elif text.endswith("bar"):
                value, unit = float(text[:-3]), "bar"
            elif text[-1:] in ("b", "f", "s"):
                value, unit = float(text[:-1]), text[-1]
            elif ":" in text:
                minutes, _, seconds = text.partition(":")
                value, unit = int(minutes) * 60 + float(seconds), "s"
            else:
                value, unit = float(text), "s"
        except ValueError:
            raise ExpressionError(f"'{given}' is not a time: write seconds (12.5 or 1:04.2), "
                                  "beats (16b), bars (4bar) or frames (48f)") from None
        if not 0 <= value <= 1e7:  # NaN and infinities too
            raise ExpressionError(f"time '{given}' is out of range: use 0 to 1e7 (seconds, "
                                  "beats, bars or frames)")
        return cls(value, unit)

    def __str__(self) -> str:
        return f"{self.value:g}{self.unit}"


def _phase(period, names: dict) -> np.ndarray:
    """Position in cycles (0..) of the evaluation times for an oscillator of `period`."""
    if not isinstance(period, Period):
        period = Period(float(period), "s")
    if period.value <= 0:
        raise ExpressionError(f"an oscillator's period must be above 0 (got {period.value:g})")
    clock = {"b": names["beat"], "s": names["t"], "f": names["frame"]}[period.unit]
    return np.asarray(clock, dtype=np.float64) / period.value


def _osc(shape):
    def oscillator(period, names):
        return shape(_phase(period, names))
    return oscillator


def _pulse(period, width=0.1, *, names):
    return (np.mod(_phase(period, names), 1.0) < width).astype(np.float64)


OSCILLATORS = {
    "sin": _osc(lambda p: np.sin(2 * np.pi * p)),
    "tri": _osc(lambda p: 1 - 4 * np.abs(np.mod(p + 0.25, 1.0) - 0.5)),
    "saw": _osc(lambda p: np.mod(p, 1.0)),
}
FUNCTIONS = {
    "abs": np.abs, "sqrt": lambda x: np.sqrt(np.maximum(x, 0)), "exp": np.exp,
    "log": lambda x: np.log(np.maximum(x, 1e-12)), "floor": np.floor, "ceil": np.ceil,
    "round": np.round, "min": np.minimum, "max": np.maximum,
    "clip": lambda x, lo, hi: np.clip(x, lo, hi),
    "smoothstep": lambda x: np.clip(x, 0, 1) ** 2 * (3 - 2 * np.clip(x, 0, 1)),
}
CONSTANTS = {"pi": np.pi}


@dataclass(frozen=True)
class Grammar:
    """What an expression may read and call: this project's preset expressions (`PRESET`), or
    another tool's dialect evaluated in its own namespace (`renderer.deforum.DEFORUM`)."""
    variables: tuple[str, ...]
    functions: dict
    constants: dict
    units: bool = True  # `4b`, `2s`, `48f` periods and the oscillators that take them


PRESET = Grammar(VARIABLES, FUNCTIONS, CONSTANTS)
_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
           ast.Div: np.divide, ast.Mod: np.mod, ast.Pow: np.power}
_COMPARE = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater,
            ast.GtE: np.greater_equal, ast.Eq: np.equal, ast.NotEq: np.not_equal}


MAX_CHARS = 2000  # a preset's expression is a formula, not a program


class Expression:
    """A checked expression; `evaluate(names)` gives an array (or a number)."""

    def __init__(self, text: str, grammar: Grammar = PRESET):
        self.text, self.grammar = text, grammar
        if len(text) > MAX_CHARS:
            raise ExpressionError(f"'{text[:40]}...' is {len(text)} characters long: an "
                                  f"expression may have at most {MAX_CHARS}")
        source = text.strip()
        if grammar.units:
            source = _UNIT.sub(lambda m: f"_period({m.group(1)}, '{m.group(2)}')", source)
        try:
            self.tree = ast.parse(source, mode="eval").body
        except SyntaxError as exc:
            raise ExpressionError(f"'{text}' does not parse ({exc.msg})") from None
        except (RecursionError, MemoryError):
            raise ExpressionError(f"'{text[:40]}...' is nested too deeply") from None
        self.names: set[str] = set()
        try:
            self._check(self.tree)
        except RecursionError:
            raise ExpressionError(f"'{text[:40]}...' is nested too deeply") from None

    def _check(self, node) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return
        grammar = self.grammar
        if isinstance(node, ast.Name):
            if node.id not in grammar.variables and node.id not in grammar.constants:
                known = ", ".join([*grammar.variables, *grammar.constants])
                raise ExpressionError(f"'{self.text}' uses unknown name '{node.id}' (known: "
                                      f"{known})")
            self.names.add(node.id)
            return
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self._check(node.left), self._check(node.right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            return self._check(node.operand)
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            for child in (node.left, *node.comparators):
                self._check(child)
            return
        if isinstance(node, ast.BoolOp):
            for child in node.values:
                self._check(child)
            return
        if isinstance(node, ast.IfExp):
            for child in (node.test, node.body, node.orelse):
                self._check(child)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            name = node.func.id
            if grammar.units and name == "_period" and len(node.args) == 2:
                self.names.add({"b": "beat", "s": "t", "f": "frame"}[node.args[1].value])
                return
            timed = [*OSCILLATORS, "pulse"] if grammar.units else []
            if name in grammar.functions or name in timed:
                for arg in node.args:
                    self._check(arg)
                return
            known = ", ".join([*grammar.functions, *timed])
            raise ExpressionError(f"'{self.text}' calls unknown function '{name}' "
                                  f"(known: {known})")
        raise ExpressionError(f"'{self.text}' uses '{ast.unparse(node)}', which a preset "
                              "expression may not (numbers, names, arithmetic, comparisons, "
                              "'a if c else b' and functions only)")

    def evaluate(self, names: dict):
        """The value over the arrays in `names`; an overflow or a division by zero gives inf or
        nan (no warning): the caller checks what it gets."""
        with np.errstate(all="ignore"):
            return self._eval(self.tree, names)

    def _eval(self, node, names):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            constants = self.grammar.constants
            return constants[node.id] if node.id in constants else names[node.id]
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, names), self._eval(node.right, names)
            if isinstance(left, Period) or isinstance(right, Period):
                raise ExpressionError(f"'{self.text}': a period like 4b belongs inside an "
                                      "oscillator (sin, tri, saw, pulse)")
            return _BINARY[type(node.op)](np.asarray(left, float), np.asarray(right, float))
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, names)
            if isinstance(node.op, ast.Not):
                return np.logical_not(value)
            return -np.asarray(value, float) if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Compare):
            left, result = self._eval(node.left, names), True
            for op, right_node in zip(node.ops, node.comparators):
                right = self._eval(right_node, names)
                result = np.logical_and(result, _COMPARE[type(op)](left, right))
                left = right
            return result
        if isinstance(node, ast.BoolOp):
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            values = [self._eval(v, names) for v in node.values]
            out = values[0]
            for value in values[1:]:
                out = combine(out, value)
            return out
        if isinstance(node, ast.IfExp):
            return np.where(self._eval(node.test, names), self._eval(node.body, names),
                            self._eval(node.orelse, names))
        name = node.func.id  # a Call: checked above
        if name == "_period":
            return Period(float(node.args[0].value), node.args[1].value)
        args = [self._eval(a, names) for a in node.args]
        timed = self.grammar.units
        if timed and name in OSCILLATORS:
            if len(args) != 1:
                raise ExpressionError(f"'{self.text}': {name}() takes one period, e.g. "
                                      f"{name}(4b)")
            return OSCILLATORS[name](args[0], names)
        if timed and name == "pulse":
            if not 1 <= len(args) <= 2:
                raise ExpressionError(f"'{self.text}': pulse() takes a period and a width, "
                                      "e.g. pulse(1b, 0.25)")
            return _pulse(*args, names=names)
        if any(isinstance(a, Period) for a in args):
            raise ExpressionError(f"'{self.text}': a period like 4b belongs inside an "
                                  "oscillator (sin, tri, saw, pulse)")
        try:
            return self.grammar.functions[name](*args)
        except TypeError:
            raise ExpressionError(f"'{self.text}': wrong number of arguments to {name}()") \
                from None
