"""The metric names and labels a PromQL expression reads, for checking dashboards and alert rules against /metrics.

Not a PromQL parser: a tokenizer and a walk over the tokens that finds
every selector (`name{label="value"}`) and every label an aggregation
groups by (`sum by (label) (...)`, `sum (...) without (label)`) or a
binary operator matches on (`on (label)`, `group_left (label)`), with the
metrics each applies to. What it does not understand raises, so nothing it
cannot read passes unchecked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"}
)
GROUPING = frozenset({"by", "without"})
MATCHING = frozenset({"on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"}) | GROUPING | MATCHING
# Ranges (`[5m]`, `[$__rate_interval]`, `[1h:1m]`) are cut out before this
# sees them: Grafana's variables occur only there and inside strings.
TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}@])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    """An expression this extractor does not read."""


@dataclass(frozen=True)
class Selector:
    """One series selector: a metric name and its label matchers (label, operator, value)."""

    name: str
    matchers: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class LabelUse:
    """A label an aggregation or vector match names, and the metrics in the expression it applies to."""

    label: str
    metrics: frozenset[str]


@dataclass(frozen=True)
class References:
    """Everything one expression reads."""

    selectors: tuple[Selector, ...]
    labels: tuple[LabelUse, ...]

    @property
    def names(self) -> frozenset[str]:
        """The metric names it reads."""
        return frozenset(s.name for s in self.selectors)


def tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) of each token, spaces and comments dropped; a range `[5m]` is one token."""
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        # A range or subquery is skipped whole: durations and Grafana variables live there.
        if expr[position] == "[":
            end = expr.find("]", position)
            if end < 0:
                raise PromQLError(f"unclosed '[' at {position}: {expr!r}")
            found.append(("range", expr[position : end + 1]))
            position = end + 1
            continue
        match = TOKEN.match(expr, position)
        if match is None:
            raise PromQLError(f"cannot read {expr[position:]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            found.append((kind, match.group()))
        position = match.end()
    return found


def _closing(toks: list[tuple[str, str]], start: int, open_: str = "(", close: str = ")") -> int:
    """The index of the token closing the bracket at `start`."""
    depth = 0
    for index in range(start, len(toks)):
        text = toks[index][1]
        if toks[index][0] == "op" and text == open_:
            depth += 1
        elif toks[index][0] == "op" and text == close:
            depth -= 1
            if depth == 0:
                return index
    raise PromQLError(f"unbalanced {open_!r}")


def _label_list(toks: list[tuple[str, str]], start: int) -> tuple[list[str], int]:
    """The labels of `( a, b )` at `start`, and the index after it."""
    if toks[start : start + 1] != [("op", "(")]:
        raise PromQLError("expected a label list after by/without/on/ignoring/group_*")
    end = _closing(toks, start)
    labels = [text for kind, text in toks[start + 1 : end] if kind == "ident"]
    if any(kind not in {"ident", "op"} or (kind == "op" and text != ",") for kind, text in toks[start + 1 : end]):
        raise PromQLError("a label list holds label names and commas only")
    return labels, end + 1


def _unquote(text: str) -> str:
    if text[0] == "`":
        return text[1:-1]
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _matchers(toks: list[tuple[str, str]], start: int) -> tuple[tuple[tuple[str, str, str], ...], int]:
    """The matchers of `{a="x", b=~"y"}` at `start`, and the index after it."""
    end = _closing(toks, start, "{", "}")
    inner = [t for t in toks[start + 1 : end] if t != ("op", ",")]
    if len(inner) % 3:
        raise PromQLError("a matcher is label, operator, string")
    matchers = []
    for i in range(0, len(inner), 3):
        (k1, label), (k2, operator), (k3, value) = inner[i : i + 3]
        if k1 != "ident" or k2 != "op" or operator not in {"=", "!=", "=~", "!~"} or k3 != "string":
            raise PromQLError(f"cannot read matcher {label}{operator}{value}")
        matchers.append((label, operator, _unquote(value)))
    return tuple(matchers), end + 1


def references(expr: str) -> References:
    """The selectors of `expr` and the labels its aggregations and vector matches name."""
    toks = tokens(expr)
    selectors: list[tuple[int, Selector]] = []
    groupings: list[tuple[list[str], int, int]] = []  # labels, token span of the aggregated expression
    matchings: list[str] = []
    index = 0
    while index < len(toks):
        kind, text = toks[index]
        following = toks[index + 1] if index + 1 < len(toks) else ("", "")
        if kind == "op" and text == "{":
            raise PromQLError(f"a selector without a metric name: {expr!r}")
        if kind != "ident":
            index += 1
            continue
        if text in AGGREGATIONS and following[1] in {"(", "by", "without"}:
            labels: list[str] = []
            body = index + 1
            if following[1] in GROUPING:
                labels, body = _label_list(toks, index + 2)
            end = _closing(toks, body)
            if not labels and end + 1 < len(toks) and toks[end + 1][1] in GROUPING:
                labels, _ = _label_list(toks, end + 2)
            groupings.append((labels, body, end))
            index = body
        elif text in MATCHING:
            if following == ("op", "("):
                labels, index = _label_list(toks, index + 1)
                matchings.extend(labels)
            else:
                index += 1  # group_left without labels
        elif text in GROUPING:
            _, index = _label_list(toks, index + 1)  # read with its aggregation above
        elif following == ("op", "("):
            index += 1  # a function call
        elif text.lower() in KEYWORDS:
            index += 1
        else:
            matchers: tuple[tuple[str, str, str], ...] = ()
            after = index + 1
            if following == ("op", "{"):
                matchers, after = _matchers(toks, index + 1)
            selectors.append((index, Selector(text, matchers)))
            index = after
    everything = frozenset(s.name for _, s in selectors)
    uses = [
        LabelUse(label, frozenset(s.name for at, s in selectors if start < at < end))
        for labels, start, end in groupings
        for label in labels
    ]
    uses += [LabelUse(label, everything) for label in matchings]
    return References(tuple(s for _, s in selectors), tuple(uses))
