"""The actor behaviour every actor type implements (OTP gen_server style, Thespian hidden).

An actor type subclasses `Behaviour`, declares what it provides and requires, and marks handlers
with `@handles(MessageType)`. A handler gets the typed message. For a CALL its return value is the
reply; it may also be a generator that ``yield``s pending work (a `call` to a peer, blocking I/O)
and is resumed with the result::

    class Meter(Behaviour):
        provides = {"meter": METER}

        @handles(ReadEnergy)
        def on_read_energy(self, msg: ReadEnergy) -> Generator[Pending, Any, EnergyReading]:
            wh = yield self.run_io(self.driver.read_energy_wh)
            return EnergyReading(wh=wh)

A handler that raises is a crash: the actor exits and its supervisor decides what happens next
(raise `Rejected` to answer a call with an error without crashing). Lifecycle hooks run on the
actor's own thread, in this order: ``init`` once the instance is wired, handlers, ``terminate``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from charger.interfaces import Interface, Requirement

if TYPE_CHECKING:
    from charger.runtime import ActorProcess

__all__ = ["Behaviour", "Pending", "Timer", "handles"]

F = TypeVar("F", bound=Callable[..., Any])


def handles(*types: type) -> Callable[[F], F]:
    """Mark a method as the handler for these message types (calls, casts and events alike)."""

    def mark(fn: F) -> F:
        fn.__handles__ = types  # type: ignore[attr-defined]
        return fn

    return mark


class Pending:
    """Work whose result arrives later: a call to a peer, a job on the I/O thread.

    Yield it from a generator handler to be resumed with its result (or to have its `CallError`
    raised at the ``yield``), or attach callbacks with `then`.
    """

    __slots__ = ("_callbacks", "_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[tuple[Callable[[Any], Any], Callable[[BaseException], Any] | None]] = []

    @property
    def done(self) -> bool:
        return self._done

    def result(self) -> Any:
        """The value, or raise the error. Only valid once `done`."""
        if not self._done:
            raise RuntimeError("result() of a Pending that is not done")
        if self._error is not None:
            raise self._error
        return self._value

    def then(self, on_value: Callable[[Any], Any], on_error: Callable[[BaseException], Any] | None = None) -> None:
        """Run `on_value(result)` or `on_error(exc)` when done. Without `on_error` an error is a crash."""
        if self._done:
            self._dispatch(on_value, on_error)
        else:
            self._callbacks.append((on_value, on_error))

    def resolve(self, value: Any) -> None:
        self._finish(value, None)

    def fail(self, error: BaseException) -> None:
        self._finish(None, error)

    def _finish(self, value: Any, error: BaseException | None) -> None:
        if self._done:
            return
        self._done, self._value, self._error = True, value, error
        callbacks, self._callbacks = self._callbacks, []
        for on_value, on_error in callbacks:
            self._dispatch(on_value, on_error)

    def _dispatch(self, on_value: Callable[[Any], Any], on_error: Callable[[BaseException], Any] | None) -> None:
        if self._error is None:
            on_value(self._value)
        elif on_error is not None:
            on_error(self._error)
        else:
            raise self._error


class Timer:
    """A started timer. `cancel` guarantees the callback will not run."""

    __slots__ = ("_cancel", "active")

    def __init__(self, cancel: Callable[[Timer], None]) -> None:
        self._cancel = cancel
        self.active = True

    def cancel(self) -> None:
        if self.active:
            self.active = False
            self._cancel(self)


class Behaviour:
    """Base class of every actor type. Subclasses declare a manifest and handlers."""

    # --- manifest (class attributes, read by the topology loader before anything starts) ---------
    provides: ClassVar[Mapping[str, Interface]] = {}
    """Implementation id -> interface this actor type provides."""
    requires: ClassVar[Mapping[str, Requirement]] = {}
    """Requirement id -> interface and connection counts this actor type needs."""
    config_schema: ClassVar[Mapping[str, Any]] = {"type": "object", "additionalProperties": False}
    """JSON Schema (draft 2020-12) of the instance's ``config``; defaults in it are applied."""
    description: ClassVar[str] = ""
    handled_during_init: ClassVar[frozenset[type]] = frozenset()
    """Message types served while ``init`` is still running (others wait until it returns)."""

    _routes: ClassVar[dict[type, str]] = {}

    # set by the runtime before `init` runs
    name: str
    config: dict[str, Any]
    connections: dict[str, list[str]]
    """Requirement id -> names of the instances wired to it."""
    state_dir: str
    log: logging.Logger
    _rt: ActorProcess

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._routes = {
            t: attr
            for base in reversed(cls.__mro__)
            for attr, fn in vars(base).items()
            for t in getattr(fn, "__handles__", ())
        }

    # --- lifecycle hooks ----------------------------------------------------------------------------
    def init(self) -> Any:
        """Set up state; runs once, after wiring and before any message. May be a generator.

        If it raises, the start fails and the supervisor treats it like OTP's failed ``init/1``.
        """

    def terminate(self, reason: str) -> None:
        """Release resources on an orderly stop. Not called after a crash or a kill; an exception is logged."""

    def peer_changed(self, name: str, up: bool) -> None:
        """A peer this actor calls went down (`up` false: it is restarting, or its host was lost) or
        came back. Calls to it meanwhile fail fast with `Unavailable`; override to react sooner."""

    # --- calls, casts, events --------------------------------------------------------------------
    def call(self, target: str, msg: Any, timeout: float = 5.0) -> Pending:
        """Send `msg` to the instance named `target` and get a `Pending` for its reply.

        Ends with a `CallError`: `Unavailable` at once when the target is down or restarting,
        `CallTimeout` after `timeout` seconds, or whatever error the handler answered.
        """
        return self._rt.call(target, msg, timeout)

    def cast(self, target: str, msg: Any) -> None:
        """Send `msg` one way. Dropped (with a debug log) when the target is down."""
        self._rt.cast(target, msg)

    def publish(self, msg: Any) -> None:
        """Publish a var: every subscriber of this message type gets it as an EVENT."""
        self._rt.publish(msg)

    def subscribe(self, target: str, *types: type) -> None:
        """Receive the vars of these types that `target` publishes; renewed after every restart of `target`."""
        self._rt.subscribe(target, [t.__name__ for t in types])

    @property
    def sender(self) -> str:
        """Name of the sender of the message being handled."""
        return self._rt.current_sender

    # --- time and I/O ------------------------------------------------------------------------------
    def start_timer(self, seconds: float, callback: Callable[[], Any], *, repeat: bool = False) -> Timer:
        """Run `callback` on the actor's thread after `seconds` (and every `seconds` with `repeat`)."""
        return self._rt.start_timer(seconds, callback, repeat)

    def sleep(self, seconds: float) -> Pending:
        """A `Pending` that resolves after `seconds`: ``yield self.sleep(0.5)`` in a generator handler or task."""
        done = Pending()
        self.start_timer(seconds, lambda: done.resolve(None))
        return done

    def run_io(self, fn: Callable[..., Any], *args: Any) -> Pending:
        """Run blocking `fn(*args)` on the I/O thread; the result comes back on the actor's thread."""
        return self._rt.io().run_blocking(fn, *args)

    def run_async(self, coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> Pending:
        """Run a coroutine on the I/O thread's asyncio loop; the result comes back on the actor's thread."""
        return self._rt.io().run_coroutine(coro)

    def post(self, callback: Callable[[], Any]) -> Callable[[], None]:
        """A thread-safe function that, when called from any thread, runs `callback` on the actor's thread."""
        return self._rt.io().poster(callback)

    def run_task(self, work: Any) -> None:
        """Drive a generator (yielding `Pending`s) outside any handler, e.g. from a callback; raising is a crash."""
        self._rt.run_task(work)

    def stop(self, reason: str = "normal") -> None:
        """Exit deliberately after the current handler: ``terminate`` runs, and a transient child stays down."""
        self._rt.stop(reason)
