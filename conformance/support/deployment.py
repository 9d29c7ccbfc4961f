"""The deployment under test: a URL and a subject prefix, and, in managed
mode, the child processes the suite may restart."""

import asyncio
import contextlib
import signal
from typing import Optional

import nats

from .managed import Managed
from .names import Names
from .schemas import Schemas
from .wire import NoAnswer, Wire, fresh


class Deployment:
    def __init__(self, url: str, names: Names, schemas: Schemas, managed: Optional[Managed]):
        self.url = url
        self.names = names
        self.schemas = schemas
        self.managed = managed

    @contextlib.asynccontextmanager
    async def connect(self):
        """A connection for one test, closed after it."""
        async def quiet(_error):
            # Disconnects while a test restarts a child are expected; the
            # test judges what it sees, not the client's log.
            pass

        nc = await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=-1,
                                reconnect_time_wait=0.2, error_cb=quiet)
        try:
            yield Wire(nc, self.names)
        finally:
            await nc.close()

    def _managed(self) -> Managed:
        assert self.managed is not None, "restarts need managed mode"
        return self.managed

    async def restart_jetsource(self, sig=signal.SIGTERM) -> int:
        """Stops jetsource with `sig` and waits until a new process is ready."""
        return await asyncio.to_thread(self._managed().restart_jetsource, sig)

    async def restart_nats_server(self, sig=signal.SIGTERM) -> int:
        return await asyncio.to_thread(self._managed().restart_nats_server, sig)

    async def serving(self) -> bool:
        """Whether jetsource answers a feedback query."""
        try:
            async with self.connect() as wire:
                await wire.status(fresh("probe"), timeout=3)
            return True
        except (NoAnswer, OSError, nats.errors.Error):
            return False

    async def make_serving(self) -> None:
        """In managed mode, replaces a jetsource that stopped answering
        (after a test of input that broke it) with a fresh process."""
        managed = self._managed()
        if not managed.jetsource_running() or not await self.serving():
            await asyncio.to_thread(managed.restart_jetsource, signal.SIGKILL)
