"""The one CSV writer for every file the product hands out, safe to open in a spreadsheet.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, a tab
or carriage return) as a formula. Which character separates cells depends on the program
and its locale (``,`` ``;`` tab, ``|`` is offered too), and a line break ends a row when the
file is read with another separator than it was written with: ``spring;=cmd|...`` is one
harmless cell in a comma file and a formula cell in a semicolon locale. So every text cell
is neutralised wherever any of those separators could start a cell in it: a ``'`` goes in
front of each dangerous start (spreadsheets show ``'`` as "this is text" and hide it),
also when spaces or quotes come first. Numbers (int, float, Decimal) are left as they are,
since they cannot hold a formula: pass amounts as numbers, not text, to keep ``-12.50`` a
number.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from decimal import Decimal

FORMULA_START = "=+-@\t\r"
SEPARATORS = ",;\t|\r\n"
# A cell start (the text's start, or just after a separator), then any spaces or quotes,
# then a character that makes a formula: the ' goes right after the separator.
DANGER = re.compile(r"(^|[" + re.escape(SEPARATORS) + r"])(?=[ \"']*[" + re.escape(FORMULA_START)
                    + r"])")


def safe_cell(value) -> str | int | float | Decimal:
    """``value`` as a cell that no spreadsheet reads as a formula, whatever its separator."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | Decimal):
        return value
    return DANGER.sub(lambda m: m.group(1) + "'", str(value))


def write_csv(rows: Iterable[Iterable], *, bom: bool = False) -> str:
    """``rows`` as CSV text (CRLF line ends, quoting as needed), every cell made safe.

    ``bom``: start with a UTF-8 byte order mark so spreadsheets read the file as UTF-8.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
    return ("\ufeff" if bom else "") + out.getvalue()
