"""A compromised member for end-to-end tests: a whole node from the project's own
modules (the daemon's `serve_node`, with the network key and a certificate the
authority issued), run in-process in its own thread beside the sync test, so an
attack can call any RPC or write any ledger entry against real daemons."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from node.assembly import Node
from node.config.datadir import DataDir
from node.daemon import serve_node

Attack = Callable[[Node], Awaitable[Any]]


@dataclasses.dataclass
class Member:
    data_dir: DataDir
    attack: Attack
    result: Any = None
    error: BaseException | None = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    _token: trio.lowlevel.TrioToken | None = None
    _stop: trio.Event | None = None
    _thread: threading.Thread | None = None

    def start(self, timeout: float = 120) -> Any:
        """Run the member and its attack; the attack's result once it returns."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.done.wait(timeout), "the attack did not finish"
        assert self.error is None, repr(self.error)
        return self.result

    def stop(self) -> None:
        """Take the member offline (it stays online after its attack until then)."""
        if self._token is not None and self._stop is not None:
            with contextlib.suppress(trio.RunFinishedError):  # stopped already
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # shown by the test, not lost in the thread
            self.error = exc
        finally:
            self.done.set()

    async def _serve(self) -> None:
        self._token, self._stop = trio.lowlevel.current_trio_token(), trio.Event()
        async with trio.open_nursery() as nursery:
            node: Node = await nursery.start(
                functools.partial(serve_node, self.data_dir, trust_local_ledger=True)
            )
            self.result = await self.attack(node)
            self.done.set()
            await self._stop.wait()  # online, e.g. until gossip took its entries
            nursery.cancel_scope.cancel()
