"""The Mongo-style query language of the task database: validate, match, project.

A query is a dict {key: condition}; every key must match (AND). A condition is a plain
value (equality; None means "not set") or a dict of operators that must all hold:

    $eq $ne $in $nin      equality; None is a value here, so {$ne: x} also matches None
    $gt $gte $lt $lte     order on str, int and datetime keys; a None value never matches
                          ($ge and $le are accepted as the old IPython spellings of $gte/$lte)
    $exists               True: the key is set (not None); False: it is None
    $regex                re.search on str values (case-sensitive, unanchored)
    $glob                 fnmatch-style * ? [set] [!set] on str values, whole value, case-sensitive
    $not                  {key: {$not: {operators}}}: the operators do not all hold (a value
                          that is not set matches, as in MongoDB)

and, beside the keys, the logical operators over whole queries, as MongoDB spells them:

    {$or: [q1, q2, ...]}  at least one of the queries matches
    {$and: [q1, ...]}     every one matches (the same as merging them, but a key may repeat)
    {$nor: [q1, ...]}     none matches
    {$not: q}             q does not match (MongoDB has no top-level $not: stored as $nor [q])

`validate` turns a query into its normal form {key: {operator: operand}} (aliases resolved,
naive datetimes made UTC, operands type-checked; a $not's operand is itself a normal
condition, an $or/$and/$nor's a list of normal queries) or raises QueryError; every backend
starts from that form. `compile_query` and `match` evaluate it in Python (the memory backend);
`projection`, `sort_spec` and `page_bounds` check the `keys`, `sort`, `limit` and `skip`
arguments of find_records for every backend.
"""
import functools
import operator
import re

from taskhub.controller.db.base import (
    BUFFER_KEYS, KEY_KINDS, KIND_NAMES, PYTHON_TYPES, TASK_RECORD_KEYS, as_utc, suggest_key,
)
from taskhub.error import QueryError

ALIASES = {"$ge": "$gte", "$le": "$lte"}


def _ordered(compare):
    return lambda value, operand: value is not None and compare(value, operand)


def _search(value, pattern):
    return isinstance(value, str) and pattern.search(value) is not None


# operator -> test(record value, prepared operand) -> bool
TESTS = {
    "$eq": operator.eq,
    "$ne": operator.ne,
    "$in": lambda value, operands: value in operands,
    "$nin": lambda value, operands: value not in operands,
    "$gt": _ordered(operator.gt),
    "$gte": _ordered(operator.ge),
    "$lt": _ordered(operator.lt),
    "$lte": _ordered(operator.le),
    "$exists": lambda value, wanted: (value is not None) is wanted,
    "$regex": _search,
    "$glob": _search,
}
LOGICAL = ("$and", "$or", "$nor")  # over whole queries: {"$or": [query, ...]}
OPERATORS = (*TESTS, *ALIASES, "$not", *LOGICAL)


def _not_supported(op, where):
    return QueryError(f"operator {op!r} is not supported (supported: {', '.join(OPERATORS)})"
                      f"{where}")


def validate(query):
    """The normal form {key: {operator: operand}} of `query`, or QueryError saying what is wrong."""
    if not isinstance(query, dict):
        raise QueryError(f"a query is a dict of {{key: condition}}, not {type(query).__name__}")
    normal = {}
    for key, condition in query.items():
        if key == "$not":  # MongoDB allows $not on a key only; {$nor: [q]} means the same
            normal.setdefault("$nor", []).append(validate(_one_query("$not", condition)))
        elif key in LOGICAL:
            normal.setdefault(key, []).extend(_check_queries(key, condition))
        else:
            _check_key(key)
            normal[key] = _normal_condition(key, condition)
    return normal


def _one_query(op, operand):
    if not isinstance(operand, dict):
        raise QueryError(f"{op} takes a query (a dict), not {type(operand).__name__}")
    return operand


def _check_queries(op, operand):
    if not isinstance(operand, (list, tuple)) or not operand:
        raise QueryError(f"{op} takes a non-empty list of queries, e.g. "
                         f"{{{op!r}: [{{'status': 'error'}}, {{'engine_id': 3}}]}}, "
                         f"not {operand!r:.60}")
    return [validate(_one_query(op, q)) for q in operand]


def _check_key(key):
    if isinstance(key, str) and key.startswith("$"):
        raise _not_supported(key, " at the top of a query")
    if key not in KEY_KINDS:
        raise QueryError(f"unknown TaskRecord key {key!r}{suggest_key(key)}")
    return key


def _normal_condition(key, condition, negated=False):
    if not isinstance(condition, dict):
        condition = {"$eq": condition}
    if not condition:
        raise QueryError(f"empty condition on key {key!r}: give a value or operators")
    normal = {}
    for op, operand in condition.items():
        name = ALIASES.get(op, op)
        if name == "$not" and not negated:
            normal[name] = _normal_condition(key, _not_operand(key, operand), negated=True)
            continue
        if name not in TESTS:
            raise _not_supported(op, f" in the condition on key {key!r}")
        if name in normal:
            raise QueryError(f"{op!r} repeats {name!r} on key {key!r}")
        normal[name] = _check_operand(key, name, operand)
    return normal


def _not_operand(key, operand):
    if not isinstance(operand, dict) or not operand or \
            not all(isinstance(op, str) and op.startswith("$") and op != "$not" for op in operand):
        raise QueryError(f"$not on key {key!r} takes a dict of operators other than $not, e.g. "
                         f"{{{key!r}: {{'$not': {{'$in': [...]}}}}}}, not {operand!r:.60}")
    return operand


def _check_operand(key, op, operand):
    if op in ("$in", "$nin"):
        if not isinstance(operand, (list, tuple, set, frozenset)):
            raise QueryError(f"{op} on key {key!r} needs a list, tuple or set of values, "
                             f"not {type(operand).__name__}")
        return [_check_value(key, op, value) for value in operand]
    if op == "$exists":
        if not isinstance(operand, bool):
            raise QueryError(f"$exists on key {key!r} needs True or False, not {operand!r}")
        return operand
    if op in ("$regex", "$glob"):
        return _check_pattern(key, op, operand)
    if op not in ("$eq", "$ne") and operand is None:
        raise QueryError(f"{op} on key {key!r} needs a value, not None (nothing compares "
                         f"with None; use {{{key!r}: None}} or $exists)")
    return _check_value(key, op, operand)


def _check_value(key, op, value):
    if value is None:
        return None
    kind = KEY_KINDS[key]
    if kind in ("dict", "buffers"):
        raise QueryError(f"key {key!r} holds {KIND_NAMES[kind]}: a query can only test "
                         f"whether it is set ({{{key!r}: None}} or $exists)")
    if not isinstance(value, PYTHON_TYPES[kind]) or isinstance(value, bool):
        raise QueryError(f"{op} on key {key!r} needs {KIND_NAMES[kind]}, "
                         f"not {type(value).__name__}")
    return as_utc(value) if kind == "datetime" else value


def _check_pattern(key, op, pattern):
    if KEY_KINDS[key] != "str":
        raise QueryError(f"{op} works on keys holding a str; {key!r} holds "
                         f"{KIND_NAMES[KEY_KINDS[key]]}")
    if not isinstance(pattern, str):
        raise QueryError(f"{op} on key {key!r} needs a pattern str, not {type(pattern).__name__}")
    try:
        re.compile(glob_to_regex(pattern) if op == "$glob" else pattern)
    except re.error as error:
        raise QueryError(f"invalid {op} pattern {pattern!r} on key {key!r}: {error}") from None
    if op == "$regex":
        compile_regex(pattern)  # refuses what could backtrack without bound
    return pattern


def compile_query(query):
    """A predicate record -> bool for `query` (validated here), to evaluate it in Python."""
    return _predicate(validate(query))


def _predicate(normal):
    """record -> bool for a query in normal form."""
    tests = []
    for key, condition in normal.items():
        if key in LOGICAL:
            tests.append(_logical(key, [_predicate(q) for q in condition]))
        else:
            tests.append(_condition_test(key, condition))
    return lambda record: all(test(record) for test in tests)


def _logical(op, predicates):
    if op == "$and":
        return lambda record: all(p(record) for p in predicates)
    if op == "$or":
        return lambda record: any(p(record) for p in predicates)
    return lambda record: not any(p(record) for p in predicates)


def _condition_test(key, condition):
    tests = [(TESTS[op], _prepare(op, operand)) for op, operand in condition.items()
             if op != "$not"]
    negated = _condition_test(key, condition["$not"]) if "$not" in condition else None

    def test(record):
        value = record.get(key)
        if negated is not None and negated(record):
            return False
        return all(t(value, operand) for t, operand in tests)
    return test


def _prepare(op, operand):
    if op == "$regex":
        return compile_regex(operand)
    if op == "$glob":
        return compile_regex(glob_to_regex(operand, end=GLOB_END))
    return operand


try:
    import re2 as _re2
    _RE2_OPTIONS = _re2.Options()
    _RE2_OPTIONS.log_errors = False  # a pattern it cannot take falls back quietly
except ImportError:  # the package google-re2; then patterns run on re (no linear bound)
    _re2 = None
GLOB_END = r"\z" if _re2 is not None else r"\Z"  # the end of the text, in each engine


@functools.lru_cache(maxsize=256)
def compile_regex(pattern):
    """`pattern` compiled by RE2 (google-re2), whose searches take time linear in the text:
    a pattern like "(a+)+$" cannot backtrack for minutes. A pattern RE2 cannot take is
    compiled by re if it is safe there too (only a syntax RE2 spells otherwise, such as
    \\Z); one with backreferences or lookaround — which RE2 refuses because they can take
    exponential time, and which no time budget can stop inside one re call — is refused
    with a QueryError. Without google-re2, re compiles everything."""
    if _re2 is None:
        return re.compile(pattern)
    try:
        return _re2.compile(pattern, options=_RE2_OPTIONS)
    except _re2.error:
        pass
    if _backtracks(pattern):
        raise QueryError(f"the pattern {pattern!r} uses backreferences or lookaround, which "
                         "can take exponential time; the task DB runs patterns on RE2, "
                         "which has neither: rewrite it without them")
    return re.compile(pattern)


_re_parser = getattr(re, "_parser", None)
if _re_parser is None:  # Python < 3.11
    import sre_parse as _re_parser
_BACKTRACKING = {"GROUPREF", "GROUPREF_EXISTS", "ASSERT", "ASSERT_NOT"}


def _backtracks(pattern):
    """Whether the re pattern has a backreference or a lookaround anywhere in it."""
    def walk(items):
        for op, arg in items:
            if str(op) in _BACKTRACKING:
                return True
            for value in (arg if isinstance(arg, (tuple, list)) else (arg,)):
                if isinstance(value, _re_parser.SubPattern) and walk(value):
                    return True
                if isinstance(value, (tuple, list)) and any(
                        isinstance(v, _re_parser.SubPattern) and walk(v) for v in value):
                    return True
        return False
    return walk(_re_parser.parse(pattern))


def match(record, query):
    """Whether the record dict `record` matches `query`."""
    return compile_query(query)(record)


ALL_BUT_BUFFERS = tuple(key for key in TASK_RECORD_KEYS if key not in BUFFER_KEYS)


def projection(keys=None):
    """The keys find_records returns for its `keys` argument, msg_id first.

    None means every key but the buffers; a single key may be given as a str.
    """
    if keys is None:
        return ALL_BUT_BUFFERS
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, (list, tuple, set, frozenset)):
        raise QueryError(f"keys must be None or a list of TaskRecord keys, "
                         f"not {type(keys).__name__}")
    for key in keys:
        if not isinstance(key, str) or key not in KEY_KINDS:
            raise QueryError(f"unknown TaskRecord key {key!r} in keys{suggest_key(key)}")
    return tuple(dict.fromkeys(["msg_id", *keys]))


SORTABLE_KINDS = frozenset({"str", "int", "datetime"})


def sort_spec(sort=None):
    """The normal form ((key, 1 | -1), ...) of find_records' `sort`; () means submission order.

    `sort` is None, a key ("completed"; "-completed" for descending), or a list of keys and
    (key, direction) pairs as pymongo takes them, direction 1 (ascending) or -1.
    """
    if sort is None:
        return ()
    items = [sort] if isinstance(sort, str) else sort
    if not isinstance(items, (list, tuple)):
        raise QueryError(f"sort must be a key, or a list of keys and (key, direction) pairs, "
                         f"not {type(sort).__name__}")
    order = tuple(_sort_item(item) for item in items)
    keys = [key for key, _ in order]
    for key in keys:
        if keys.count(key) > 1:
            raise QueryError(f"sort names {key!r} more than once")
    return order


def _sort_item(item):
    if isinstance(item, str):
        key, direction = (item[1:], -1) if item.startswith("-") else (item, 1)
    elif isinstance(item, (list, tuple)) and len(item) == 2:
        key, direction = item
    else:
        raise QueryError(f"a sort item is a key or a (key, direction) pair, not {item!r}")
    if not isinstance(key, str) or key not in KEY_KINDS:
        raise QueryError(f"unknown TaskRecord key {key!r} in sort{suggest_key(key)}")
    if KEY_KINDS[key] not in SORTABLE_KINDS:
        raise QueryError(f"cannot sort by {key!r}: it holds {KIND_NAMES[KEY_KINDS[key]]}")
    if direction not in (1, -1) or isinstance(direction, bool):
        raise QueryError(f"sort direction of {key!r} must be 1 or -1, not {direction!r}")
    return key, direction


def page_bounds(limit=None, skip=None):
    """(limit, skip) of find_records checked: limit None (no limit) or an int ≥ 0; skip ≥ 0."""
    for name, value in (("limit", limit), ("skip", skip)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 0):
            raise QueryError(f"{name} must be None or an int ≥ 0, not {value!r}")
    return limit, skip or 0


def glob_tokens(pattern):
    """Split a glob into (kind, text, negated) tokens; kind is text, star, one or set.

    As in fnmatch: a "]" first in a set is a member, and a "[" without a closing "]"
    is plain text.
    """
    tokens, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        end = _set_end(pattern, i) if char == "[" else -1
        if char in "*?":
            tokens.append(("star" if char == "*" else "one", char, False))
        elif end >= 0:
            body = pattern[i + 1:end]
            negated = body.startswith("!")
            tokens.append(("set", body[1:] if negated else body, negated))
            i = end
        else:
            tokens.append(("text", char, False))
        i += 1
    return tokens


def _set_end(pattern, start):
    """Index of the "]" closing the set whose "[" is at `start`, or -1 if none does."""
    i = start + 1
    if pattern.startswith("!", i):
        i += 1
    if pattern.startswith("]", i):
        i += 1
    return pattern.find("]", i)


def glob_to_regex(pattern, end=r"\Z"):
    """A regex matching the whole of what the glob `pattern` matches (newlines included).

    `end` anchors the end: Python's r"\\Z"; PCRE (MongoDB) spells it r"\\z".
    """
    parts = [r"\A"]
    for kind, text, negated in glob_tokens(pattern):
        if kind == "star":
            parts.append(r"[\s\S]*")
        elif kind == "one":
            parts.append(r"[\s\S]")
        elif kind == "set":
            members = "".join(c if c == "-" else re.escape(c) for c in text)
            parts.append(f"[{'^' if negated else ''}{members}]")
        else:
            parts.append(re.escape(text))
    parts.append(end)
    return "".join(parts)
