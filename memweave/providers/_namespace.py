"""The `namespace` option every store takes: the name its data lives under, so several
applications share one server. Checked here; each backend derives its stored names from it.

- Redis: keys `{namespace}:...` (`memweave:...` by default).
- SQL: tables `{namespace}_messages`, `_sessions`, `_schema` and `_checkpoints`
  (`memweave_messages`, ...).
- Chroma: the collection `{namespace}_history` (`memweave_history`).
- In memory: nothing; a provider's data is its own anyway.

The default, `memweave`, maps to the names earlier releases used by default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memweave.errors import ConfigurationError

__all__ = [
    "ANY",
    "CHROMA",
    "DEFAULT_NAMESPACE",
    "REDIS",
    "SQL",
    "NamespaceRule",
    "check_namespace",
    "chroma_names",
    "sql_names",
]

DEFAULT_NAMESPACE = "memweave"
"""The namespace of a store given none; it maps to the stored names of earlier releases."""


@dataclass(frozen=True, slots=True)
class NamespaceRule:
    """What a backend accepts as a namespace: a pattern the whole value matches, and the rule
    in words for the error."""

    pattern: re.Pattern[str]
    rule: str


REDIS = NamespaceRule(
    re.compile(r"[^{}\x00-\x20\x7f]+"),
    "a non-empty str without braces, spaces or control characters (braces would change the "
    "cluster hash tag)",
)
SQL = NamespaceRule(
    re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,30}"),
    "1-31 ASCII letters, digits or underscores, not starting with a digit (it starts every "
    "table name)",
)
CHROMA = NamespaceRule(
    re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,503}"),
    "1-504 characters of [a-zA-Z0-9._-], starting with a letter or digit (it starts the "
    "collection name)",
)
ANY = NamespaceRule(re.compile(r".+", re.DOTALL), "a non-empty str")


def check_namespace(
    value: object, rule: NamespaceRule, *, owner: str, option: str = "namespace"
) -> str:
    """Return `value`, or `DEFAULT_NAMESPACE` for None, when `rule` accepts it.

    Raises:
        ConfigurationError: `rule` refuses it; the message names `owner`, `option` (the name
            the value was passed under) and the value.
    """
    if value is None:
        return DEFAULT_NAMESPACE
    if not isinstance(value, str) or not rule.pattern.fullmatch(value):
        raise ConfigurationError(f"{owner}: {option} must be {rule.rule}, got {value!r}")
    return value


_TABLE_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")


def sql_names(namespace: object, table_prefix: object, *, owner: str) -> tuple[str, str]:
    """The namespace and table-name prefix of a SQL store given `namespace`, or the
    deprecated `table_prefix`: an exact prefix, kept as it is (`app_` names `app_messages`),
    whose namespace is the prefix less one trailing underscore.

    Raises:
        ConfigurationError: The value given is not valid.
    """
    if table_prefix is None:
        checked = check_namespace(namespace, SQL, owner=owner)
        return checked, f"{checked}_"
    if not isinstance(table_prefix, str) or not _TABLE_PREFIX.fullmatch(table_prefix):
        raise ConfigurationError(
            f"{owner}: table_prefix must be 1-32 ASCII letters, digits or underscores, not "
            f"starting with a digit, got {table_prefix!r}"
        )
    trimmed = table_prefix[:-1] if table_prefix.endswith("_") else table_prefix
    return trimmed or table_prefix, table_prefix


_COLLECTION = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]")
_HISTORY = "_history"


def chroma_names(
    namespace: object, collection: object, *, owner: str, option: str = "namespace"
) -> tuple[str, str]:
    """The namespace and collection name of a Chroma history given `namespace`
    (`<namespace>_history`), or the deprecated `collection`: an exact name, kept as it is,
    whose namespace is the name less its `_history` ending.

    Raises:
        ConfigurationError: The value given is not valid.
    """
    if collection is None:
        checked = check_namespace(namespace, CHROMA, owner=owner, option=option)
        return checked, f"{checked}{_HISTORY}"
    if not isinstance(collection, str) or not _COLLECTION.fullmatch(collection):
        raise ConfigurationError(
            f"{owner}: collection must be 3-512 characters of [a-zA-Z0-9._-], starting and "
            f"ending with a letter or digit, got {collection!r}"
        )
    trimmed = collection.removesuffix(_HISTORY)
    return trimmed or collection, collection
