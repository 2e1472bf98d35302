"""SQL conditions and groupings on a call's ``insight`` (JSON), for lists and reports.

A call's spotted keywords and tags are arrays inside the JSON, so "was ``appointment``
heard" is an ``EXISTS`` over the array's elements, written per database: SQLite's
``json_each`` and PostgreSQL's ``json_array_elements``. Both are exact (no text search in
the JSON), so a tag named ``50%`` or ``"quoted"`` matches itself only.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, String, and_, bindparam, case, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from attribution.models import Call

# talk_share buckets: the caller's share of the talk, in fifths.
TALK_SHARE_BUCKETS = ((0.2, "0-20%"), (0.4, "20-40%"), (0.6, "40-60%"), (0.8, "60-80%"))
TALK_SHARE_TOP = "80-100%"
MAX_TEXT = 64


class _InInsightArray(ColumnElement):
    """True when an element of the call's ``insight[array]`` equals ``value`` (for
    ``keywords``, the element's ``word``)."""

    type = Boolean()
    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("value", InternalTraversal.dp_clauseelement),
                           ("array", InternalTraversal.dp_string)]

    def __init__(self, column, array: str, value: str):
        self.column, self.array = column, array
        self.value = bindparam(None, value, type_=String())


@compiles(_InInsightArray, "sqlite")
def _sqlite(element, compiler, **kw):
    column, value = compiler.process(element.column, **kw), compiler.process(element.value, **kw)
    kind, item = ("object", "json_extract(e.value, '$.word')") if element.array == "keywords" \
        else ("text", "e.value")
    return (f"EXISTS (SELECT 1 FROM json_each({column}, '$.{element.array}') AS e "
            f"WHERE e.type = '{kind}' AND {item} = {value})")


@compiles(_InInsightArray, "postgresql")
def _postgresql(element, compiler, **kw):
    column, value = compiler.process(element.column, **kw), compiler.process(element.value, **kw)
    array = f"{column} -> '{element.array}'"
    item = "e.value ->> 'word'" if element.array == "keywords" else "e.value #>> '{}'"
    # json_array_elements fails on anything but an array: a NULL gives no rows instead.
    return (f"EXISTS (SELECT 1 FROM json_array_elements(CASE WHEN json_typeof({array}) = "
            f"'array' THEN {array} END) AS e(value) WHERE {item} = {value})")


def heard(word: str) -> ColumnElement:
    """Calls whose analysis spotted ``word`` (a keyword as the site lists it), any side."""
    return _InInsightArray(Call.insight, "keywords", normal_word(word))


def tagged(tag: str) -> ColumnElement:
    """Calls whose analysis heard a keyword meaning ``tag:<tag>``."""
    return _InInsightArray(Call.insight, "tags", tag)


def normal_word(word: str) -> str:
    """A keyword as the analysis writes it: lower case, single spaces
    (``keywords.parse_keywords`` also drops what is not a letter)."""
    return " ".join(word.lower().split())


def _talk(side: str):
    return Call.insight[("talk_seconds", side)].as_float()


def talk_share():
    """The caller's share of the call's talk, bucketed (``0-20%`` ... ``80-100%``); NULL
    when there is no analysis, its sides are unknown (mono) or nobody talked."""
    caller, agent = _talk("caller"), _talk("agent")
    total = caller + agent
    share = caller / case((total > 0, total), else_=literal(None, Float()))
    return case(*((share < bound, literal(label)) for bound, label in TALK_SHARE_BUCKETS),
                (share <= 1.0, literal(TALK_SHARE_TOP)), else_=literal(None, String()))


def insight_filters(stmt, *, heard_word: str | None = None, tag: str | None = None):
    """``stmt`` narrowed to calls where ``heard_word`` was spotted and/or ``tag`` heard."""
    conditions = []
    if heard_word is not None:
        conditions.append(heard(heard_word))
    if tag is not None:
        conditions.append(tagged(tag))
    return stmt.where(and_(*conditions)) if conditions else stmt
