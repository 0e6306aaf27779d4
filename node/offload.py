"""Where CPU- and disk-heavy steps run: a worker thread, or inline in simulations.

The daemon moves encoding, hashing, decryption and fsync'd writes off the
trio thread. A simulation under a virtual clock runs them inline instead:
while a worker thread runs, the autojump clock sees every task blocked and
races ahead, so timeouts would fire on work that takes no virtual time.
`inline_work()` switches the current task and every task it starts later
(trio copies the context into new tasks) to inline execution.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar, TypeVarTuple

import trio

R = TypeVar("R")
Ts = TypeVarTuple("Ts")

_INLINE: contextvars.ContextVar[bool] = contextvars.ContextVar("medvault_inline", default=False)


async def in_worker(
    fn: Callable[[*Ts], R], *args: *Ts, limiter: trio.CapacityLimiter | None = None
) -> R:
    """Run `fn(*args)` in a worker thread (inline under `inline_work`); `limiter`
    bounds how many such threads run at once (default: trio's shared one)."""
    if _INLINE.get():
        await trio.lowlevel.checkpoint()
        return fn(*args)
    return await trio.to_thread.run_sync(fn, *args, limiter=limiter)


@contextmanager
def inline_work() -> Iterator[None]:
    token = _INLINE.set(True)
    try:
        yield
    finally:
        _INLINE.reset(token)
