"""The one error tree of lmroute.

Library code raises only these; the CLI prints them as one clear line and the server turns
them into OpenAI-shaped errors::

    LmrouteError
    ├── ConfigError             bad options, configs or arguments
    │   ├── InvalidModelNameError   a "router-<name>-<threshold>" string that does not parse
    │   └── RequestError            a request the server refuses (its HTTP status, param, code)
    ├── UnknownRouterError      no registered router or router directory of that name
    ├── UnknownModelError       a model name the router or benchmark does not know
    ├── DataError               a data file that is missing, empty or malformed
    ├── WriteError              an output file or folder that cannot be written (also an OSError)
    ├── CheckpointError         a router directory that cannot be loaded
    ├── UnparsableOutputError   a causal_llm router's model answered no label (on_unparsable="error")
    ├── DownloadError           public data or weights could not be fetched
    ├── MissingDependencyError  an optional package is not installed (the message names its extra)
    ├── RouterFailedError       a router raised while scoring a request (the server's 503)
    └── UpstreamError           an upstream LLM endpoint failed
        └── UpstreamTimeoutError
"""

from __future__ import annotations


class LmrouteError(Exception):
    """Base class of every error lmroute raises on purpose."""


class ConfigError(LmrouteError, ValueError):
    """An option, config file or argument is invalid."""


class InvalidModelNameError(ConfigError):
    """A model string such as ``router-mf-0.52`` does not name a router and threshold."""


class RequestError(ConfigError):
    """A request the server refuses; it becomes an OpenAI-shaped 4xx error."""

    def __init__(
        self, message: str, *, status: int = 400, param: str | None = None, code: str = "invalid_request"
    ):
        super().__init__(message)
        #: The HTTP status of the answer (400, 401, 413...).
        self.status = status
        #: The request field at fault, if one is.
        self.param = param
        #: OpenAI's machine-readable ``code`` (``invalid_value``, ``invalid_api_key``...).
        self.code = code


class UnknownRouterError(LmrouteError, KeyError):
    """No router of that name is registered and no router directory is at that path."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownModelError(LmrouteError, KeyError):
    """A model name is not in the vocabulary of a router or benchmark."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DataError(LmrouteError, ValueError):
    """A data file is missing, empty or malformed."""


class WriteError(LmrouteError, OSError):
    """An output file or folder cannot be written: a folder or a file in its way, no permission, a
    full disk. An OSError too, so that code which goes on without a cache file still catches it."""


class CheckpointError(LmrouteError):
    """A saved router directory is missing files, corrupted, or from an incompatible version."""


class UnparsableOutputError(LmrouteError):
    """A ``causal_llm`` router's next token was not one of its label tokens and its
    ``on_unparsable`` option is ``"error"``."""


class DownloadError(LmrouteError):
    """Public evaluation data, prompts or weights could not be downloaded."""


class MissingDependencyError(LmrouteError, ImportError):
    """An optional package is not installed; the message names the extra that installs it."""


class RouterFailedError(LmrouteError):
    """A router raised while scoring a request; the server answers 503 ``router_error``."""


class UpstreamError(LmrouteError):
    """An upstream OpenAI-compatible endpoint failed (connection, 5xx, malformed reply)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        model: str | None = None,
        retry_after: float | None = None,
        public: str | None = None,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.model = model
        #: Seconds the endpoint asked to wait before the next attempt (its Retry-After), if it said.
        self.retry_after = retry_after
        #: The message without what a server's clients must not learn (the endpoint's URL, host and
        #: port); None when the message has none of it.
        self.public = public

    @property
    def client_message(self) -> str:
        """What a server tells its client: the message without the endpoint's address."""
        return self.public if self.public is not None else str(self)

    def restated(self, message: str, public: str | None = None) -> UpstreamError:
        """The same error (class, status, model, Retry-After) with ``message`` (and its ``public``
        form): a failure that ends a chain of fallbacks, told with the failures before it."""
        return type(self)(
            message,
            status_code=self.status_code,
            model=self.model,
            retry_after=self.retry_after,
            public=public,
        )


class UpstreamTimeoutError(UpstreamError):
    """An upstream endpoint did not answer in time."""
