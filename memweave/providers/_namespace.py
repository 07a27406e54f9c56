"""The `namespace` option every store takes: the name its data lives under, so several
applications share one server. Checked here; each backend derives its stored names from it.

- Redis: keys `{namespace}:...` (`memweave:...` by default).
- SQL: tables `{namespace}_messages`, `_sessions`, `_schema` and `_checkpoints`
  (`memweave_messages`, ...).
- Chroma: the collection `{namespace}_history` (`memweave_history`); another store's
  `{namespace}_<role>` (`memweave_store`).
- In memory: nothing; a provider's data is its own anyway.

The default, `memweave`, maps to the names earlier releases used by default. A store that
runs on more than one backend (the integrations' storages) resolves its names with
`StoredNames` once it knows the backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from memweave.errors import ConfigurationError

__all__ = [
    "ANY",
    "CHROMA",
    "DEFAULT_NAMESPACE",
    "REDIS",
    "SQL",
    "NamespaceRule",
    "StoredNames",
    "check_namespace",
    "chroma_names",
    "chroma_rule",
    "redis_names",
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
_CHROMA_MAX = 512
"""The longest collection name Chroma takes."""


def chroma_rule(role: str) -> NamespaceRule:
    """The namespace rule of a Chroma collection `<namespace>_<role>`: as long as the name
    still fits in Chroma's 512 characters."""
    longest = _CHROMA_MAX - len(role) - 1
    return NamespaceRule(
        re.compile(rf"[a-zA-Z0-9][a-zA-Z0-9._-]{{0,{longest - 1}}}"),
        f"1-{longest} characters of [a-zA-Z0-9._-], starting with a letter or digit (it "
        "starts the collection name)",
    )


CHROMA = chroma_rule("history")
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


def redis_names(namespace: object, prefix: object, *, owner: str) -> str:
    """The namespace, and first part of every key name, of a Redis store given `namespace`
    or its deprecated name `prefix`.

    Raises:
        ConfigurationError: The value given is not valid; the message names the option.
    """
    if prefix is None:
        return check_namespace(namespace, REDIS, owner=owner)
    return check_namespace(prefix, REDIS, owner=owner, option="prefix")


_COLLECTION = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]")


def chroma_names(
    namespace: object,
    collection: object,
    *,
    owner: str,
    option: str = "namespace",
    role: str = "history",
) -> tuple[str, str]:
    """The namespace and collection name of a Chroma store given `namespace`
    (`<namespace>_<role>`, `<namespace>_history` for a history), or the deprecated
    `collection`: an exact name, kept as it is, whose namespace is the name less its
    `_<role>` ending.

    Raises:
        ConfigurationError: The value given is not valid.
    """
    suffix = f"_{role}"
    if collection is None:
        rule = CHROMA if role == "history" else chroma_rule(role)
        checked = check_namespace(namespace, rule, owner=owner, option=option)
        return checked, f"{checked}{suffix}"
    if not isinstance(collection, str) or not _COLLECTION.fullmatch(collection):
        raise ConfigurationError(
            f"{owner}: collection must be 3-512 characters of [a-zA-Z0-9._-], starting and "
            f"ending with a letter or digit, got {collection!r}"
        )
    trimmed = collection.removesuffix(suffix)
    return trimmed or collection, collection


@dataclass(frozen=True, slots=True)
class StoredNames:
    """The names a store on one of several backends keeps its data under, from its
    `namespace` or the deprecated per-backend names given instead (each used as given).
    Each backend's rule applies only once that backend is asked for.

    Args:
        owner: What the names are for, as errors name it (e.g. `"MemweaveStore"`).
        namespace: The namespace (`DEFAULT_NAMESPACE` when None).
        prefix: The deprecated Redis key prefix.
        table_prefix: The deprecated SQL table prefix.
        collection: The deprecated Chroma collection name.

    Raises:
        ConfigurationError: `namespace` is not a non-empty str.
    """

    owner: str
    namespace: str | None = None
    prefix: str | None = field(default=None, kw_only=True)
    table_prefix: str | None = field(default=None, kw_only=True)
    collection: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.namespace is not None:
            check_namespace(self.namespace, ANY, owner=self.owner)

    def redis_prefix(self) -> str:
        """The first part of every Redis key name: the namespace itself.

        Raises:
            ConfigurationError: It holds a brace, a space or a control character.
        """
        return redis_names(self.namespace, self.prefix, owner=self.owner)

    def sql_prefix(self) -> str:
        """The first part of every SQL table name: the namespace and an underscore.

        Raises:
            ConfigurationError: It does not fit `SQL`'s rule.
        """
        return sql_names(self.namespace, self.table_prefix, owner=self.owner)[1]

    def chroma_collection(self, role: str) -> str:
        """The Chroma collection of the store's `role` (e.g. `"store"`): `<namespace>_<role>`.

        Raises:
            ConfigurationError: It does not fit `chroma_rule(role)`.
        """
        return chroma_names(self.namespace, self.collection, owner=self.owner, role=role)[1]
