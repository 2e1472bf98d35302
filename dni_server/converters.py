"""URL converters: ids in paths that no database column can hold are simply not found."""

from __future__ import annotations

from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

# PostgreSQL's integer: a larger id in a path would be a database error, not a 404.
MAX_ID = 2**31 - 1


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
