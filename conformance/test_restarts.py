"""Managed mode: what `status.<command_id>` answers after jetsource
restarts (PROTOCOL.md, "Queries" of feedback: "status answers from memory
(recent outcomes), then from the command index, then from peers")."""

import asyncio
import signal

import pytest

from support.steps import create_post, index_has_read, last_seq
from support.wire import fresh

pytestmark = pytest.mark.managed("restarts jetsource")


async def test_an_accepted_command_the_index_holds_is_accepted_after_a_restart(deployment, schemas):
    async with deployment.connect() as w:
        command_id = fresh("cmd")
        reply = await create_post(w, publish=True, headers={"Command-Id": command_id})
        await index_has_read(w, "blogpost", last_seq(reply))
    assert await deployment.restart_jetsource(signal.SIGTERM) == 0
    async with deployment.connect() as w:
        status = await w.status(command_id)
        schemas.validate("feedback_answer", status)
        assert status == {"status": "accepted", "command_id": command_id, "aggregate_type": "blogpost",
                          "aggregate_id": reply["aggregate_id"], "events": reply["events"]}


CREATES = 2000
IN_FLIGHT = 64


async def test_after_2000_creates_and_a_restart_no_accepted_command_is_unknown(deployment):
    async with deployment.connect() as w:
        stem = fresh("many")
        gate = asyncio.Semaphore(IN_FLIGHT)
        accepted = []

        async def open_one(n):
            async with gate:
                command_id = f"{stem}-c{n}"
                reply = await w.command("account", f"{stem}-a{n}", "open", {"owner": "Ada"},
                                        {"Command-Id": command_id}, timeout=30)
                if reply["status"] == "accepted":
                    accepted.append(command_id)

        await asyncio.gather(*(open_one(n) for n in range(CREATES)))
        assert len(accepted) == CREATES
    await deployment.restart_jetsource(signal.SIGTERM)
    async with deployment.connect() as w:
        gate = asyncio.Semaphore(IN_FLIGHT)
        answers = {}

        async def status_of(command_id):
            async with gate:
                answers[command_id] = (await w.status(command_id, timeout=30))["status"]

        await asyncio.gather(*(status_of(c) for c in accepted))
        unknown = sorted(c for c, s in answers.items() if s not in ("accepted", "pending"))
        assert not unknown, f"{len(unknown)} of {len(accepted)} accepted commands answer unknown"
