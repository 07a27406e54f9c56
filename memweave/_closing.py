"""`AsyncCloseable`: the `async with` support of every memweave object that has an `aclose()`."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["AsyncCloseable"]


class AsyncCloseable:
    """Mixin for objects released by `await obj.aclose()`: `async with obj as o` binds `obj`
    itself and calls `aclose()` on the way out, also when the block raised.

    A subclass implements `aclose()`, and makes it idempotent, since a caller may also close
    explicitly inside or after the block. The mixin has no metaclass of its own, so it combines
    with `ABC`.

    Example:
        ```python
        class Connection(AsyncCloseable):
            async def aclose(self) -> None:
                ...

        async with Connection() as connection:
            ...
        ```
    """

    async def aclose(self) -> None:
        """Release what the object holds. Idempotent.

        Raises:
            NotImplementedError: The subclass does not implement `aclose`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement aclose()")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
