"""PROTOCOL.md, "Traces": a command's W3C `traceparent` is carried onto its
events (here, where `jetsource run` records no spans, as it came), on to the
commands a process manager sends for them, and one that does not parse is
ignored, never refused."""

import re

import pytest

from support.steps import create_post, open_account
from support.wire import eventually, fresh

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def trace_parent(trace_id: str, parent_id: str = "00f067aa0ba902b7", flags: str = "01") -> str:
    return f"00-{trace_id}-{parent_id}-{flags}"


async def test_every_event_of_a_traced_command_continues_its_trace(deployment):
    async with deployment.connect() as w:
        sent = trace_parent("4bf92f3577b34da6a3ce929d0e0e4736", flags="01")
        reply = await create_post(w, publish=True, headers={"traceparent": sent})
        assert reply["status"] == "accepted", reply
        stored = await w.events_of("blogpost", reply["aggregate_id"])
        assert len(stored) == 2
        for e in stored:
            value = e.headers["traceparent"]
            assert TRACEPARENT.match(value), value
            _, trace_id, parent_id, flags = value.split("-")
            assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
            assert flags == "01"
            assert parent_id != "0" * 16
            # A handler recording no spans passes the value on unchanged.
            assert value == sent


@pytest.mark.parametrize("value", [
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    "not a trace",
])
async def test_a_traceparent_that_does_not_parse_is_ignored(deployment, value):
    async with deployment.connect() as w:
        reply = await create_post(w, headers={"traceparent": value})
        assert reply["status"] == "accepted", reply
        [event] = await w.events_of("blogpost", reply["aggregate_id"])
        assert "traceparent" not in event.headers, event.headers


async def test_a_later_version_is_read_by_its_first_fields(deployment):
    async with deployment.connect() as w:
        later = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes-later"
        reply = await create_post(w, headers={"traceparent": later})
        [event] = await w.events_of("blogpost", reply["aggregate_id"])
        assert event.headers["traceparent"] == \
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_a_process_manager_s_commands_carry_the_trace_of_the_event(deployment):
    async with deployment.connect() as w:
        payer = (await open_account(w))["aggregate_id"]
        reply = await w.command("account", payer, "deposit", {"amount": 10})
        assert reply["status"] == "accepted", reply
        payee = (await open_account(w))["aggregate_id"]
        trace_id = "5ce0e9a56015fec5aadfa328ae398115"
        reply = await w.command("account", payer, "offer_payment", {
            "payment": fresh("pay"), "to": payee, "amount": 4, "accept_within_secs": 600,
        }, {"traceparent": trace_parent(trace_id)})
        assert reply["status"] == "accepted", reply

        async def presented():
            events = await w.events_of("account", payee)
            return next((e for e in events if e.event_type == "PaymentPresented"), None)

        await eventually(presented, "the payment is presented to the payee", within=30)
        event = await presented()
        value = event.headers["traceparent"]
        assert TRACEPARENT.match(value), value
        assert value.split("-")[1] == trace_id
