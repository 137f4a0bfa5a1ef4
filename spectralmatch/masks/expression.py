"""A small, safe expression language over an image's bands, and a mask made from it.

The text is read by a hand-written tokenizer and a recursive-descent parser into a tree
of the nodes below; nothing the user types is ever given to Python's ``eval``, ``exec``
or ``compile``. The grammar follows the published package's (muparser's) syntax:

- numbers (``2``, ``0.5``, ``1e3``); bands as ``B1``..``Bn`` (or ``b1``), or by the
  image's band descriptions (``nir``, ``red``; case-insensitive, when unambiguous);
- ``+ - * /``, ``^`` (power, right-associative, above unary ``-``: ``-2^2`` is -4);
- comparisons ``< <= > >= == !=`` and logic ``&& || !`` (or ``and or not``), giving 0
  or 1; a value is true where it is non-zero;
- ``condition ? a : b``, parentheses, and the functions of :data:`FUNCTIONS`;
- percentiles: ``5%B1`` is the 5th percentile of band 1 over the image's valid pixels.

Lowest to highest precedence: ``?:``, ``||``, ``&&``, comparisons, ``+ -``, ``* /``,
unary ``- ! not``, ``^``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from attrs import define, evolve, field, frozen

from ..errors import SpectralMatchError
from ..geo.grid import PixelGrid
from .base import Mask, MaskTarget

#: The longest expression text accepted, in characters.
MAX_LENGTH = 2000
#: The deepest nesting accepted (parentheses, unary operators, powers, conditions and
#: chains of binary operators all count).
MAX_DEPTH = 64

Array = Any  # a float ndarray or a Python float

#: The functions an expression may call: name -> (function, fewest, most arguments).
FUNCTIONS: dict[str, tuple[Callable[..., Array], int, int]] = {
    "abs": (np.abs, 1, 1),
    "sqrt": (np.sqrt, 1, 1),
    "exp": (np.exp, 1, 1),
    "ln": (np.log, 1, 1),
    "log10": (np.log10, 1, 1),
    "min": (lambda *values: _reduce(np.minimum, values), 2, 32),
    "max": (lambda *values: _reduce(np.maximum, values), 2, 32),
    "clip": (np.clip, 3, 3),
}
#: Names that are refused with a hint rather than read one way or another.
AMBIGUOUS = {"log": "write ln(x) for the natural logarithm or log10(x) for base 10"}

BINARY: dict[str, Callable[[Array, Array], Array]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "^": np.power,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
    "&&": lambda a, b: np.logical_and(a != 0, b != 0),
    "||": lambda a, b: np.logical_or(a != 0, b != 0),
}
COMPARISONS = ("<=", ">=", "==", "!=", "<", ">")
KEYWORDS = {"and": "&&", "or": "||", "not": "!"}
#: Operators whose results are 0 or 1.
BOOLEAN_OPERATORS = {*COMPARISONS, "&&", "||", "!"}

TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<operator>&&|\|\||<=|>=|==|!=|[-+*/^<>!?:(),%]))"
)
BAND_NAME = re.compile(r"[bB]([0-9]+)")


def _reduce(function: Callable[[Array, Array], Array], values: tuple[Array, ...]) -> Array:
    result = values[0]
    for value in values[1:]:
        result = function(result, value)
    return result


@frozen
class Token:
    kind: str  # "number", "name", "operator" or "end"
    text: str
    position: int


# ---------------------------------------------------------------------------- nodes


@frozen
class Number:
    value: float

    def evaluate(self, values: np.ndarray, percentiles: Mapping[tuple[float, int], float]) -> Array:
        return self.value


@frozen
class Band:
    """A band, by its name as written; ``index`` (0-based) once bound to an image."""

    name: str
    position: int
    index: int = -1

    def evaluate(self, values: np.ndarray, percentiles: Mapping[tuple[float, int], float]) -> Array:
        return values[self.index]


@frozen
class Percentile:
    """``percent`` % of a band's valid pixels lie below this value (``5%B1``)."""

    percent: float
    band: Band

    def evaluate(self, values: np.ndarray, percentiles: Mapping[tuple[float, int], float]) -> Array:
        return float(percentiles[(self.percent, self.band.index)])


@frozen
class Unary:
    operator: str  # "-" or "!"
    operand: Any

    def evaluate(self, values: np.ndarray, percentiles: Mapping[tuple[float, int], float]) -> Array:
        operand = self.operand.evaluate(values, percentiles)
        return np.negative(operand) if self.operator == "-" else np.equal(operand, 0) * 1.0


@frozen
class Binary:
    operator: str
    left: Any
    right: Any

    def evaluate(self, values: np.ndarray, percentiles: Mapping[tuple[float, int], float]) -> Array:
        left = self.left.evaluate(values, percentiles)
        right = self.right.evaluate(values, percentiles)
        result = BINARY[self.operator](left, right)
        return result * 1.0 if self.operator in BOOLEAN_OPERATORS else result


@frozen
class Condition:
    test: Any
    then: Any
    otherwise: Any

    def evaluate(self, values: np.ndarray, percentiles: Mapping[tuple[float, int], float]) -> Array:
        test = self.test.evaluate(values, percentiles)
        then = self.then.evaluate(values, percentiles)
        otherwise = self.otherwise.evaluate(values, percentiles)
        return np.where(np.not_equal(test, 0), then, otherwise)


@frozen
class Call:
    name: str
    arguments: tuple[Any, ...]

    def evaluate(self, values: np.ndarray, percentiles: Mapping[tuple[float, int], float]) -> Array:
        function = FUNCTIONS[self.name][0]
        return function(*(argument.evaluate(values, percentiles) for argument in self.arguments))


def _children(node: Any) -> tuple[Any, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return node.left, node.right
    if isinstance(node, Condition):
        return node.test, node.then, node.otherwise
    if isinstance(node, Call):
        return node.arguments
    return ()  # a percentile's band is not read pixel by pixel


def _rebuilt(node: Any, bind: Callable[[Band], Band]) -> Any:
    """``node`` with each band replaced by ``bind(band)``."""
    if isinstance(node, Band):
        return bind(node)
    if isinstance(node, Unary):
        return evolve(node, operand=_rebuilt(node.operand, bind))
    if isinstance(node, Binary):
        return evolve(node, left=_rebuilt(node.left, bind), right=_rebuilt(node.right, bind))
    if isinstance(node, Condition):
        return Condition(*(_rebuilt(child, bind) for child in _children(node)))
    if isinstance(node, Call):
        return evolve(node, arguments=tuple(_rebuilt(child, bind) for child in node.arguments))
    if isinstance(node, Percentile):
        return evolve(node, band=bind(node.band))
    return node


def _nodes(node: Any) -> list[Any]:
    """``node`` and every node below it."""
    found, pending = [], [node]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(_children(current))
    return found


def _is_boolean(node: Any) -> bool:
    """Whether ``node`` only takes the values 0 and 1."""
    if isinstance(node, Number):
        return node.value in (0.0, 1.0)
    if isinstance(node, (Unary, Binary)):
        return node.operator in BOOLEAN_OPERATORS
    if isinstance(node, Condition):
        return _is_boolean(node.then) and _is_boolean(node.otherwise)
    return False


# ---------------------------------------------------------------------------- parser


@define
class _Parser:
    """Recursive descent over the tokens of ``text``; ``depth`` bounds the recursion."""

    text: str
    tokens: list[Token]
    at: int = 0
    depth: int = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def error(self, problem: str, position: int | None = None) -> SpectralMatchError:
        where = self.token.position if position is None else position
        return expression_error(self.text, f"{problem} at position {where + 1}")

    def take(self, *texts: str) -> Token | None:
        """The current token, consumed, if it is one of ``texts``."""
        token = self.token
        if token.kind == "operator" and token.text in texts:
            self.at += 1
            return token
        if token.kind == "name" and KEYWORDS.get(token.text.lower()) in texts:
            self.at += 1
            return Token("operator", KEYWORDS[token.text.lower()], token.position)
        return None

    def expect(self, text: str) -> None:
        if self.take(text) is None:
            found = "the end" if self.token.kind == "end" else repr(self.token.text)
            raise self.error(f"expected {text!r}, found {found}")

    def nested(self, parse: Callable[[], Any]) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} deep")
        try:
            return parse()
        finally:
            self.depth -= 1

    def parse(self) -> Any:
        root = self.condition()
        if self.token.kind != "end":
            raise self.error(f"unexpected {self.token.text!r}")
        return root

    def condition(self) -> Any:
        test = self.binary(0)
        if self.take("?") is None:
            return test
        then = self.nested(self.condition)
        self.expect(":")
        return Condition(test, then, self.nested(self.condition))

    #: Binary operators by precedence, lowest first (all left-associative).
    LEVELS = (("||",), ("&&",), COMPARISONS, ("+", "-"), ("*", "/"))

    def binary(self, level: int) -> Any:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        chain = 0
        while (operator := self.take(*self.LEVELS[level])) is not None:
            chain += 1
            if chain > MAX_DEPTH:
                raise self.error(f"more than {MAX_DEPTH} {operator.text!r} in a row")
            left = Binary(operator.text, left, self.binary(level + 1))
        return left

    def unary(self) -> Any:
        operator = self.take("-", "+", "!")
        if operator is None:
            return self.power()
        operand = self.nested(self.unary)
        return operand if operator.text == "+" else Unary(operator.text, operand)

    def power(self) -> Any:
        base = self.primary()
        if self.take("^") is None:
            return base
        return Binary("^", base, self.nested(self.unary))  # 2^-1, right-associative

    def primary(self) -> Any:
        token = self.token
        if self.take("("):
            inner = self.nested(self.condition)
            self.expect(")")
            return inner
        if token.kind == "number":
            self.at += 1
            if self.take("%"):
                return Percentile(float(token.text), self.band("a band after %"))
            return Number(float(token.text))
        if token.kind == "name":
            if self.tokens[self.at + 1].text == "(":
                return self.call()
            return self.band("a band")
        found = "the end" if token.kind == "end" else repr(token.text)
        raise self.error(f"expected a number, a band or '(', found {found}")

    def band(self, what: str) -> Band:
        token = self.token
        if token.kind != "name" or token.text.lower() in KEYWORDS:
            raise self.error(f"expected {what}")
        if token.text in AMBIGUOUS or token.text in FUNCTIONS:
            raise self.error(f"{token.text!r} is a function; call it as {token.text}(...)")
        self.at += 1
        return Band(token.text, token.position)

    def call(self) -> Call:
        name = self.token
        self.at += 2  # the name and "("
        if name.text in AMBIGUOUS:
            raise self.error(f"{name.text!r} is ambiguous: {AMBIGUOUS[name.text]}", name.position)
        if name.text not in FUNCTIONS:
            known = ", ".join(FUNCTIONS)
            raise self.error(f"unknown function {name.text!r} (known: {known})", name.position)
        arguments = [self.nested(self.condition)]
        while self.take(","):
            arguments.append(self.nested(self.condition))
        self.expect(")")
        _, fewest, most = FUNCTIONS[name.text]
        if not fewest <= len(arguments) <= most:
            count = str(fewest) if fewest == most else f"{fewest} to {most}"
            raise self.error(f"{name.text} takes {count} arguments", name.position)
        return Call(name.text, tuple(arguments))


def expression_error(text: str, problem: str) -> SpectralMatchError:
    """The error for ``text``: the expression (shortened) and the problem."""
    shown = text if len(text) <= 80 else text[:77] + "..."
    return SpectralMatchError(f"expression {shown!r}: {problem}")


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``"end"`` token."""
    tokens, at = [], 0
    while at < len(text):
        match = TOKEN.match(text, at)
        if match is None or match.end() == at:
            if not text[at:].strip():
                break
            position = at + len(text[at:]) - len(text[at:].lstrip())
            raise expression_error(
                text, f"unexpected character {text[position]!r} at position {position + 1}"
            )
        kind = match.lastgroup
        assert kind is not None
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
        at = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------------------- API


@frozen
class Expression:
    """A parsed expression: :meth:`parse` it once, :meth:`bind` it to an image's bands,
    then :meth:`evaluate` it on each window.

    Examples
    --------
    >>> ndvi = Expression.parse("(nir - red) / (nir + red)").bind(2, ("red", "nir"))
    >>> values = np.array([[[0.1]], [[0.5]]])
    >>> ndvi.evaluate(values).round(3).tolist()
    [[0.667]]
    """

    text: str
    root: Any = field(repr=False)
    bound: bool = False

    @classmethod
    def parse(cls, text: str) -> Expression:
        """Parse ``text``.

        Raises
        ------
        SpectralMatchError
            Naming the expression and the position of a syntax error.
        """
        if not isinstance(text, str):
            raise SpectralMatchError(f"an expression must be text, got {text!r}")
        if len(text) > MAX_LENGTH:
            raise expression_error(text, f"longer than {MAX_LENGTH} characters")
        if not text.strip():
            raise expression_error(text, "is empty")
        return cls(text, _Parser(text, tokenize(text)).parse())

    def bind(self, count: int, descriptions: Sequence[str | None] = ()) -> Expression:
        """This expression on an image of ``count`` bands described by ``descriptions``.

        Raises
        ------
        SpectralMatchError
            For an unknown name, a band out of range or an ambiguous description.
        """
        names: dict[str, list[int]] = {}
        for index, description in enumerate(descriptions):
            if description:
                names.setdefault(description.strip().lower(), []).append(index)

        def bind(band: Band) -> Band:
            return evolve(band, index=self._band_index(band, count, names))

        return evolve(self, root=_rebuilt(self.root, bind), bound=True)

    def _band_index(self, band: Band, count: int, names: dict[str, list[int]]) -> int:
        where = f"at position {band.position + 1}"
        number = BAND_NAME.fullmatch(band.name)
        if number:
            index = int(number.group(1))
            if not 1 <= index <= count:
                raise expression_error(
                    self.text,
                    f"band {band.name} {where} is out of range: the image has "
                    f"{count} band{'s' if count != 1 else ''}",
                )
            return index - 1
        found = names.get(band.name.lower(), [])
        if len(found) > 1:
            listed = ", ".join(f"B{index + 1}" for index in found)
            raise expression_error(
                self.text, f"{band.name!r} {where} describes bands {listed}; write one of them"
            )
        if not found:
            known = ", ".join(sorted(names)) or "none"
            raise expression_error(
                self.text,
                f"unknown name {band.name!r} {where} (bands are B1..B{count}; "
                f"band descriptions: {known})",
            )
        return found[0]

    @property
    def bands(self) -> list[int]:
        """The bands (0-based, sorted) the expression reads pixel by pixel (not those
        only named in a percentile term)."""
        self._check_bound()
        return sorted({node.index for node in _nodes(self.root) if isinstance(node, Band)})

    @property
    def percentiles(self) -> list[tuple[float, int]]:
        """The (percent, 0-based band) pairs whose values :meth:`evaluate` needs."""
        self._check_bound()
        found = {(n.percent, n.band.index) for n in _nodes(self.root) if isinstance(n, Percentile)}
        return sorted(found)

    @property
    def is_boolean(self) -> bool:
        """Whether the result is 0 or 1 (a comparison or logic at the top)."""
        return _is_boolean(self.root)

    def evaluate(
        self, values: np.ndarray, percentiles: Mapping[tuple[float, int], float] | None = None
    ) -> np.ndarray:
        """The expression on a window's ``values`` (bands, rows, cols), float: (rows, cols).

        ``percentiles`` holds the value of each of :attr:`percentiles`. Divisions by zero
        and the like give inf or NaN, without a warning.
        """
        self._check_bound()
        with np.errstate(all="ignore"):
            result = self.root.evaluate(values, percentiles or {})
        return np.broadcast_to(np.asarray(result, dtype=values.dtype), values.shape[1:])

    def _check_bound(self) -> None:
        if not self.bound:
            raise SpectralMatchError(f"expression {self.text!r}: bind it to an image first")


def _parsed(expression: str | Expression) -> Expression:
    return expression if isinstance(expression, Expression) else Expression.parse(expression)


@define
class ExpressionMask(Mask):
    """Excludes the pixels where ``expression`` is true (non-zero).

    Bands are ``B1``..``Bn`` or the image's band descriptions (see
    :mod:`spectralmatch.masks.expression` for the grammar). Percentile terms (``5%B1``)
    need the whole image and are refused here: write a mask raster with
    :func:`~spectralmatch.threshold_raster` or :func:`~spectralmatch.band_math` and give
    that instead.

    Examples
    --------
    >>> vegetation = ExpressionMask("(B4 - B3) / (B4 + B3) > 0.5")
    """

    expression: Expression = field(converter=_parsed)
    _bound: dict[tuple[int, tuple[str | None, ...]], Expression] = field(
        factory=dict, init=False, repr=False, eq=False
    )

    def __attrs_post_init__(self) -> None:
        if any(isinstance(node, Percentile) for node in _nodes(self.expression.root)):
            raise expression_error(
                self.expression.text,
                "a mask sees one window at a time, so percentile terms cannot be used; "
                "write a mask raster with threshold_raster or band_math and use that",
            )

    def excluded(self, target: MaskTarget, values: np.ndarray, grid: PixelGrid) -> np.ndarray:
        descriptions = tuple(getattr(target, "descriptions", ()) or ())
        key = (values.shape[0], descriptions)
        if key not in self._bound:
            try:
                self._bound[key] = self.expression.bind(*key)
            except SpectralMatchError as error:
                raise SpectralMatchError(f"{target.name}: {error}") from None
        result = self._bound[key].evaluate(values.astype(np.float64))
        return np.asarray(result != 0)
