"""Ids, counts, dates and times from paths and query strings: the one place they are parsed.

Anything a column cannot hold or a calendar cannot reach is refused here with a 4xx, so no
view turns it into a database or overflow error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from attribution.zones import EARLIEST, LATEST, parse_date, parse_datetime
from dni_server.errors import Invalid

# PostgreSQL's integer (SQLAlchemy binds every id as one): a larger id would be a database
# error, not a 404. Well within the 63 bits of the big ids.
MAX_ID = 2**31 - 1
DATE_RANGE = f"from {EARLIEST} to {LATEST}"


class IdConverter(IntegerConverter):
    """``<int:...>`` that answers 404 past MAX_ID (``/v1/sites/99999999999999999999``).

    Raising NotFound rather than failing the match: werkzeug would otherwise report 405
    when another method's rule has the same path.
    """

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise NotFound("no such id")
        return number


def parse_id(value) -> int | None:
    """An id given as text or a JSON number, or None when it cannot name a row.

    ``str.isdigit`` alone is not enough: it accepts digits like ``²`` that ``int`` refuses,
    and numbers past any column's range.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 10:
            return None
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_ID:
        return None
    return value


def _query_value(args: Mapping, name: str, parse, default, wanted: str, field: str):
    """Query parameter ``name`` read by ``parse`` (None when it cannot be read), else
    ``default`` when absent; 422 naming the parameter when it is there but unreadable."""
    raw = args.get(name)
    if raw is None:
        return default
    value = parse(raw)
    if value is None:
        raise Invalid(f"{name} must be {wanted}", fields={name: field})
    return value


def id_arg(args: Mapping, name: str) -> int | None:
    """The id in query parameter ``name``; None when absent, 422 when it is no id."""
    return _query_value(args, name, parse_id, None,
                        f"an id, a whole number from 0 to {MAX_ID}", "not an id")


def count_arg(args: Mapping, name: str, default: int | None, minimum: int,
              maximum: int) -> int | None:
    """A whole number (a limit, an offset, a page) in query parameter ``name``, else
    ``default``; 422 unless ASCII digits within [minimum, maximum]."""
    raw = args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(maximum))) \
            or not minimum <= int(raw) <= maximum:
        raise Invalid(f"{name} must be a whole number from {minimum} to {maximum}",
                      fields={name: "out of range"})
    return int(raw)


def date_arg(args: Mapping, name: str, default: dt.date | None = None) -> dt.date | None:
    """The date (YYYY-MM-DD) in query parameter ``name``, else ``default``; 422 when junk."""
    return _query_value(args, name, parse_date, default, f"a date, YYYY-MM-DD, {DATE_RANGE}",
                        "not a date in range")


def datetime_arg(args: Mapping, name: str, default: dt.datetime | None = None,
                 zone: dt.tzinfo = dt.UTC) -> dt.datetime | None:
    """The ISO 8601 time in query parameter ``name`` (in ``zone`` without an offset), else
    ``default``; 422 when junk or out of range."""
    return _query_value(args, name, lambda raw: parse_datetime(raw, zone), default,
                        f"an ISO 8601 time, {DATE_RANGE}", "not a time in range")
