"""Token counting with tiktoken (`TokenCounter`) and the `TokenBudgetReducer` built on it."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from memweave._models import load_tiktoken
from memweave.errors import ConfigurationError, InvalidArgument, InvalidMessage, MissingDependency
from memweave.messages import ChatMessage
from memweave.reducers._groups import as_message_list
from memweave.reducers._window import WindowReducer

if TYPE_CHECKING:
    import tiktoken

__all__ = ["DEFAULT_ENCODING", "TokenBudgetReducer", "TokenCounter", "TokenCounterProtocol"]

logger = logging.getLogger(__name__)

DEFAULT_ENCODING = "o200k_base"
"""The encoding used when no model or encoding is given, or the model is unknown (GPT-4o's)."""


class TokenCounterProtocol(Protocol):
    """Counts the tokens a list of messages costs a model; bring your own to budget other models.

    `count([])` is the fixed cost of a request with no messages (OpenAI's reply priming), and
    `count(messages)` equals `count([])` plus the sum of `count_message` over `messages`.
    """

    def count_message(self, message: ChatMessage) -> int:
        """Return the tokens `message` adds to a request."""
        ...

    def count(self, messages: Iterable[ChatMessage]) -> int:
        """Return the tokens a request holding `messages` costs."""
        ...


def _load_encoding(name: str, cache_dir: str | os.PathLike[str] | None) -> tiktoken.Encoding:
    try:
        import tiktoken
    except ImportError as exc:
        raise MissingDependency("tiktoken", "tokens") from exc
    if name not in tiktoken.list_encoding_names():
        raise ConfigurationError(
            f"unknown tiktoken encoding {name!r}; known: {sorted(tiktoken.list_encoding_names())}"
        )
    return load_tiktoken(name, cache_dir)


def _encoding_for_model(model: str) -> str:
    try:
        import tiktoken
    except ImportError as exc:
        raise MissingDependency("tiktoken", "tokens") from exc
    try:
        return tiktoken.encoding_name_for_model(model)
    except KeyError:
        logger.warning(
            "tiktoken does not know model %r; counting its tokens with %s",
            model,
            DEFAULT_ENCODING,
        )
        return DEFAULT_ENCODING


class TokenCounter:
    """Counts tokens the way OpenAI's chat models bill a request, with a per-message cache.

    A message costs 3 tokens, plus the tokens of its role and its text, plus its `name` and 1
    more when it has one; a request adds 3 for priming the reply. That is OpenAI's rule and
    matches the API's `prompt_tokens` exactly for text messages on `gpt-4o` (o200k_base) and
    `gpt-4` (cl100k_base). memweave's own rules for the rest:

    - each tool call costs 3 plus the tokens of its function name and its arguments; call ids
      are not counted, and a refusal counts as text;
    - text content parts count their text; an `image_url` part counts 85 tokens with
      `"detail": "low"` and 765 otherwise (a 1024x1024 image at high detail); an
      `input_audio` or `file` part counts a flat 256. Budget such messages with headroom
      (`reserve_tokens`).

    Counts are cached by message id (one counter has one encoding, so the key is in effect
    (id, encoding)) in an LRU of `cache_size` entries, so a message is encoded once however
    many turns it stays in the history. A message whose content changed under the same id is
    recounted.

    Args:
        model: The model whose encoding to use (`"gpt-4o"`, `"gpt-4"`). An unknown model
            falls back to o200k_base with a logged warning.
        encoding: A tiktoken encoding name; wins over `model`. Default: o200k_base.
        cache_size: How many message counts to keep.
        cache_dir: The folder of tiktoken's encoding files; when None, `$TIKTOKEN_CACHE_DIR`,
            else tiktoken's default cache (downloaded into on first use; `memweave models
            fetch` fills it offline). An encoding tiktoken has loaded in this process already
            is reused whatever the folder.

    Raises:
        MissingDependency: tiktoken is not installed (`pip install 'memweave[tokens]'`).
        ConfigurationError: The encoding is unknown.
        ModelUnavailable: The encoding's file is not in the cache and could not be downloaded
            (the message names `memweave models` and `TIKTOKEN_CACHE_DIR`).

    Example:
        ```python
        counter = TokenCounter("gpt-4o")
        counter.count([ChatMessage.user("Hello!")])  # 3 + (3 + 1 + 2) = 9
        ```
    """

    TOKENS_PER_MESSAGE = 3
    """Fixed cost of every message (its start, role and end markers)."""
    TOKENS_PER_NAME = 1
    """Extra cost of a message's `name`, on top of its tokens."""
    REPLY_PRIMING = 3
    """Fixed cost of a request: the reply is primed with `<|start|>assistant<|message|>`."""
    TOKENS_PER_TOOL_CALL = 3
    """Fixed cost of one tool call, on top of its name and arguments."""
    IMAGE_LOW_DETAIL_TOKENS = 85
    """Cost of an `image_url` part with `"detail": "low"`."""
    IMAGE_TOKENS = 765
    """Cost of any other `image_url` part."""
    OTHER_PART_TOKENS = 256
    """Cost of an `input_audio` or `file` part."""

    def __init__(
        self,
        model: str | None = None,
        *,
        encoding: str | None = None,
        cache_size: int = 100_000,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if model is not None and (not isinstance(model, str) or not model):
            raise ConfigurationError(f"model must be a non-empty str or None, got {model!r}")
        if encoding is not None and (not isinstance(encoding, str) or not encoding):
            raise ConfigurationError(f"encoding must be a non-empty str or None, got {encoding!r}")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigurationError(f"cache_size must be an int >= 0, got {cache_size!r}")
        if encoding is None:
            encoding = _encoding_for_model(model) if model is not None else DEFAULT_ENCODING
        self.model = model
        self.cache_size = cache_size
        self._encoding = _load_encoding(encoding, cache_dir)
        self._encode = self._encoding.encode_ordinary
        self._cache: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def encoding_name(self) -> str:
        """The tiktoken encoding in use, e.g. `"o200k_base"`."""
        return self._encoding.name

    def count_text(self, text: str) -> int:
        """Return the tokens of plain `text`, with no message overhead.

        Special-token strings such as `<|endoftext|>` count as ordinary text.

        Raises:
            InvalidArgument: `text` is not a str.
        """
        if not isinstance(text, str):
            raise InvalidArgument("text", text, "must be a str")
        return len(self._encode(text))

    def count_message(self, message: ChatMessage) -> int:
        """Return the tokens `message` adds to a request (cached by message id).

        Raises:
            InvalidMessage: `message` is not a `ChatMessage`.
        """
        if not isinstance(message, ChatMessage):
            raise InvalidMessage(f"expected a ChatMessage, got {type(message).__name__}")
        content = message.content
        fingerprint = hash(
            (
                message.role,
                content if isinstance(content, str) else (message.text, len(content)),
                message.name,
                message.tool_calls,
                message.refusal,
            )
        )
        key = message.id
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == fingerprint:
                self._cache.move_to_end(key)
                return cached[1]
        tokens = self._count_uncached(message)
        if self.cache_size:
            with self._lock:
                self._cache[key] = (fingerprint, tokens)
                self._cache.move_to_end(key)
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return tokens

    def count(self, messages: Iterable[ChatMessage]) -> int:
        """Return the tokens a request holding `messages` costs, reply priming included.

        Raises:
            InvalidMessage: An item is not a `ChatMessage` (its position is named).
        """
        total = self.REPLY_PRIMING
        for position, message in enumerate(as_message_list(messages)):
            if not isinstance(message, ChatMessage):
                raise InvalidMessage(
                    f"expected a ChatMessage, got {type(message).__name__}", position=position
                )
            total += self.count_message(message)
        return total

    def clear_cache(self) -> None:
        """Forget every cached message count."""
        with self._lock:
            self._cache.clear()

    def _count_uncached(self, message: ChatMessage) -> int:
        encode = self._encode
        tokens = self.TOKENS_PER_MESSAGE + len(encode(message.role))
        content = message.content
        if isinstance(content, str):
            tokens += len(encode(content))
        else:
            for part in content:
                kind = part.get("type")
                if kind == "text":
                    tokens += len(encode(str(part["text"])))
                elif kind == "refusal":
                    tokens += len(encode(str(part.get("refusal", ""))))
                elif kind == "image_url":
                    image = part.get("image_url")
                    low = isinstance(image, dict) and image.get("detail") == "low"
                    tokens += self.IMAGE_LOW_DETAIL_TOKENS if low else self.IMAGE_TOKENS
                else:
                    tokens += self.OTHER_PART_TOKENS
        if message.name is not None:
            tokens += len(encode(message.name)) + self.TOKENS_PER_NAME
        for call in message.tool_calls:
            tokens += (
                self.TOKENS_PER_TOOL_CALL + len(encode(call.name)) + len(encode(call.arguments))
            )
        if message.refusal is not None:
            tokens += len(encode(message.refusal))
        return tokens

    def __repr__(self) -> str:
        return f"TokenCounter(model={self.model!r}, encoding={self.encoding_name!r})"


class TokenBudgetReducer(WindowReducer):
    """Keeps the newest messages that fit a token budget, never splitting a tool call from its
    results.

    The result is the system messages (with `keep_system`) followed by the newest whole groups
    of the other messages, where a group is an assistant message with tool calls plus all its
    tool results, or any other single message. Together they cost at most
    `max_tokens - reserve_tokens` tokens as `TokenCounter.count` reckons them, reply priming
    included. The newest group is always kept; when it alone is over budget a warning is
    logged. With `start_on_user` the kept part starts on its oldest user message when it holds
    one, and it never starts on an orphan tool result.

    A turn costs the window, not the history: the reducer walks back from the newest message
    and stops when the budget is full, per-message counts are cached by id, and the search for
    system messages only scans what was appended since the last call.

    Args:
        max_tokens: The budget, in tokens.
        model: Count with this model's encoding (see `TokenCounter`).
        encoding: Count with this tiktoken encoding.
        counter: Count with this counter instead (share one between reducers, or bring your
            own for other models); not together with `model` or `encoding`.
        keep_system: Keep every system message; `False` treats them like the others.
        reserve_tokens: Leave this many tokens of `max_tokens` free (e.g. for the reply).
        start_on_user: Start the kept part on a user message when it holds one.

    Raises:
        ConfigurationError: A bad option, or tiktoken cannot load the encoding.

    Example:
        ```python
        reducer = TokenBudgetReducer(4_000, model="gpt-4o", reserve_tokens=500)
        window = await reducer.reduce(history)
        ```
    """

    def __init__(
        self,
        max_tokens: int,
        *,
        model: str | None = None,
        encoding: str | None = None,
        counter: TokenCounterProtocol | None = None,
        keep_system: bool = True,
        reserve_tokens: int = 0,
        start_on_user: bool = True,
    ) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigurationError(f"max_tokens must be a positive int, got {max_tokens!r}")
        if (
            isinstance(reserve_tokens, bool)
            or not isinstance(reserve_tokens, int)
            or not 0 <= reserve_tokens < max_tokens
        ):
            raise ConfigurationError(
                f"reserve_tokens must be an int in [0, max_tokens={max_tokens}), "
                f"got {reserve_tokens!r}"
            )
        if counter is not None and (model is not None or encoding is not None):
            raise ConfigurationError("pass counter= or model=/encoding=, not both")
        self.max_tokens = max_tokens
        self.reserve_tokens = reserve_tokens
        super().__init__(keep_system=keep_system, start_on_user=start_on_user)
        self.counter: TokenCounterProtocol = (
            counter if counter is not None else TokenCounter(model, encoding=encoding)
        )

    @property
    def budget(self) -> int:
        """Tokens the kept messages may cost, reply priming included."""
        return self.max_tokens - self.reserve_tokens

    def _budget(self) -> int:
        return self.budget

    def _cost(self, message: ChatMessage) -> int:
        return self.counter.count_message(message)

    def _fixed_cost(self) -> int:
        return self.counter.count([])  # reply priming

    def _log_over_budget(self, cost: int) -> None:
        logger.warning(
            "the newest message group alone costs more than the budget of %d tokens "
            "(%d with system messages); keeping it anyway",
            self.budget,
            cost,
        )

    def __repr__(self) -> str:
        return (
            f"TokenBudgetReducer(max_tokens={self.max_tokens}, counter={self.counter!r}, "
            f"keep_system={self.keep_system}, reserve_tokens={self.reserve_tokens}, "
            f"start_on_user={self.start_on_user})"
        )
