"""Kubernetes label selectors: the `metav1.LabelSelector` object form and the string form.

The object form (`matchLabels` / `matchExpressions`) is what PodProtector specs carry; the
string form (`app=web,idx notin (3)`) is what list/watch requests send as `labelSelector=`.
Both become the same `LabelSelector`, a sorted tuple of requirements that are ANDed together.
Semantics follow Kubernetes: an empty selector matches everything, `NotIn` and `!=` match when
the key is absent, `Gt`/`Lt` compare integers and never match a missing or non-integer label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "LabelSelector",
    "Operator",
    "Requirement",
    "SelectorError",
    "everything",
    "nothing",
    "parse_selector_string",
    "validate_label_key",
    "validate_label_value",
]


class SelectorError(ValueError):
    """An invalid label selector, in either form. The message says what is wrong and where."""


class Operator(StrEnum):
    """Requirement operators; the values are Kubernetes' `selection.Operator` strings."""

    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    EQUALS = "="
    NOT_EQUALS = "!="
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


# Object-form operator names; `Gt`/`Lt`/`=`/`!=` only exist in the string form.
_DICT_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}
_OPERATOR_ORDER = {op: index for index, op in enumerate(Operator)}

# --- label key and value syntax (IsQualifiedName / IsValidLabelValue) ---------------------

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_NAME_MAX = 63
_PREFIX_MAX = 253


def validate_label_key(key: str) -> None:
    """Raise `SelectorError` unless `key` is a valid label key (`[prefix/]name`)."""
    if not isinstance(key, str):
        raise SelectorError(f"label key must be a string, got {type(key).__name__}")
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            raise SelectorError(f"invalid label key {key!r}: the prefix before '/' is empty")
        if "/" in prefix:
            raise SelectorError(f"invalid label key {key!r}: at most one '/' is allowed")
        if len(prefix) > _PREFIX_MAX or not _DNS_SUBDOMAIN.fullmatch(prefix):
            raise SelectorError(
                f"invalid label key {key!r}: the prefix must be a lowercase DNS subdomain "
                f"of at most {_PREFIX_MAX} characters"
            )
    if not name:
        raise SelectorError(f"invalid label key {key!r}: the name part is empty")
    if len(name) > _NAME_MAX or not _NAME.fullmatch(name):
        raise SelectorError(
            f"invalid label key {key!r}: the name must be at most {_NAME_MAX} characters of "
            "alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        )


def validate_label_value(value: str) -> None:
    """Raise `SelectorError` unless `value` is a valid label value (empty is valid)."""
    if not isinstance(value, str):
        raise SelectorError(f"label value must be a string, got {type(value).__name__}")
    if value and (len(value) > _NAME_MAX or not _NAME.fullmatch(value)):
        raise SelectorError(
            f"invalid label value {value!r}: must be empty or at most {_NAME_MAX} characters of "
            "alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        )


def _is_integer(text: str) -> bool:
    return re.fullmatch(r"[+-]?\d+", text) is not None


# --- requirements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """One ANDed condition on one label key. Values are stored sorted and de-duplicated."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_label_key(self.key)
        try:
            operator = Operator(self.operator)
        except ValueError:
            raise SelectorError(f"unknown selector operator {self.operator!r}") from None
        values = tuple(sorted(set(self.values)))
        if operator in (Operator.IN, Operator.NOT_IN):
            if not values:
                raise SelectorError(
                    f"requirement on {self.key!r}: operator {operator.value!r} needs at least "
                    "one value"
                )
        elif operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            if values:
                raise SelectorError(
                    f"requirement on {self.key!r}: operator {_display(operator)!r} takes no values"
                )
        elif len(values) != 1:
            raise SelectorError(
                f"requirement on {self.key!r}: operator {operator.value!r} needs exactly one value"
            )
        elif operator in (Operator.GREATER_THAN, Operator.LESS_THAN) and not _is_integer(values[0]):
            raise SelectorError(
                f"requirement on {self.key!r}: operator {operator.value!r} needs an integer "
                f"value, got {values[0]!r}"
            )
        for value in values:
            validate_label_value(value)
        object.__setattr__(self, "operator", operator)
        object.__setattr__(self, "values", values)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return _compile(self)(labels)

    def to_query_string(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {op.value} ({','.join(self.values)})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(op, op.value)
        return f"{self.key}{symbol}{self.values[0]}"

    def _sort_key(self) -> tuple[str, int, tuple[str, ...]]:
        return (self.key, _OPERATOR_ORDER[self.operator], self.values)


def _display(op: Operator) -> str:
    names = {v: k for k, v in _DICT_OPERATORS.items()}
    return names.get(op, op.value)


def _compile(req: Requirement) -> Callable[[Mapping[str, str]], bool]:
    # One small closure per requirement, built once, keeps matching free of operator dispatch.
    key, op, values = req.key, req.operator, req.values
    if op is Operator.EQUALS:
        value = values[0]
        return lambda labels: labels.get(key) == value
    if op is Operator.NOT_EQUALS:
        value = values[0]
        return lambda labels: labels.get(key) != value
    if op is Operator.IN:
        allowed = frozenset(values)
        return lambda labels: key in labels and labels[key] in allowed
    if op is Operator.NOT_IN:
        banned = frozenset(values)
        return lambda labels: key not in labels or labels[key] not in banned
    if op is Operator.EXISTS:
        return lambda labels: key in labels
    if op is Operator.DOES_NOT_EXIST:
        return lambda labels: key not in labels
    bound = int(values[0])
    greater = op is Operator.GREATER_THAN

    def compare(labels: Mapping[str, str]) -> bool:
        text = labels.get(key)
        if text is None or not _is_integer(text):
            return False
        number = int(text)
        return number > bound if greater else number < bound

    return compare


# --- selectors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements. Build it with `from_dict`, `parse_selector_string`,
    `from_labels`, `everything()` or `nothing()`."""

    requirements: tuple[Requirement, ...] = ()
    # Kubernetes' "nothing" selector (a nil LabelSelector) matches no object at all.
    matches_nothing: bool = False
    _equalities: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    _checks: tuple[Callable[[Mapping[str, str]], bool], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        requirements = tuple(sorted(set(self.requirements), key=Requirement._sort_key))
        object.__setattr__(self, "requirements", requirements)
        # Plain equalities (all of matchLabels) are the common case: check them inline.
        equalities = tuple(
            (r.key, r.values[0]) for r in requirements if r.operator is Operator.EQUALS
        )
        checks = tuple(_compile(r) for r in requirements if r.operator is not Operator.EQUALS)
        object.__setattr__(self, "_equalities", equalities)
        object.__setattr__(self, "_checks", checks)

    # -- construction --

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> LabelSelector:
        """Parse the object form. `None` (a nil selector) selects nothing, `{}` everything."""
        if data is None:
            return nothing()
        if not isinstance(data, Mapping):
            raise SelectorError(f"label selector must be an object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"matchLabels", "matchExpressions"})
        if unknown:
            raise SelectorError(
                f"label selector has unknown field(s) {', '.join(unknown)}; "
                "expected matchLabels and/or matchExpressions"
            )
        requirements: list[Requirement] = []
        match_labels = data.get("matchLabels") or {}
        if not isinstance(match_labels, Mapping):
            raise SelectorError("matchLabels must be an object of label key to value")
        for key, value in match_labels.items():
            requirements.append(_wrap(f"matchLabels[{key!r}]", Operator.EQUALS, key, [value]))
        expressions = data.get("matchExpressions") or []
        if not isinstance(expressions, list):
            raise SelectorError("matchExpressions must be a list")
        for index, expression in enumerate(expressions):
            where = f"matchExpressions[{index}]"
            if not isinstance(expression, Mapping):
                raise SelectorError(f"{where} must be an object with key, operator, values")
            unknown = sorted(set(expression) - {"key", "operator", "values"})
            if unknown:
                raise SelectorError(f"{where} has unknown field(s) {', '.join(unknown)}")
            operator_name = expression.get("operator")
            operator = (
                _DICT_OPERATORS.get(operator_name) if isinstance(operator_name, str) else None
            )
            if operator is None:
                raise SelectorError(
                    f"{where}.operator: {operator_name!r} is not one of "
                    "In, NotIn, Exists, DoesNotExist"
                )
            values = expression.get("values") or []
            if not isinstance(values, list):
                raise SelectorError(f"{where}.values must be a list of strings")
            requirements.append(_wrap(where, operator, expression.get("key"), values))
        return cls(tuple(requirements))

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> LabelSelector:
        """A selector requiring exactly these label values (like `matchLabels`)."""
        return cls(tuple(Requirement(k, Operator.EQUALS, (v,)) for k, v in labels.items()))

    # -- queries --

    @property
    def is_empty(self) -> bool:
        """True for the match-everything selector."""
        return not self.requirements and not self.matches_nothing

    @property
    def required_labels(self) -> tuple[tuple[str, str], ...]:
        """The exact ``(key, value)`` pairs every match must carry, sorted; for indexing."""
        return self._equalities

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.matches_nothing:
            return False
        if labels is None:
            labels = {}
        get = labels.get
        for key, value in self._equalities:
            if get(key) != value:
                return False
        # A plain loop: all() over a generator costs more than the checks on this hot path.
        for check in self._checks:  # noqa: SIM110
            if not check(labels):
                return False
        return True

    def filter(self, items: Iterable[Mapping[str, str]]) -> list[Mapping[str, str]]:
        """The label maps among `items` that this selector matches."""
        return [labels for labels in items if self.matches(labels)]

    # -- rendering --

    def to_query_string(self) -> str:
        """The `labelSelector=` string form, deterministic (sorted by key)."""
        if self.matches_nothing:
            raise SelectorError("the match-nothing selector has no string form")
        return ",".join(r.to_query_string() for r in self.requirements)

    def to_dict(self) -> dict[str, Any]:
        """The `metav1.LabelSelector` object form (`{}` for everything)."""
        if self.matches_nothing:
            raise SelectorError("the match-nothing selector has no object form (it is a nil one)")
        match_labels: dict[str, str] = {}
        expressions: list[dict[str, Any]] = []
        equal_counts: dict[str, int] = {}
        for r in self.requirements:
            if r.operator is Operator.EQUALS:
                equal_counts[r.key] = equal_counts.get(r.key, 0) + 1
        for r in self.requirements:
            op = r.operator
            if op is Operator.EQUALS and equal_counts[r.key] == 1:
                match_labels[r.key] = r.values[0]
            elif op in (Operator.EQUALS, Operator.IN):
                expressions.append({"key": r.key, "operator": "In", "values": list(r.values)})
            elif op in (Operator.NOT_EQUALS, Operator.NOT_IN):
                expressions.append({"key": r.key, "operator": "NotIn", "values": list(r.values)})
            elif op is Operator.EXISTS:
                expressions.append({"key": r.key, "operator": "Exists"})
            elif op is Operator.DOES_NOT_EXIST:
                expressions.append({"key": r.key, "operator": "DoesNotExist"})
            else:
                raise SelectorError(
                    f"requirement {r.to_query_string()!r} has no object form: "
                    "matchExpressions cannot express Gt/Lt"
                )
        result: dict[str, Any] = {}
        if match_labels:
            result["matchLabels"] = match_labels
        if expressions:
            result["matchExpressions"] = expressions
        return result

    def __str__(self) -> str:
        return "<nothing>" if self.matches_nothing else self.to_query_string()


def _wrap(where: str, operator: Operator, key: Any, values: Iterable[Any]) -> Requirement:
    # Re-raise with the location inside the object form so the caller can point at the field.
    values = list(values)
    for value in values:
        if not isinstance(value, str):
            raise SelectorError(f"{where}: values must be strings, got {type(value).__name__}")
    try:
        return Requirement(key, operator, tuple(values))
    except SelectorError as exc:
        raise SelectorError(f"{where}: {exc}") from None


_EVERYTHING = LabelSelector()
_NOTHING = LabelSelector(matches_nothing=True)


def everything() -> LabelSelector:
    """The selector that matches every label set (the empty selector)."""
    return _EVERYTHING


def nothing() -> LabelSelector:
    """The selector that matches no label set (Kubernetes' nil selector)."""
    return _NOTHING


# --- the string form ------------------------------------------------------------------------

# Token kinds. Identifiers are runs of anything except whitespace and the special symbols,
# exactly as the Kubernetes lexer splits them, so `app.kubernetes.io/name` is one token.
_IDENT, _IN, _NOTIN, _END = "identifier", "in", "notin", "end of string"
_SYMBOLS = ("!=", "==", "=", "!", ">", "<", "(", ")", ",")
_SPECIAL_CHARS = frozenset("=!(),<>")
_VALUE_OPERATORS = {
    "=": Operator.EQUALS,
    "==": Operator.EQUALS,
    "!=": Operator.NOT_EQUALS,
    ">": Operator.GREATER_THAN,
    "<": Operator.LESS_THAN,
}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    position: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char in _SPECIAL_CHARS:
            symbol = next(s for s in _SYMBOLS if text.startswith(s, i))
            tokens.append(_Token(symbol, symbol, i))
            i += len(symbol)
            continue
        start = i
        while i < n and not text[i].isspace() and text[i] not in _SPECIAL_CHARS:
            i += 1
        word = text[start:i]
        kind = {"in": _IN, "notin": _NOTIN}.get(word, _IDENT)
        tokens.append(_Token(kind, word, start))
    tokens.append(_Token(_END, "", n))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self, as_value: bool = False) -> _Token:
        token = self.tokens[self.index]
        # In a value position `in` and `notin` are ordinary words (`tier in (in)` is legal).
        if as_value and token.kind in (_IN, _NOTIN):
            return _Token(_IDENT, token.text, token.position)
        return token

    def take(self, as_value: bool = False) -> _Token:
        token = self.peek(as_value)
        self.index += 1
        return token

    def fail(self, token: _Token, expected: str) -> SelectorError:
        found = "end of string" if token.kind == _END else repr(token.text)
        return SelectorError(
            f"invalid label selector {self.text!r}: found {found} at position {token.position}, "
            f"expected {expected}"
        )

    def parse(self) -> LabelSelector:
        if self.peek().kind == _END:
            return everything()
        requirements: list[Requirement] = []
        while True:
            requirements.append(self.requirement())
            token = self.take()
            if token.kind == _END:
                return LabelSelector(tuple(requirements))
            if token.kind != ",":
                raise self.fail(token, "',' or end of string")

    def requirement(self) -> Requirement:
        token = self.take()
        negated = token.kind == "!"
        if negated:
            token = self.take()
        if token.kind != _IDENT:
            raise self.fail(token, "a label key" if negated else "'!' or a label key")
        key = token.text
        if negated:
            return self.build(key, Operator.DOES_NOT_EXIST, ())
        token = self.peek()
        if token.kind in (_END, ","):
            return self.build(key, Operator.EXISTS, ())
        self.take()
        if token.kind in (_IN, _NOTIN):
            operator = Operator.IN if token.kind == _IN else Operator.NOT_IN
            return self.build(key, operator, self.value_set())
        operator = _VALUE_OPERATORS.get(token.kind)  # type: ignore[assignment]
        if operator is None:
            raise self.fail(token, "one of =, ==, !=, >, <, in, notin, ',' or end of string")
        # `key=` with nothing after it means the empty value, as in Kubernetes.
        value = self.peek(as_value=True)
        if value.kind in (_END, ","):
            return self.build(key, operator, ("",))
        if value.kind != _IDENT:
            raise self.fail(value, "a value")
        self.take()
        return self.build(key, operator, (value.text,))

    def value_set(self) -> tuple[str, ...]:
        token = self.take()
        if token.kind != "(":
            raise self.fail(token, "'('")
        values: list[str] = []
        expecting_value = True
        while True:
            token = self.take(as_value=True)
            if token.kind == _IDENT and expecting_value:
                values.append(token.text)
                expecting_value = False
            elif token.kind == "," or (token.kind == ")" and expecting_value):
                # An empty slot (`()`, `(a,)`, `(,a)`, `(a,,b)`) is the empty value.
                if expecting_value:
                    values.append("")
                if token.kind == ")":
                    return tuple(values)
                expecting_value = True
            elif token.kind == ")":
                return tuple(values)
            else:
                raise self.fail(token, "a value" if expecting_value else "',' or ')'")

    def build(self, key: str, operator: Operator, values: tuple[str, ...]) -> Requirement:
        try:
            return Requirement(key, operator, values)
        except SelectorError as exc:
            raise SelectorError(f"invalid label selector {self.text!r}: {exc}") from None


def parse_selector_string(text: str) -> LabelSelector:
    """Parse the `labelSelector=` string form (already URL-decoded).

    Accepts what Kubernetes accepts: `k=v`, `k==v`, `k!=v`, `k in (a, b)`, `k notin (a,b)`,
    `k`, `!k`, `k>1`, `k<1`, separated by commas, with free whitespace. The empty string
    selects everything.
    """
    if not isinstance(text, str):
        raise SelectorError(f"label selector must be a string, got {type(text).__name__}")
    return _Parser(text).parse()
