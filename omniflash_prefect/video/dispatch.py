"""One name for sync and async pipelines, as prefect-aws pairs ``download_from_bucket`` with
``adownload_from_bucket``.

Prefect answers a direct call of an async task or flow from sync code with a coroutine that
nothing runs: a sync flow calling ``archive_video(...)`` gets a coroutine instead of a video, and
a ``generate_video`` subflow of a sync flow never runs at all. The classes here are those same
async tasks and flows, deciding when called which kind of code called them (the rule of Prefect's
``async_dispatch``: an async flow or task, or a running event loop, is async code):

* from async code they return the coroutine, to be awaited as before;
* from sync code (a sync flow or task, a script) they run it to completion on Prefect's
  run-sync event loop and return its result, or its state with ``return_state=True``.

``.submit()``, ``.map()`` and deployments are Prefect's own and need no help: Prefect runs async
tasks submitted from sync flows in its task runner. ``with_options`` keeps the dispatch. The
plain async objects are exported too, ``a``-prefixed (``asubmit_video``, ``agenerate_video``),
for code that wants a coroutine wherever it runs.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Coroutine, Iterator
from typing import Any, Final, ParamSpec, TypeVar, cast

from prefect import Flow, Task
from prefect._internal.compatibility.async_dispatch import is_in_async_context
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.utilities.asyncutils import run_coro_as_sync

#: How often a flow run started outside a deployment sends a heartbeat, when nothing says.
LOCAL_HEARTBEAT_SECONDS: Final = 60

P = ParamSpec("P")
R = TypeVar("R")


def _run_where_called(called: Any) -> Any:
    """The coroutine for async callers; its outcome, run to completion, for sync ones."""
    if is_in_async_context() or not inspect.iscoroutine(called):
        return called
    return run_coro_as_sync(called)


@contextlib.contextmanager
def local_heartbeats() -> Iterator[None]:
    """Flow runs started within send a heartbeat every ``LOCAL_HEARTBEAT_SECONDS``, unless the
    environment sets ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``: so the lost-runs Automation crashes a
    run whose process was killed, as it does a worker's, and a sweep picks up what it paid for
    (a deployment's runs get theirs from ``prefect.yaml``)."""
    if PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is not None:
        yield
        return
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: LOCAL_HEARTBEAT_SECONDS}):
        yield


async def _beating(called: Coroutine[Any, Any, Any]) -> Any:
    with local_heartbeats():
        return await called


class DispatchingTask(Task[P, R]):
    """An async task that sync code can call directly and get its result."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _run_where_called(super().__call__(*args, **kwargs))

    def with_options(self, **options: Any) -> DispatchingTask[P, R]:
        changed = super().with_options(**options)
        changed.__class__ = DispatchingTask
        return changed  # type: ignore[return-value]


class DispatchingFlow(Flow[P, R]):
    """An async flow that a sync flow can call as a subflow (or a script directly) and get its
    result; Prefect's engine runs it as the async flow it is. Its runs send heartbeats
    (:func:`local_heartbeats`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with local_heartbeats():
            called = super().__call__(*args, **kwargs)
            if inspect.iscoroutine(called) and is_in_async_context():
                return _beating(called)
            return _run_where_called(called)

    def with_options(self, **options: Any) -> DispatchingFlow[P, R]:
        changed = super().with_options(**options)
        changed.__class__ = DispatchingFlow
        return changed  # type: ignore[return-value]


def dispatching_task(plain: Task[P, Coroutine[Any, Any, R]]) -> DispatchingTask[P, R]:
    """The dispatching twin of an async task: same function, name and options. Typed as the sync
    task it is to sync code (``.map`` futures and direct calls give ``R``); async code awaits."""
    twin = plain.with_options()
    twin.__class__ = DispatchingTask
    return cast("DispatchingTask[P, R]", twin)


def dispatching_flow(plain: Flow[P, Coroutine[Any, Any, R]]) -> DispatchingFlow[P, R]:
    """The dispatching twin of an async flow: same function, name and options, typed like
    :func:`dispatching_task`."""
    twin = plain.with_options()
    twin.__class__ = DispatchingFlow
    return cast("DispatchingFlow[P, R]", twin)
