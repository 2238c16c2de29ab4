"""OData query options as Graph applies them to directory objects: parsing, rules, evaluation.

Strictness is the point: a construct Graph refuses (docs/graph-facts.md) is refused here with
Graph's code (400 `Request_UnsupportedQuery`), never silently answered. Advanced queries (AQ)
need both the `ConsistencyLevel: eventual` header and `$count=true`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from shared.common import GUID
from simulator import schema
from simulator.errors import GraphError, bad_request, needs_advanced_query, unsupported_query

MAX_TOP = 999
DEFAULT_TOP = 100

Getter = Callable[[str], Any]


# ---- filter capability tables (docs/graph-facts.md, queries 2) ------------------------
# Each property: (operators that work by default, operators that need AQ). Operator kinds:
# eq, in, startswith, endswith, ne, not, eqnull, any, notany, count.
_Ops = tuple[frozenset[str], frozenset[str]]


def _ops(default: str, advanced: str) -> _Ops:
    return frozenset(default.split()), frozenset(advanced.split())


_STRING_PROP = _ops("eq in startswith", "ne not eqnull")
GROUP_FILTERS: dict[str, _Ops] = {
    "id": _ops("eq in", "ne not"),
    "displayName": _STRING_PROP,
    "mail": _STRING_PROP,
    "mailNickname": _STRING_PROP,
    "securityEnabled": _ops("eq in", "ne not"),
    "mailEnabled": _ops("eq in", "ne not"),
    "groupTypes": _ops("any", "notany"),
    "proxyAddresses": _ops("any", "notany"),
    "assignedLicenses": _ops("any", "notany count"),
    # The 2025 matrix marks it default-only: it works without AQ and not with it.
    "hasMembersWithLicenseErrors": _ops("eq eqnull", ""),
}
USER_FILTERS: dict[str, _Ops] = {
    "id": _ops("eq in", "ne not"),
    "userPrincipalName": _ops("eq in startswith", "ne not endswith"),
    "displayName": _STRING_PROP,
    "givenName": _STRING_PROP,
    "surname": _STRING_PROP,
    "jobTitle": _STRING_PROP,
    "department": _STRING_PROP,
    "userType": _ops("eq in", "ne not eqnull"),
    "creationType": _ops("eq in", "ne not"),
    "externalUserState": _ops("eq in", "ne not"),
    "usageLocation": _ops("eq in startswith", "ne not eqnull"),
    "accountEnabled": _ops("eq in", "ne not"),
    "assignedLicenses": _ops("any", "notany count"),
    "mail": _ops("eq in startswith", "ne not endswith eqnull"),
    "otherMails": _ops("any", "notany"),
    "proxyAddresses": _ops("any", "notany"),
}
# Directory extensions: eq by default (docs/graph-facts.md); user-list.md lists ne and eq null too.
EXTENSION_FILTER = _ops("eq in", "ne not eqnull startswith")

# Operator names as they appear in Graph's "Operator '...' is not supported" message.
_OPERATOR_NAMES = {
    "ne": "NotEqualsMatch",
    "not": "Not",
    "endswith": "endsWith",
    "eqnull": "EqualsMatch",
    "notany": "Not",
    "count": "$count",
    "startswith": "startsWith",
    "eq": "EqualsMatch",
    "in": "In",
    "any": "Any",
}


# ---- filter AST ----------------------------------------------------------------------------


@dataclass
class Compare:
    path: list[str]
    op: str  # eq ne gt ge lt le
    value: Any


@dataclass
class In:
    path: list[str]
    values: list[Any]


@dataclass
class Func:
    name: str  # startswith | endswith
    path: list[str]
    value: Any


@dataclass
class Any_:
    path: list[str]
    var: str | None
    body: Node | None


@dataclass
class Count:
    path: list[str]
    op: str
    value: int


@dataclass
class Not:
    inner: Node


@dataclass
class BoolOp:
    op: str  # and | or
    left: Node
    right: Node


Node = Compare | In | Func | Any_ | Count | Not | BoolOp

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<guid>"""
    + GUID
    + r"""(?![\w-]))
      | (?P<number>-?\d+(?:\.\d+)?(?![\w]))
      | (?P<name>[A-Za-z_$][A-Za-z0-9_$.]*)
      | (?P<punct>[(),:/])
    )""",
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str
    text: str
    value: Any = None


def _invalid_filter(detail: str) -> GraphError:
    # Graph answers a syntax error with code BadRequest and "Invalid filter clause".
    return GraphError(400, "BadRequest", f"Invalid filter clause: {detail}")


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise _invalid_filter(f"syntax error at position {pos} in '{text}'.")
        pos = m.end()
        kind = m.lastgroup or ""
        raw = m.group(kind)
        if kind == "string":
            tokens.append(_Tok("lit", raw, raw[1:-1].replace("''", "'")))
        elif kind == "guid":
            tokens.append(_Tok("lit", raw, raw.lower()))
        elif kind == "number":
            tokens.append(_Tok("lit", raw, float(raw) if "." in raw else int(raw)))
        elif kind == "name" and raw.lower() in ("true", "false", "null"):
            tokens.append(
                _Tok("lit", raw, {"true": True, "false": False, "null": None}[raw.lower()])
            )
        else:
            tokens.append(_Tok(kind, raw))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def parse(self) -> Node:
        node = self._or()
        if self.i != len(self.tokens):
            raise _invalid_filter(f"unexpected '{self.tokens[self.i].text}' in '{self.text}'.")
        return node

    def _peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _peek_word(self) -> str:
        tok = self._peek()
        return tok.text.lower() if tok and tok.kind == "name" else ""

    def _next(self) -> _Tok:
        tok = self._peek()
        if tok is None:
            raise _invalid_filter(f"unexpected end of '{self.text}'.")
        self.i += 1
        return tok

    def _expect(self, text: str) -> None:
        tok = self._next()
        if tok.text != text:
            raise _invalid_filter(f"expected '{text}' but found '{tok.text}' in '{self.text}'.")

    def _or(self) -> Node:
        node = self._and()
        while self._peek_word() == "or":
            self.i += 1
            node = BoolOp("or", node, self._and())
        return node

    def _and(self) -> Node:
        node = self._unary()
        while self._peek_word() == "and":
            self.i += 1
            node = BoolOp("and", node, self._unary())
        return node

    def _unary(self) -> Node:
        if self._peek_word() == "not":
            self.i += 1
            return Not(self._unary())
        return self._primary()

    def _literal(self) -> Any:
        tok = self._next()
        if tok.kind != "lit":
            raise _invalid_filter(f"expected a literal but found '{tok.text}' in '{self.text}'.")
        return tok.value

    def _path(self) -> list[str]:
        tok = self._next()
        if tok.kind != "name":
            raise _invalid_filter(f"expected a property but found '{tok.text}' in '{self.text}'.")
        path = [tok.text]
        while (p := self._peek()) and p.text == "/":
            self.i += 1
            path.append(self._next().text)
        return path

    def _primary(self) -> Node:
        tok = self._peek()
        if tok and tok.text == "(":
            self.i += 1
            node = self._or()
            self._expect(")")
            return node
        word = self._peek_word()
        nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
        if word in ("startswith", "endswith") and nxt and nxt.text == "(":
            self.i += 2
            path = self._path()
            self._expect(",")
            value = self._literal()
            self._expect(")")
            return Func(word, path, value)
        path = self._path()
        last = path[-1].lower()
        if last in ("any", "all"):
            if last == "all":
                raise unsupported_query("The 'all' lambda operator is not supported.")
            self._expect("(")
            if (p := self._peek()) and p.text == ")":
                self.i += 1
                return Any_(path[:-1], None, None)
            var = self._next().text
            self._expect(":")
            body = self._or()
            self._expect(")")
            return Any_(path[:-1], var, body)
        op = self._next().text.lower()
        if last == "$count":
            value = self._literal()
            if not isinstance(value, int):
                raise _invalid_filter("$count must be compared with an integer.")
            return Count(path[:-1], op, value)
        if op == "in":
            self._expect("(")
            values = [self._literal()]
            while (p := self._peek()) and p.text == ",":
                self.i += 1
                values.append(self._literal())
            self._expect(")")
            return In(path, values)
        if op not in ("eq", "ne", "gt", "ge", "lt", "le"):
            raise _invalid_filter(f"unknown operator '{op}' in '{self.text}'.")
        return Compare(path, op, self._literal())


def parse_filter(text: str) -> Node:
    return _Parser(text).parse()


# ---- rules ---------------------------------------------------------------------------------


def _resolve(name: str, table: dict[str, _Ops]) -> tuple[str, _Ops] | None:
    if name.lower().startswith(schema.EXTENSION_PREFIX):
        return name, EXTENSION_FILTER
    canon = schema.canonical(name, list(table))
    return (canon, table[canon]) if canon else None


def check_filter(node: Node, table: dict[str, _Ops], resource: str, advanced: bool) -> Node:
    """Refuse what Graph refuses; returns the node with property names made canonical."""

    def leaf(path: list[str], kind: str) -> list[str]:
        found = _resolve(path[0], table) if len(path) == 1 else None
        if found is None:
            raise unsupported_query(
                "Unsupported or invalid query filter clause specified for property "
                f"'{'/'.join(path)}' of resource '{resource}'."
            )
        name, (default, aq) = found
        # Default operators also work under advanced query: the rendered table marks
        # hasMembersWithLicenseErrors default-only, but Microsoft's List groups example 2 sends
        # it with ConsistencyLevel: eventual and $count=true, and a documented example wins.
        if kind in default:
            return [name]
        if kind in aq:
            if not advanced:
                raise needs_advanced_query(_OPERATOR_NAMES.get(kind, kind))
            return [name]
        raise unsupported_query(
            f"Unsupported or invalid query filter clause specified for property '{name}' "
            f"of resource '{resource}'."
        )

    def walk(n: Node, negated: bool) -> Node:
        if isinstance(n, BoolOp):
            return BoolOp(n.op, walk(n.left, negated), walk(n.right, negated))
        if isinstance(n, Not):
            if not advanced:
                raise needs_advanced_query("Not")
            return Not(walk(n.inner, True))
        if isinstance(n, Compare):
            if n.op not in ("eq", "ne"):
                leaf(n.path, n.op)  # ge/le/gt/lt: refused unless a table lists them
            kind = n.op if n.op == "ne" else ("eqnull" if n.value is None else "eq")
            if negated and kind == "eq":
                kind = "not"
            return Compare(leaf(n.path, kind), n.op, n.value)
        if isinstance(n, In):
            return In(leaf(n.path, "not" if negated else "in"), n.values)
        if isinstance(n, Func):
            return Func(n.name, leaf(n.path, "not" if negated else n.name), n.value)
        if isinstance(n, Any_):
            body = _lambda_body(n.body, n.var or "") if n.body is not None else None
            return Any_(leaf(n.path, "notany" if negated else "any"), n.var, body)
        if isinstance(n, Count):
            if n.value != 0 or n.op not in ("eq", "ne"):
                raise unsupported_query(
                    "Unsupported or invalid query filter clause specified for property "
                    f"'{n.path[0]}/$count' of resource '{resource}'."
                )
            return Count(leaf(n.path, "count"), n.op, n.value)
        raise AssertionError(n)

    return walk(node, False)


# ---- evaluation ----------------------------------------------------------------------------


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _equal(actual: Any, expected: Any) -> bool:
    # Directory string comparisons are case-insensitive.
    return bool(_fold(actual) == _fold(expected))


def evaluate(node: Node, get: Getter) -> bool:
    if isinstance(node, BoolOp):
        if node.op == "and":
            return evaluate(node.left, get) and evaluate(node.right, get)
        return evaluate(node.left, get) or evaluate(node.right, get)
    if isinstance(node, Not):
        return not evaluate(node.inner, get)
    if isinstance(node, Compare):
        actual = get(node.path[0])
        if node.op == "eq":
            return _equal(actual, node.value)
        if node.op == "ne":
            return not _equal(actual, node.value)
        return False
    if isinstance(node, In):
        actual = get(node.path[0])
        return any(_equal(actual, v) for v in node.values)
    if isinstance(node, Func):
        actual, wanted = get(node.path[0]), node.value
        if not isinstance(actual, str) or not isinstance(wanted, str):
            return False
        if node.name == "startswith":
            return actual.casefold().startswith(wanted.casefold())
        return actual.casefold().endswith(wanted.casefold())
    if isinstance(node, Any_):
        items = get(node.path[0]) or []
        if node.body is None:
            return bool(items)
        return any(evaluate(node.body, _lambda_getter(item)) for item in items)
    if isinstance(node, Count):
        size = len(get(node.path[0]) or [])
        return size == node.value if node.op == "eq" else size != node.value
    raise AssertionError(node)


def _lambda_getter(item: Any) -> Getter:
    """Inside `any(a: a/skuId eq X)` the body's paths were rewritten to `skuId` (or "" for `c`)."""

    def get(name: str) -> Any:
        if name == "":
            return item
        return item.get(name) if isinstance(item, dict) else None

    return get


def _lambda_body(node: Node, var: str) -> Node:
    """Strip the lambda variable from the body's paths: `a/skuId` -> `skuId`, `c` -> ``."""
    if isinstance(node, BoolOp):
        return BoolOp(node.op, _lambda_body(node.left, var), _lambda_body(node.right, var))
    if isinstance(node, Compare | In | Func):
        if node.path[0] != var:
            raise unsupported_query(f"Lambda variable '{var}' expected in '{'/'.join(node.path)}'.")
        inner = ["/".join(node.path[1:])]
        if isinstance(node, Compare):
            if node.op != "eq":
                raise unsupported_query("Only 'eq' is supported inside a lambda; use not(...).")
            return Compare(inner, node.op, node.value)
        if isinstance(node, In):
            return In(inner, node.values)
        return Func(node.name, inner, node.value)
    raise unsupported_query("Unsupported expression inside a lambda.")


# ---- query options -------------------------------------------------------------------------


@dataclass
class Query:
    """The parsed query options of one request."""

    raw: str = ""
    select: list[str] | None = None
    top: int = DEFAULT_TOP
    filter: Node | None = None
    search: list[tuple[str, str | None, str]] = field(default_factory=list)
    orderby: list[tuple[str, bool]] = field(default_factory=list)
    offset: int = 0
    eventual: bool = False  # ConsistencyLevel: eventual was sent
    count_requested: bool = False  # $count=true was sent

    @property
    def advanced(self) -> bool:
        return self.eventual and self.count_requested

    @property
    def with_count(self) -> bool:
        # $count=true without the header is silently ignored (docs/graph-facts.md, queries 5).
        return self.eventual and self.count_requested


def split_query(raw: str) -> dict[str, str]:
    """Query options by lower-cased name (Graph accepts `$orderBy` as well as `$orderby`)."""
    options: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        name = key.lower()
        if name in options:
            raise bad_request(f"Query option '{key}' was specified more than once.")
        options[name] = value
    return options


def encode_skiptoken(offset: int) -> str:
    payload = json.dumps({"o": offset}).encode()
    return "X" + base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_skiptoken(token: str) -> int:
    try:
        padded = token[1:] + "=" * (-len(token[1:]) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded))["o"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise bad_request("Invalid $skiptoken.") from exc
    if not isinstance(offset, int) or offset < 0:
        raise bad_request("Invalid $skiptoken.")
    return int(offset)


def parse_query(
    raw: str,
    headers: dict[str, str],
    *,
    allowed: set[str],
    select_props: list[str],
    type_name: str,
    filters: dict[str, _Ops] | None = None,
    resource: str = "",
    search_props: tuple[str, ...] = (),
    default_orderby: tuple[str, ...] = (),
    filter_needs_aq: bool = False,
) -> Query:
    """Parse and check the query options one route accepts; refuse the rest."""
    options = split_query(raw)
    query = Query(raw=raw)
    query.eventual = headers.get("consistencylevel", "").lower() == "eventual"
    for name in options:
        if name.startswith("$") and name not in allowed and name != "$skiptoken":
            if name == "$skip":
                raise unsupported_query("'$skip' is not supported by the service.")
            raise unsupported_query(f"Query option '{name}' is not supported on this resource.")

    if "$count" in options:
        value = options["$count"].lower()
        if value not in ("true", "false"):
            raise bad_request(f"Invalid value '{options['$count']}' for $count.")
        query.count_requested = value == "true"
    if "$top" in options:
        text = options["$top"]
        if not re.fullmatch(r"-?\d+", text) or not 1 <= int(text) <= MAX_TOP:
            raise bad_request(
                f"Invalid page size specified: '{text}'. Must be between 1 and {MAX_TOP} inclusive."
            )
        query.top = int(text)
    if "$skiptoken" in options:
        query.offset = decode_skiptoken(options["$skiptoken"])
    if "$select" in options:
        query.select = parse_select(options["$select"], select_props, type_name)
    if "$search" in options:
        if not query.eventual:
            raise unsupported_query(
                "Request with $search query parameter only works through MSGraph with a special "
                "request header: 'ConsistencyLevel: eventual'"
            )
        query.search = parse_search(options["$search"], search_props, resource)
    if "$filter" in options:
        if filters is None:
            raise unsupported_query(f"Query option '$filter' is not supported on {resource}.")
        if filter_needs_aq and not query.advanced:
            raise unsupported_query(
                "The specified filter to the reference property query is currently not supported."
            )
        query.filter = check_filter(
            parse_filter(options["$filter"]), filters, resource, query.advanced
        )
    if "$orderby" in options:
        query.orderby = parse_orderby(options["$orderby"], filters or {}, default_orderby)
        if not query.advanced and (
            query.filter is not None or any(p not in default_orderby for p, _ in query.orderby)
        ):
            raise unsupported_query("Sorting not supported for current query.")
    return query


def parse_select(text: str, known: list[str], type_name: str) -> list[str]:
    selected: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            continue
        if name.lower().startswith(schema.EXTENSION_PREFIX):
            canon: str | None = name
        else:
            canon = schema.canonical(name, known)
        if canon is None:
            raise bad_request(f"Could not find a property named '{name}' on type '{type_name}'.")
        if canon not in selected:
            selected.append(canon)
    return selected


def parse_orderby(
    text: str, filters: dict[str, _Ops], default: tuple[str, ...]
) -> list[tuple[str, bool]]:
    order: list[tuple[str, bool]] = []
    for part in text.split(","):
        words = part.split()
        if (
            not words
            or len(words) > 2
            or (len(words) == 2 and words[1].lower() not in ("asc", "desc"))
        ):
            raise bad_request(f"Invalid $orderby clause '{part}'.")
        name = schema.canonical(words[0], list(default) + list(filters))
        if name is None:
            raise unsupported_query("Sorting not supported for current query.")
        order.append((name, len(words) == 2 and words[1].lower() == "desc"))
    return order


_SEARCH_CLAUSE = re.compile(r'"([^"]*)"|\b(AND|OR)\b')


def parse_search(
    text: str, props: tuple[str, ...], resource: str
) -> list[tuple[str, str | None, str]]:
    """`"displayName:wa" OR "description:prod"` -> [(joiner, property, term)]."""
    clauses: list[tuple[str, str | None, str]] = []
    joiner = "OR"
    for m in _SEARCH_CLAUSE.finditer(text):
        if m.group(2):
            joiner = m.group(2)
            continue
        clause = m.group(1)
        prop: str | None = None
        term = clause
        if ":" in clause:
            name, term = clause.split(":", 1)
            prop = schema.canonical(name, list(props))
            if prop is None:
                raise unsupported_query(
                    f"$search is not supported on property '{name}' of {resource}."
                )
        clauses.append((joiner, prop, term))
        joiner = "OR"
    if not clauses:
        raise bad_request('Syntax error: $search needs quoted clauses such as "displayName:x".')
    return clauses


def matches_search(
    clauses: list[tuple[str, str | None, str]], props: tuple[str, ...], get: Getter
) -> bool:
    """Graph tokenizes the property into words; a term matches the start of any word."""

    def hit(prop: str | None, term: str) -> bool:
        words = term.casefold().split()
        for name in (prop,) if prop else props:
            value = get(name)
            if not isinstance(value, str):
                continue
            tokens = re.split(r"[^0-9a-z]+", value.casefold())
            if all(any(t.startswith(w) for t in tokens) for w in words):
                return True
        return False

    result = hit(clauses[0][1], clauses[0][2])
    for joiner, prop, term in clauses[1:]:
        result = (result and hit(prop, term)) if joiner == "AND" else (result or hit(prop, term))
    return result


def sort_key(value: Any) -> tuple[int, Any]:
    # Nulls sort first, strings case-insensitively.
    if value is None:
        return (0, "")
    return (1, value.casefold() if isinstance(value, str) else value)


def next_link_query(raw: str, offset: int) -> str:
    """The original query options (as sent) plus a fresh $skiptoken."""
    kept = [
        p
        for p in raw.split("&")
        if p and not p.lower().startswith(("$skiptoken=", "%24skiptoken="))
    ]
    kept.append(f"$skiptoken={encode_skiptoken(offset)}")
    return "&".join(kept)
