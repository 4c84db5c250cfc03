"""``Controller`` and ``AsyncController``: routed chat completions in the shape of ``openai.OpenAI``.

::

    from lmroute import Controller

    client = Controller(
        routers=["mf"],
        strong={"base_url": "https://api.openai.com/v1", "model": "gpt-4o", "api_key_env": "OPENAI_API_KEY"},
        weak={"base_url": "http://127.0.0.1:8080/v1", "model": "llama-3.1-8b"},
    )
    response = client.chat.completions.create(
        model="router-mf-0.52", messages=[{"role": "user", "content": "Hello!"}]
    )
    response.model     # the upstream model that answered
    response.lmroute   # {"router", "threshold", "score", "decision", "routed_model", "model", "fallback"}

The model string selects router and threshold (``router-<router>-<threshold>``), or a target held
online (``router-mf-share-0.3``, ``router-mf-spend-2.5``; ``control=`` sets the controllers, the
drift detection, conversations and the state file, as a serving config's ``control:``); ``router=``
and ``threshold=`` may be given instead, and an upstream model's own name calls it directly. Answers
are the ``openai`` SDK's ``ChatCompletion`` (or, with ``stream=True``, an iterator of
``ChatCompletionChunk``, the first carrying ``lmroute``, that ``close()`` or a ``with`` block
ends as the SDK's ``Stream``). Both controllers share the server's
routing code (:mod:`lmroute.serving.service`), so they route, batch, retry and fall back alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from lmroute.control.config import ControlConfig
from lmroute.control.taps import EmbeddingSummaries
from lmroute.data.conversations import DEFAULT_ROUTE_ON, RouteOn
from lmroute.exceptions import ConfigError, InvalidModelNameError, LmrouteError, RequestError
from lmroute.routers.base import Router
from lmroute.routing_names import check_router_name
from lmroute.serving.answers import Decision, RoutedStream
from lmroute.serving.config import ServeConfig, build_config
from lmroute.serving.control import check_control_files, prepare_control
from lmroute.serving.fleet import FleetModel
from lmroute.serving.loading import load_routers
from lmroute.serving.protocol import ChatCompletionRequest, ChatMessage, validate
from lmroute.serving.service import RoutingService
from lmroute.upstream import ClientFactory, UpstreamConfig, upstream_from
from lmroute.upstream.http import encode_json

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

_T = TypeVar("_T")
RouterSpecs = Sequence[str | Path | Router] | Mapping[str, str | Path | Router]


class AsyncController:
    """Routes each chat completion to the strong or the weak model; ``await`` its calls.

    ``strong`` and ``weak`` are upstreams: an :class:`UpstreamConfig`, a mapping with
    ``base_url``, ``model`` and ``api_key_env`` (the name of the variable holding the key), or a
    bare model name of the OpenAI API. ``models`` lists N priced models instead (or as well:
    :class:`lmroute.serving.fleet.FleetModel` or mappings with ``name``, ``base_url``, ``model``,
    ``vocabulary``, ``price``), routed among by ``router-<router>-lambda-<value>`` and
    ``router-<router>-quality-<value>``; without strong and weak, the dearest and the cheapest of them
    are. ``routers`` are names, saved router directories, Router
    objects, or a mapping of serving name to any of these; they are loaded here, once.
    ``client_factory`` builds each upstream's transport (:class:`lmroute.upstream.Transport`, given
    its :class:`UpstreamConfig`; tests pass fakes).
    ``control`` (a :class:`~lmroute.control.config.ControlConfig` or its mapping) sets online
    control; its state file is restored here and saved at :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        strong: UpstreamConfig | Mapping[str, Any] | str | None = None,
        weak: UpstreamConfig | Mapping[str, Any] | str | None = None,
        models: Sequence[FleetModel | Mapping[str, Any]] = (),
        routers: RouterSpecs = ("mf",),
        fallback: bool = True,
        route_on: RouteOn = DEFAULT_ROUTE_ON,
        batch_size: int = 64,
        batch_wait_ms: float = 0.0,
        scoring_threads: int = 1,
        client_factory: ClientFactory | None = None,
        control: ControlConfig | Mapping[str, Any] | None = None,
    ):
        given = {"strong": strong, "weak": weak}
        tiers = {tier: _upstream(tier, u) for tier, u in given.items() if u is not None}
        summaries = EmbeddingSummaries()
        loaded = _load(routers, summaries)
        if len(tiers) < 2 and not models:
            raise ConfigError("give the strong and the weak model, or models= (N priced models)")
        try:
            config = ServeConfig.model_validate(
                dict(
                    **tiers,
                    models=tuple(models),
                    routers=tuple(loaded),
                    fallback=fallback,
                    route_on=route_on,
                    batch_size=batch_size,
                    batch_wait_ms=batch_wait_ms,
                    scoring_threads=scoring_threads,
                    control=control if control is not None else {},
                )
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(map(str, error["loc"]))
            message = error["msg"].removeprefix("Value error, ")
            raise ConfigError(
                f"invalid controller options: {where + ': ' if where else ''}{message}"
            ) from None
        check_control_files(config.control)
        self._init(config, loaded, client_factory, summaries)

    @classmethod
    def from_config(
        cls,
        config: ServeConfig | str | Path,
        *,
        routers: RouterSpecs | None = None,
        client_factory: ClientFactory | None = None,
    ) -> AsyncController:
        """A controller from a serving config (or its YAML file), as ``lmroute serve`` would run it."""
        if not isinstance(config, ServeConfig):
            config = build_config(config)
        check_control_files(config.control)
        self = cls.__new__(cls)
        summaries = EmbeddingSummaries()
        loaded = _load(routers if routers is not None else config.routers, summaries)
        self._init(config, loaded, client_factory, summaries)
        return self

    def _init(
        self,
        config: ServeConfig,
        routers: dict[str, Router],
        factory: ClientFactory | None,
        summaries: EmbeddingSummaries,
    ) -> None:
        self.config = config
        self._closed = False
        self._service = RoutingService.from_config(
            config, routers=routers, client_factory=factory, summaries=summaries
        )
        prepare_control(self._service.control, routers, summaries)
        self.chat = _AsyncChat(self)

    @property
    def routers(self) -> dict[str, Router]:
        """The loaded routers by serving name."""
        return dict(self._service.routers)

    async def route(
        self,
        prompt: str | Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        router: str | None = None,
        threshold: float | None = None,
        user: str | None = None,
    ) -> Decision:
        """The routing decision for a prompt (or messages) without calling a model; ``user`` names
        the conversation, as in a completion."""
        self._check_open()
        target = self._service.router_target(model, router=router, threshold=threshold, where="route()")
        # messages as create() takes them: an answer's message object too
        messages = prompt if isinstance(prompt, str) else _messages(_payload(prompt, {})["messages"])
        return await self._service.decide(target, messages, need_score=True, conversation=_user(user))

    def status(self) -> dict[str, Any]:
        """Online control as ``GET /v1/status`` shows it: each target's threshold and realized
        share or spend, drift per router, conversations, the state file."""
        return self._service.control.status()

    async def _create(
        self,
        *,
        messages: Sequence[Mapping[str, Any]],
        model: str | None = None,
        router: str | None = None,
        threshold: float | None = None,
        stream: bool = False,
        **params: Any,
    ) -> ChatCompletion | _AsyncStream:
        from openai.types.chat import ChatCompletion

        self._check_open()
        target = self._service.target(model, router=router, threshold=threshold)
        payload = _payload(messages, params)
        conversation = _user(payload.get("user"))
        try:
            decision = await self._service.decide(
                target, _messages(payload["messages"]), conversation=conversation
            )
            if stream:
                return _AsyncStream(await self._service.open_stream(payload, decision))
            answer = await self._service.complete(payload, decision)
        except LmrouteError as exc:
            # Closing cuts the upstream calls: say so, as Controller does, not the cut's symptom.
            if self._closed:
                raise ConfigError("this AsyncController was closed during the call") from exc
            raise
        # construct (not validate), as the SDK does: OpenAI-compatible servers differ in details.
        return ChatCompletion.construct(**answer.body)

    async def aclose(self) -> None:
        """Close the upstream clients and scoring threads."""
        if not self._closed:
            self._closed = True
            await self._service.aclose()

    def _check_open(self) -> None:
        # A closed upstream client would open a new connection pool that nothing closes.
        if self._closed:
            raise ConfigError("this AsyncController is closed")

    close = aclose  # the name openai's AsyncOpenAI has

    async def __aenter__(self) -> AsyncController:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Controller:
    """The synchronous :class:`AsyncController`: same arguments, plain calls.

    The routing code is async; this controller runs it on an event loop in a thread of its own.
    Close it (or use it in a ``with`` block) to stop that thread. One controller may serve many
    threads; closing it ends the calls still running in others with ConfigError.
    """

    def __init__(
        self,
        *,
        strong: UpstreamConfig | Mapping[str, Any] | str | None = None,
        weak: UpstreamConfig | Mapping[str, Any] | str | None = None,
        models: Sequence[FleetModel | Mapping[str, Any]] = (),
        routers: RouterSpecs = ("mf",),
        fallback: bool = True,
        route_on: RouteOn = DEFAULT_ROUTE_ON,
        batch_size: int = 64,
        batch_wait_ms: float = 0.0,
        scoring_threads: int = 1,
        client_factory: ClientFactory | None = None,
        control: ControlConfig | Mapping[str, Any] | None = None,
    ):
        self._start(
            AsyncController(
                strong=strong,
                weak=weak,
                models=models,
                routers=routers,
                fallback=fallback,
                route_on=route_on,
                batch_size=batch_size,
                batch_wait_ms=batch_wait_ms,
                scoring_threads=scoring_threads,
                client_factory=client_factory,
                control=control,
            )
        )

    @classmethod
    def from_config(
        cls,
        config: ServeConfig | str | Path,
        *,
        routers: RouterSpecs | None = None,
        client_factory: ClientFactory | None = None,
    ) -> Controller:
        """A controller from a serving config (or its YAML file)."""
        self = cls.__new__(cls)
        self._start(AsyncController.from_config(config, routers=routers, client_factory=client_factory))
        return self

    def _start(self, controller: AsyncController) -> None:
        self._async = controller
        self.config = controller.config
        self._loop = asyncio.new_event_loop()
        self._pid = os.getpid()  # a forked child has a copy of the loop, not the thread that runs it
        self._closing = False
        self._lock = threading.Lock()  # so that close() misses no call that begins as it closes
        self._thread = threading.Thread(target=self._loop.run_forever, name="lmroute-controller", daemon=True)
        self._thread.start()
        self.chat = _SyncChat(self)

    @property
    def routers(self) -> dict[str, Router]:
        return self._async.routers

    def route(self, prompt: str | Sequence[Mapping[str, Any]], **options: Any) -> Decision:
        """The routing decision for a prompt (or messages) without calling a model."""
        return self._run(self._async.route(prompt, **options))

    def status(self) -> dict[str, Any]:
        """Online control: see :meth:`AsyncController.status`."""

        async def on_the_loop() -> dict[str, Any]:
            # Decisions change the controllers on the loop's thread: read them there, or a
            # status taken while other threads route could see a controller half-added.
            return self._async.status()

        return self._run(on_the_loop())

    def close(self) -> None:
        """Close the upstream clients and stop the controller's thread; calls still running in other
        threads end with ConfigError."""
        if self._forked():  # the parent's thread and connections: the parent closes them
            self._closing = True
            return
        with self._lock:
            if self._closing:
                return
            self._closing = True
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _shutdown(self) -> None:
        # A call left running when the loop stops would never end: its thread would wait forever.
        calls = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in calls:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await self._async.aclose()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _forked(self) -> bool:
        return os.getpid() != self._pid

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._forked():
            coro.close()
            raise ConfigError(
                "this Controller was made in another process (before a fork): its calls would never "
                "end here; make a Controller in each process"
            )
        with self._lock:
            if self._closing:
                coro.close()
                raise ConfigError("this Controller is closed")
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._closing:
                raise ConfigError("this Controller was closed during the call") from None
            raise
        except BaseException:
            future.cancel()  # e.g. Ctrl-C: stop the request on the loop too
            raise


class _AsyncCompletions:
    def __init__(self, controller: AsyncController):
        self._controller = controller

    async def create(self, **kwargs: Any) -> ChatCompletion | AsyncIterator[ChatCompletionChunk]:
        """``openai``'s ``chat.completions.create``, routed: ``model="router-mf-0.52"`` (or
        ``router=``/``threshold=``), ``messages``, ``stream``, and any other OpenAI field."""
        return await self._controller._create(**kwargs)


class _AsyncChat:
    def __init__(self, controller: AsyncController):
        self.completions = _AsyncCompletions(controller)


class _SyncCompletions:
    def __init__(self, controller: Controller):
        self._controller = controller

    def create(self, **kwargs: Any) -> ChatCompletion | Iterator[ChatCompletionChunk]:
        """``openai``'s ``chat.completions.create``, routed; see :class:`AsyncController`."""
        result = self._controller._run(self._controller._async._create(**kwargs))
        if isinstance(result, _AsyncStream):  # stream=True
            return _SyncStream(self._controller, result)
        return result


class _SyncChat:
    def __init__(self, controller: Controller):
        self.completions = _SyncCompletions(controller)


def _load(routers: RouterSpecs, summaries: EmbeddingSummaries | None = None) -> dict[str, Router]:
    if isinstance(routers, (str, Path, Router)) or not isinstance(routers, Iterable):
        raise ConfigError("routers must be a list (or mapping) of router names, directories or objects")
    items = routers.items() if isinstance(routers, Mapping) else [(None, r) for r in routers]
    loaded: dict[str, Router] = {}
    for name, spec in items:
        if isinstance(spec, Router):
            new = {_served_name(spec.name if name is None else name): spec}
        else:
            new = load_routers([str(spec) if name is None else f"{name}={spec}"], summaries=summaries)
        for key in new:
            if key in loaded:
                raise ConfigError(f"two routers are named {key!r}: pass a mapping of names to routers")
        loaded.update(new)
    if not loaded:
        raise ConfigError("no routers given")
    return loaded


def _upstream(tier: str, value: UpstreamConfig | Mapping[str, Any] | str) -> UpstreamConfig:
    try:
        return upstream_from(value)
    except ConfigError as exc:  # which of the upstreams is wrong: they take the same options
        raise ConfigError(f"{tier}: {exc}") from None


def _served_name(name: Any) -> str:
    """The name a Router object is served under, checked as a loaded router's is: one that no
    model string reads back (``x-share`` is router x's share mode) could never be asked for."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"routers: give a name to serve each router under, not {name!r}")
    try:
        check_router_name(name)
    except InvalidModelNameError as exc:
        raise ConfigError(f"routers: {exc}") from None
    return name


def _payload(messages: Any, params: dict[str, Any]) -> dict[str, Any]:
    from openai import NotGiven, Omit

    for option in ("timeout", "extra_headers", "extra_query"):
        if option in params:
            raise ConfigError(f"{option}= is not supported per request: configure the upstream instead")
    extra = params.pop("extra_body", None) or {}
    # NOT_GIVEN and omit are the openai SDK's "leave this field out", which code written for the SDK
    # passes on; the SDK drops them, so do we.
    payload = {k: v for k, v in {**params, **extra}.items() if not isinstance(v, (NotGiven, Omit))}
    payload["messages"] = messages
    try:
        payload = _as_sent(payload)
        encode_json(payload)
    except (TypeError, ValueError, RecursionError) as exc:  # a set, an object, a lone surrogate...
        raise RequestError(f"the request cannot be sent as JSON: {exc}", code="invalid_json") from None
    return payload


def _as_sent(value: Any) -> Any:
    """``value`` with the pydantic objects in it as the JSON the openai SDK sends for them: code
    written for the SDK passes an answer's message back in the conversation as it came."""
    if isinstance(value, BaseModel):
        exclude = getattr(value, "__api_exclude__", None)
        return value.model_dump(mode="json", exclude_unset=True, exclude=exclude)
    if isinstance(value, Mapping):
        return {key: _as_sent(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_sent(item) for item in value]
    return value


def _user(user: Any) -> tuple[str, str] | None:
    """A conversation named by the ``user`` field, as the server reads it."""
    return (user.strip(), "user") if isinstance(user, str) and user.strip() else None


def _messages(messages: Any) -> list[ChatMessage]:
    """Messages validated as the server validates them (RequestError, a ConfigError, if invalid)."""
    request: ChatCompletionRequest = validate(ChatCompletionRequest, {"model": "", "messages": messages})
    return request.messages


class _AsyncStream:
    """A streamed answer's chunks, as the openai SDK's ``AsyncStream``: ``async for`` them; the
    upstream call ends with the last chunk, or at ``aclose()``/``close()`` or the end of an
    ``async with`` block, read or not (a generator's cleanup would not run if never started)."""

    def __init__(self, stream: RoutedStream):
        self._stream = stream
        self._chunks = stream.chunks()

    def __aiter__(self) -> _AsyncStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        from openai.types.chat import ChatCompletionChunk

        try:
            chunk = await anext(self._chunks)
        except BaseException:  # the end, a failure, or cancelled: the upstream call is over
            await self.aclose()
            raise
        return ChatCompletionChunk.construct(**chunk)

    async def aclose(self) -> None:
        try:
            await self._chunks.aclose()
        finally:
            await self._stream.aclose()

    close = aclose  # the name openai's AsyncStream has

    async def __aenter__(self) -> _AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _SyncStream:
    """:class:`_AsyncStream` for the synchronous :class:`Controller`, as the openai SDK's ``Stream``."""

    def __init__(self, controller: Controller, stream: _AsyncStream):
        self._controller = controller
        self._stream = stream
        self._closed = False

    def __iter__(self) -> _SyncStream:
        return self

    def __next__(self) -> ChatCompletionChunk:
        if self._closed:
            raise StopIteration
        try:
            return self._controller._run(self._stream.__anext__())
        except StopAsyncIteration:
            self._closed = True
            raise StopIteration from None
        except BaseException:  # the stream has closed itself
            self._closed = True
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._controller._closing:  # a closed controller has ended its streams
            self._controller._run(self._stream.aclose())

    def __enter__(self) -> _SyncStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Dropped unfinished (a loop left by break): end the upstream call, as a generator would.
        loop = self._controller._loop
        if not self._closed and loop.is_running() and not self._controller._forked():
            asyncio.run_coroutine_threadsafe(self._stream.aclose(), loop)
