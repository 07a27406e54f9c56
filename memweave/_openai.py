"""What the `openai`-based models share: importing the SDK, owning its client, mapping its errors.

`OpenAIChatClient` (`memweave.llm`) and `OpenAIEmbeddings` (`memweave.embeddings`) subclass
`OpenAIModelClient`; the SDK is imported only when one of them is built.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from memweave._closing import AsyncCloseable
from memweave._urls import mask_url
from memweave.errors import ConfigurationError, MissingDependency, ModelError, ModelHTTPError

if TYPE_CHECKING:
    import openai

__all__ = ["OpenAIModelClient", "import_openai"]


def import_openai() -> Any:
    """Return the `openai` module.

    Raises:
        MissingDependency: `openai` is not installed (`pip install 'memweave[openai]'`).
    """
    try:
        import openai
    except ImportError as exc:
        raise MissingDependency("openai", "openai") from exc
    return openai


class OpenAIModelClient(AsyncCloseable):
    """Base of the models called through an `openai.AsyncOpenAI`, built here or passed in.

    It closes only a client it built, translates the SDK's exceptions at one boundary
    (`_map_errors`), and masks the password of `base_url` in messages and `repr`. A subclass
    validates its own options, then calls `super().__init__`, and names itself in the error
    messages through the class variables below.

    Args:
        model: The model name, already checked to be a non-empty str.
        client: An `openai.AsyncOpenAI` to use instead of building one.
        base_url: The server's base URL; only without `client`.
        api_key: The API key; only without `client`.

    Raises:
        MissingDependency: `openai` is not installed.
        ConfigurationError: `client` is not an `openai.AsyncOpenAI` or comes with `base_url`
            or `api_key`, or no API key was given or found.
    """

    _server: ClassVar[str]
    """What error messages call the server, e.g. `"model server"`."""
    _failed_call: ClassVar[str]
    """How error messages name a failed call, before `model '<name>' failed`, e.g. `"call to"`."""

    def __init__(
        self,
        model: str,
        *,
        client: openai.AsyncOpenAI | None,
        base_url: str | None,
        api_key: str | None,
    ) -> None:
        sdk = import_openai()
        if client is not None:
            if base_url is not None or api_key is not None:
                raise ConfigurationError(
                    "pass either client= or base_url=/api_key=, not both: "
                    "the client already carries its URL and key"
                )
            if not isinstance(client, sdk.AsyncOpenAI):
                raise ConfigurationError(f"client must be an openai.AsyncOpenAI, got {client!r}")
            self._client: openai.AsyncOpenAI = client
            self._owns_client = False
        else:
            try:
                self._client = sdk.AsyncOpenAI(base_url=base_url, api_key=api_key)
            except sdk.OpenAIError as exc:
                raise ConfigurationError(
                    f"cannot build an OpenAI client for model {model!r}: {exc} "
                    "(pass api_key= or set OPENAI_API_KEY)"
                ) from exc
            self._owns_client = True
        self.model = model
        self._closed = False

    @property
    def base_url(self) -> str:
        """The server's base URL, with any password masked."""
        return mask_url(str(self._client.base_url))

    @contextlib.contextmanager
    def _map_errors(self) -> Iterator[None]:
        """Translate `openai` exceptions into `ModelHTTPError` and `ModelError`."""
        sdk = import_openai()
        try:
            yield
        except sdk.APIStatusError as exc:
            raise ModelHTTPError(exc.status_code, model=self.model, body=exc.body) from exc
        except sdk.APIConnectionError as exc:
            if isinstance(exc, sdk.APITimeoutError):
                raise ModelError(
                    f"model {self.model!r} at {self.base_url} timed out before answering"
                ) from exc
            raise ModelError(
                f"could not reach the {self._server} at {self.base_url} for model "
                f"{self.model!r}: {exc}"
            ) from exc
        except sdk.OpenAIError as exc:
            raise ModelError(f"{self._failed_call} model {self.model!r} failed: {exc}") from exc

    async def aclose(self) -> None:
        """Close the HTTP connections of a client built here. Idempotent; a client passed in
        as `client=` is left open."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"
