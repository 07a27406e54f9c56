"""What every blocking class of `memweave.sync` shares: it holds one async object and drives
its coroutines on the portal loop (`memweave._portal`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar

from memweave._closing import AsyncCloseable
from memweave._portal import in_event_loop, portal
from memweave.errors import ProviderClosed, SyncCallInEventLoop

__all__ = ["Blocking", "BlockingCloseable", "mirrors", "public_name", "run", "unwrap"]

_P = ParamSpec("_P")
_T = TypeVar("_T")
_A = TypeVar("_A")
_C = TypeVar("_C", bound=AsyncCloseable)


def public_name(cls: type) -> str:
    """`cls` named from the nearest public module (`memweave.orchestration`, not
    `memweave.orchestration._checkpoints_sql`)."""
    parts = cls.__module__.split(".")
    while len(parts) > 1 and parts[-1].startswith("_"):
        parts.pop()
    return f"{'.'.join(parts)}.{cls.__qualname__}"


def run(
    method: str,
    instead: str,
    function: Callable[_P, Coroutine[Any, Any, _T]],
    /,
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _T:
    """Run `function(*args, **kwargs)` on the portal loop and wait; inside a running event
    loop raise `SyncCallInEventLoop(method, instead)` without starting it."""
    if in_event_loop():
        raise SyncCallInEventLoop(method, instead)
    return portal().run(function, *args, **kwargs)


async def _build(factory: Callable[..., _T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _T:
    return factory(*args, **kwargs)


def unwrap(value: Any) -> Any:
    """The async object behind a blocking one; anything else (and the items of a list or
    tuple) as it is. So a blocking provider, reducer or agent may be passed wherever the
    blocking face builds an async object that takes one."""
    if isinstance(value, Blocking):
        return value._async
    if isinstance(value, list | tuple) and any(isinstance(item, Blocking) for item in value):
        return type(value)(unwrap(item) for item in value)
    return value


def mirrors(
    source: Callable[_P, object],
) -> Callable[[Callable[..., None]], Callable[Concatenate[Any, _P], None]]:
    """Give a blocking class's `__init__(self, *args, **kwargs)` the signature of `source`
    (the async class it builds), for type checkers, IDEs and `help()`."""

    def decorate(init: Callable[..., None]) -> Callable[Concatenate[Any, _P], None]:
        init.__signature__ = inspect.signature(source.__init__)  # type: ignore[attr-defined]
        return init

    return decorate


class Blocking(Generic[_A]):
    """A blocking face of one async object, which lives on the portal loop.

    Subclasses add one thin method per async method; `_call` runs it on the portal. The
    object is safe to share between threads: every call becomes a task on the one loop.
    """

    _closed = False

    def __init__(self, wrapped: _A) -> None:
        self._async = wrapped

    @classmethod
    def _adopt(cls, wrapped: _A) -> Self:
        """Wrap an async object already built, without running the subclass's `__init__`."""
        blocking = cls.__new__(cls)
        Blocking.__init__(blocking, wrapped)
        return blocking

    def _build(self, factory: Callable[..., _A], args: Any, kwargs: Any) -> None:
        """Build the async object on the portal loop (so whatever it binds, it binds there),
        passing the async objects behind any blocking arguments."""
        built = run(
            f"memweave.sync.{type(self).__name__}()",
            f"the methods of {public_name(factory) if isinstance(factory, type) else factory}",
            _build,
            factory,
            tuple(unwrap(arg) for arg in args),
            {name: unwrap(value) for name, value in kwargs.items()},
        )
        Blocking.__init__(self, built)

    def _call(
        self,
        function: Callable[_P, Coroutine[Any, Any, _T]],
        /,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run the async object's method `function` on the portal and return its result."""
        if self._closed:
            raise ProviderClosed(type(self).__name__, function.__name__)
        if in_event_loop():
            raise self._refusal(function.__name__)
        return portal().run(function, *args, **kwargs)

    def _refusal(self, method: str, async_method: str | None = None) -> SyncCallInEventLoop:
        return SyncCallInEventLoop(
            f"memweave.sync.{type(self).__name__}.{method}()",
            f"{public_name(type(self._async))}.{async_method or method}()",
        )

    def __repr__(self) -> str:
        return f"memweave.sync.{type(self).__name__}({self._async!r})"


class BlockingCloseable(Blocking[_C]):
    """A blocking face of an object released by `aclose()`: `close()` and `with` release it.

    After `close()`, every method raises `ProviderClosed`.
    """

    def close(self) -> None:
        """Release what the object holds (its async `aclose()`, on the portal loop).

        Idempotent; every other method raises `ProviderClosed` afterwards.
        """
        if self._closed:
            return
        if in_event_loop():
            raise self._refusal("close", "aclose")
        self._closed = True
        portal().run(self._async.aclose)

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
