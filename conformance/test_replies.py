"""PROTOCOL.md, "The reply" and its rejection codes: the reply's fields, a
command that decides no events, each code a client can provoke from
outside (`validation`, `not_found`, `conflict`, `bad_request`), and that a
rejected command writes nothing. `unavailable` and `internal` need a
broken store or a bug and cannot be provoked from a client."""

import pytest

from support.steps import assert_nothing_written, assert_rejected, create_post, last_seq, post
from support.wire import fresh


async def test_an_accepted_reply_lists_every_event_in_order_with_its_stream_sequence(
        deployment, names, schemas):
    async with deployment.connect() as w:
        reply = await create_post(w, publish=True)
        schemas.validate("command_reply", reply)
        assert [e["type"] for e in reply["events"]] == ["BlogPostCreated", "BlogPostPublished"]
        assert {e["stream"] for e in reply["events"]} == {names.stream("blogpost")}
        for ref in reply["events"]:
            stored = await w.event_at("blogpost", ref["seq"])
            assert stored.subject == names.event("blogpost", reply["aggregate_id"], ref["type"])


async def test_a_command_that_decides_no_events_is_accepted_with_none(deployment, schemas):
    async with deployment.connect() as w:
        created = await create_post(w, title="Same")
        post_id = created["aggregate_id"]
        # The title it already has: nothing to record.
        reply = await w.command("blogpost", post_id, "change_title", {"title": "Same"})
        schemas.validate("command_reply", reply)
        assert reply["status"] == "accepted", reply
        assert reply["events"] == [] and reply["duplicate"] is False
        assert [e.seq for e in await w.events_of("blogpost", post_id)] == [last_seq(created)]


@pytest.mark.parametrize("case", ["validation", "not_found", "conflict", "bad_request"])
async def test_each_rejection_code_writes_nothing(deployment, schemas, case):
    async with deployment.connect() as w:
        aggregate_id, command_id = fresh("rejected"), fresh("cmd")
        headers = {"Command-Id": command_id}
        if case == "validation":
            reply = await w.command("blogpost", aggregate_id, "create", post(title="   "), headers)
        elif case == "not_found":
            reply = await w.command("blogpost", aggregate_id, "publish", {}, headers)
        elif case == "conflict":
            headers["Expected-Seq"] = "1"
            reply = await w.command("account", aggregate_id, "open", {"owner": "Ada"}, headers)
        else:
            reply = await w.command("account", aggregate_id, "close", {}, headers)
        schemas.validate("command_reply", reply)
        schemas.validate("rejection_code", reply.get("code"))
        assert_rejected(reply, case)
        assert reply["command_id"] == command_id
        assert set(reply) == {"status", "command_id", "code", "reason"}
        await assert_nothing_written(w, aggregate_id)


async def test_a_business_rule_broken_is_validation_and_the_state_does_not_move(deployment):
    async with deployment.connect() as w:
        account_id = fresh("acct")
        await w.command("account", account_id, "open", {"owner": "Ada"})
        await w.command("account", account_id, "deposit", {"amount": 10})
        reply = await w.command("account", account_id, "withdraw", {"amount": 11})
        assert_rejected(reply, "validation")
        # The refused withdrawal took nothing: all ten can still go.
        reply = await w.command("account", account_id, "withdraw", {"amount": 10})
        assert reply["status"] == "accepted", reply
        events = await w.events_of("account", account_id)
        assert [(e.event_type, e.redacted) for e in events] == [
            ("AccountOpened", {"owner": "[forgotten]"}),
            ("MoneyDeposited", {"amount": 10}),
            ("MoneyWithdrawn", {"amount": 10}),
        ]


async def test_a_command_on_an_aggregate_that_does_not_exist_is_not_found(deployment):
    async with deployment.connect() as w:
        for aggregate_type, command, body in [("blogpost", "change_title", {"title": "T"}),
                                              ("blogpost", "publish", {}),
                                              ("account", "deposit", {"amount": 1})]:
            aggregate_id = fresh("missing")
            assert_rejected(await w.command(aggregate_type, aggregate_id, command, body), "not_found")
            await assert_nothing_written(w, aggregate_id)
