"""The FTS5 side of the memory catalogue: the terms of a query, dates as indexed, and the scale
of BM25 scores.

Lexical scores are BM25 divided by the score the query itself would get if it were stored, so
that 1 means "matches as well as the query's own text would". That reference is computed here
from the index's own statistics (row count, total tokens, how many rows match each term), read
without writing: a search takes no write lock and works on a read-only file. The query is
tokenized by FTS5 itself, in a table of the connection's `temp` schema, so stemming and
separators are exactly the index's.

Every function here is blocking and runs on the owning store's worker thread.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Hashable, Sequence
from datetime import UTC, datetime

from memweave.context._schema import TOKENIZE

__all__ = [
    "STOP_WORDS",
    "QueryReference",
    "date_terms",
    "date_text",
    "match_expression",
    "query_terms",
]

_TOKEN = re.compile(r"\w+")
_MAX_TERMS = 64

# A query is matched on its content words. The list is the usual English function words
# (articles, pronouns, auxiliaries, prepositions, question words); it is applied to queries
# only, so the index stays complete and exact phrases still match.
_STOP_WORDS = """a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing don down during each ever few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own s same she should so some such t than that the their
    theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours
    yourself yourselves"""
STOP_WORDS = frozenset(_STOP_WORDS.split())
"""The words a query is not matched on (unless it has no other)."""

_K1 = 1.2
_B = 0.75
# FTS5 keeps the row count and per-column token totals in this record of its `_data` table.
_AVERAGES_ID = 1
_MAX_CACHED_TERMS = 4096

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def query_terms(query: str) -> list[str]:
    """The words of `query` to match: lower-cased, de-duplicated, stop words dropped; plus
    the day terms of the dates it names (`date_terms`).

    When every word is a stop word, they are all kept, so "who are you" still matches.
    """
    words = list(dict.fromkeys(word.lower() for word in _TOKEN.findall(query)))
    content = [word for word in words if word not in STOP_WORDS]
    return list(dict.fromkeys([*(content or words)[:_MAX_TERMS], *date_terms(query)]))


def match_expression(terms: Sequence[str]) -> str:
    """The FTS5 `MATCH` expression finding rows that hold any of `terms`.

    Each term is a quoted FTS5 string (word characters only, so no quote to escape): user text
    never reaches FTS5's query syntax as operators or column filters.
    """
    return " OR ".join(f'"{term}"' for term in terms)


def date_text(created_at: float) -> str:
    """The day of `created_at` (UTC) as indexed: "Monday 8 8th May 2023 05-08 day20230508
    day0508".

    Names are English whatever the locale, and the ordinal and the month number let
    "May 8th" and "2023-05-08" match as well as "8 May 2023". The last two words are the
    day's own terms (see `date_terms`): in a store spanning a few months, "May" and "2023"
    are in most rows and weigh little, and "8" is in every month.
    """
    when = datetime.fromtimestamp(created_at, UTC)
    day = when.day
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return (
        f"{_WEEKDAYS[when.weekday()]} {day} {day}{suffix} {_MONTHS[when.month - 1]} "
        f"{when.year} {when.month:02d}-{day:02d} {_day_term(when.year, when.month, day)} "
        f"{_day_term(None, when.month, day)}"
    )


def date_terms(query: str) -> list[str]:
    """The day terms of the dates written in `query` ("8 May 2023", "May 8th, 2023",
    "2023-05-08"; "8 May" without a year matches that day of any year), as `date_text`
    indexes them. Impossible dates are ignored; numeric forms other than ISO's are ambiguous
    (day or month first) and left alone."""
    found: list[str] = []
    for match in _ISO_DATE.finditer(query):
        found.extend(_checked(match["year"], match["month"], match["day"]))
    for pattern in (_DAY_MONTH, _MONTH_DAY):
        for match in pattern.finditer(query):
            month = str(_MONTH_NUMBERS[match["name"].lower()])
            found.extend(_checked(match["year"], month, match["day"]))
    return list(dict.fromkeys(found))


def _day_term(year: int | None, month: int, day: int) -> str:
    return f"day{month:02d}{day:02d}" if year is None else f"day{year:04d}{month:02d}{day:02d}"


def _checked(year: str | None, month: str, day: str) -> list[str]:
    try:
        # A leap year stands in for a missing one, so "29 February" is a date.
        datetime(int(year or 2000), int(month), int(day))
    except ValueError:
        return []
    return [_day_term(None if year is None else int(year), int(month), int(day))]


_MONTH_NUMBERS = {
    **{name.lower(): number for number, name in enumerate(_MONTHS, start=1)},
    **{name[:3].lower(): number for number, name in enumerate(_MONTHS, start=1)},
    "sept": 9,
}
_MONTH_NAME = "|".join(sorted(_MONTH_NUMBERS, key=len, reverse=True))
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s+(?P<year>\d{4}))?"
_ISO_DATE = re.compile(r"\b(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})\b")
_DAY_MONTH = re.compile(
    rf"\b{_DAY}\s+(?:of\s+)?(?P<name>{_MONTH_NAME})\b\.?{_YEAR}\b", re.IGNORECASE
)
_MONTH_DAY = re.compile(rf"\b(?P<name>{_MONTH_NAME})\b\.?\s+{_DAY}\b{_YEAR}\b", re.IGNORECASE)


def _varints(blob: bytes) -> list[int]:
    """Decode SQLite's big-endian varints (7 bits a byte; a ninth byte holds 8)."""
    out: list[int] = []
    pos = 0
    while pos < len(blob):
        value = 0
        for index in range(9):
            byte = blob[pos]
            pos += 1
            if index == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        out.append(value)
    return out


class QueryReference:
    """The BM25 score a query would get as a stored row of `memories_fts`, without storing it.

    It is FTS5's own `bm25()` formula (k1 = 1.2, b = 0.75; a term's IDF counts the rows
    matching it) applied to a row holding the query text in its first column, with the
    statistics the index would have once that row were added: the same value a rolled-back
    insert of the query would give.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._tokens: dict[str, tuple[str, ...]] = {}
        self.own_changes = 0
        """Rows this object changed (in its `temp` table): not changes of the catalogue."""
        # The index's statistics, kept while the catalogue's version is `_version`.
        self._version: Hashable = None
        self._counts: list[int] | None = None
        self._hits: dict[str, int] = {}
        db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.memweave_tokens "
            f"USING fts5(body, tokenize = '{TOKENIZE}')"
        )
        db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.memweave_tokens_vocab "
            "USING fts5vocab(temp, memweave_tokens, instance)"
        )

    def score(self, terms: Sequence[str], version: Hashable) -> float:
        """The reference score of the query `" ".join(terms)`; positive (1e-9 at least).

        `version` names the state of the catalogue: the index's statistics read for one
        version are reused until it changes.
        """
        if version != self._version:
            self._version, self._counts = version, None
            self._hits.clear()
        phrases = self._tokenize(terms)
        query = [token for phrase in phrases for token in phrase]
        if self._counts is None:
            row = self._db.execute(
                "SELECT block FROM memories_fts_data WHERE id = ?", (_AVERAGES_ID,)
            ).fetchone()
            self._counts = _varints(bytes(row[0])) if row is not None else []
        counts = self._counts
        rows = (counts[0] if counts else 0) + 1
        length = len(query)
        average = (sum(counts[1:]) + length) / rows
        score = 0.0
        for term, phrase in zip(terms, phrases, strict=True):
            frequency = _occurrences(phrase, query)
            if not frequency:
                continue
            hits = self._matching_rows(term) + 1
            idf = math.log((rows - hits + 0.5) / (hits + 0.5))
            if idf <= 0:
                idf = 1e-6  # as FTS5 does, so very common terms still count a little
            score += (
                idf * frequency * (_K1 + 1) / (frequency + _K1 * (1 - _B + _B * length / average))
            )
        return score if score > 0 else 1e-9

    def _matching_rows(self, term: str) -> int:
        hits = self._hits.get(term)
        if hits is None:
            if len(self._hits) >= _MAX_CACHED_TERMS:
                self._hits.clear()
            row = self._db.execute(
                "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?", (f'"{term}"',)
            ).fetchone()
            hits = self._hits[term] = int(row[0])
        return hits

    def _tokenize(self, terms: Sequence[str]) -> list[tuple[str, ...]]:
        """Each term's FTS5 tokens (stemmed; a term may hold several, or none)."""
        missing = [term for term in dict.fromkeys(terms) if term not in self._tokens]
        if missing:
            if len(self._tokens) + len(missing) > _MAX_CACHED_TERMS:
                self._tokens.clear()
            before = self._db.total_changes
            try:
                self._db.execute("DELETE FROM temp.memweave_tokens")
                self._db.executemany(
                    "INSERT INTO temp.memweave_tokens (rowid, body) VALUES (?, ?)",
                    enumerate(missing, start=1),
                )
                found: dict[int, list[str]] = {}
                for doc, token in self._db.execute(
                    "SELECT doc, term FROM temp.memweave_tokens_vocab ORDER BY doc, offset"
                ):
                    found.setdefault(int(doc), []).append(str(token))
                self._db.execute("DELETE FROM temp.memweave_tokens")
            finally:
                self.own_changes += self._db.total_changes - before
            for number, term in enumerate(missing, start=1):
                self._tokens[term] = tuple(found.get(number, ()))
        return [self._tokens[term] for term in terms]


def _occurrences(phrase: tuple[str, ...], tokens: list[str]) -> int:
    """How many times the token sequence `phrase` occurs in `tokens`."""
    if not phrase:
        return 0
    size = len(phrase)
    starts = range(len(tokens) - size + 1)
    return sum(1 for start in starts if tuple(tokens[start : start + size]) == phrase)
