"""PROTOCOL.md, "Idempotency": a `Command-Id` accepted on an aggregate is
answered `duplicate` with its original events for the aggregate's whole
history, across jetsource and nats-server restarts, with no dedupe window;
a resend whose first try was rejected is decided again; the same id on
another aggregate is another command."""

import signal

import pytest

from support.steps import assert_rejected, create_post, index_has_read, last_seq, open_account
from support.wire import NoAnswer, eventually, fresh


async def resend_is_duplicate(w, aggregate_type, aggregate_id, command, body, command_id, original):
    reply = await w.command(aggregate_type, aggregate_id, command, body, {"Command-Id": command_id})
    assert reply["status"] == "accepted", reply
    assert reply["duplicate"] is True, reply
    assert reply["events"] == original["events"], reply
    assert reply["command_id"] == command_id


async def test_a_resent_command_appends_nothing_and_answers_its_original_events(deployment):
    async with deployment.connect() as w:
        post_id, command_id = fresh("post"), fresh("cmd")
        body = {"title": "Once", "body": "Text", "publish": True}
        original = await w.command("blogpost", post_id, "create", body, {"Command-Id": command_id})
        assert original["status"] == "accepted" and original["duplicate"] is False
        for _ in range(3):
            await resend_is_duplicate(w, "blogpost", post_id, "create", body, command_id, original)
        stored = await w.events_of("blogpost", post_id)
        assert [e.seq for e in stored] == [e["seq"] for e in original["events"]]


async def test_the_id_decides_not_the_body(deployment):
    async with deployment.connect() as w:
        account_id, command_id = fresh("acct"), fresh("cmd")
        await open_account(w, account_id)
        original = await w.command("account", account_id, "deposit", {"amount": 5},
                                   {"Command-Id": command_id})
        await resend_is_duplicate(w, "account", account_id, "deposit", {"amount": 500},
                                  command_id, original)
        assert [e.body for e in (await w.events_of("account", account_id))[1:]] == [{"amount": 5}]


async def test_it_holds_for_the_aggregates_whole_history(deployment):
    async with deployment.connect() as w:
        account_id, command_id = fresh("acct"), fresh("cmd")
        original = await w.command("account", account_id, "open", {"owner": "Ada"},
                                   {"Command-Id": command_id})
        for amount in range(1, 41):
            reply = await w.command("account", account_id, "deposit", {"amount": amount})
            assert reply["status"] == "accepted", reply
        await resend_is_duplicate(w, "account", account_id, "open", {"owner": "Ada"},
                                  command_id, original)
        assert len(await w.events_of("account", account_id)) == 41


async def test_a_resend_whose_first_try_was_rejected_is_decided_again(deployment):
    async with deployment.connect() as w:
        post_id, command_id = fresh("post"), fresh("cmd")
        first = await w.command("blogpost", post_id, "publish", {}, {"Command-Id": command_id})
        assert_rejected(first, "not_found")
        await create_post(w, post_id)
        again = await w.command("blogpost", post_id, "publish", {}, {"Command-Id": command_id})
        assert again["status"] == "accepted", again
        assert again["duplicate"] is False
        assert [e["type"] for e in again["events"]] == ["BlogPostPublished"]


async def test_the_same_id_on_another_aggregate_is_another_command(deployment):
    async with deployment.connect() as w:
        command_id = fresh("cmd")
        first = await create_post(w, headers={"Command-Id": command_id})
        second = await create_post(w, headers={"Command-Id": command_id})
        assert second["duplicate"] is False
        assert second["aggregate_id"] != first["aggregate_id"]
        assert second["events"][0]["seq"] > first["events"][0]["seq"]
        account = await open_account(w, headers={"Command-Id": command_id})
        assert account["duplicate"] is False


async def test_events_carry_no_message_id_for_a_dedupe_window(deployment):
    async with deployment.connect() as w:
        reply = await create_post(w, publish=True)
        for ref in reply["events"]:
            event = await w.event_at("blogpost", ref["seq"])
            assert "Nats-Msg-Id" not in event.headers, event.headers


@pytest.mark.managed("restarts jetsource")
@pytest.mark.parametrize("how", ["sigterm", pytest.param("sigkill", marks=pytest.mark.disruptive)])
async def test_a_resend_after_a_jetsource_restart_is_a_duplicate(deployment, how):
    async with deployment.connect() as w:
        post_id, command_id = fresh("post"), fresh("cmd")
        body = {"title": "Once", "body": "Text", "publish": True}
        original = await w.command("blogpost", post_id, "create", body, {"Command-Id": command_id})
        assert original["status"] == "accepted"
    await deployment.restart_jetsource(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    async with deployment.connect() as w:
        await resend_is_duplicate(w, "blogpost", post_id, "create", body, command_id, original)
        assert len(await w.events_of("blogpost", post_id)) == 2


@pytest.mark.managed("restarts nats-server")
@pytest.mark.disruptive
async def test_a_resend_after_a_nats_server_restart_is_a_duplicate(deployment):
    async with deployment.connect() as w:
        account_id, command_id = fresh("acct"), fresh("cmd")
        await open_account(w, account_id)
        original = await w.command("account", account_id, "deposit", {"amount": 3},
                                   {"Command-Id": command_id})
        assert original["status"] == "accepted"
    await deployment.restart_nats_server()
    async with deployment.connect() as w:
        # jetsource reconnects by itself; until it has, nothing answers.
        async def answered():
            try:
                return await w.command("account", account_id, "deposit", {"amount": 3},
                                       {"Command-Id": command_id}, timeout=2)
            except NoAnswer:
                return None

        reply = await eventually(answered, "an answer after nats-server restarted", within=30)
        assert reply["status"] == "accepted" and reply["duplicate"] is True, reply
        assert reply["events"] == original["events"], reply
        assert len(await w.events_of("account", account_id)) == 2


async def assert_status_names_its_own_events(w, names, command_id):
    """`status.<id>` may name either aggregate, but every event it lists
    must be on that aggregate's subject in the stream."""
    status = await w.status(command_id)
    assert status["status"] == "accepted", status
    assert status["events"], status
    for ref in status["events"]:
        stored = await w.event_at(status["aggregate_type"], ref["seq"])
        assert stored.subject == names.event(status["aggregate_type"], status["aggregate_id"],
                                             ref["type"]), (status, stored.subject)
        assert stored.headers.get("Command-Id") == command_id


async def one_id_on_two_posts(w):
    command_id = fresh("shared")
    a = await create_post(w, headers={"Command-Id": command_id})
    b = await create_post(w, publish=True, headers={"Command-Id": command_id})
    return command_id, a, b


async def test_status_of_one_id_on_two_aggregates_lists_events_of_the_aggregate_it_names(deployment, names):
    async with deployment.connect() as w:
        command_id, _, _ = await one_id_on_two_posts(w)
        await assert_status_names_its_own_events(w, names, command_id)


@pytest.mark.managed("restarts jetsource")
async def test_after_a_restart_status_of_one_id_on_two_aggregates_lists_events_of_the_aggregate_it_names(
        deployment, names):
    async with deployment.connect() as w:
        command_id, _, b = await one_id_on_two_posts(w)
        # Once the index has read both commands' events, the restart
        # leaves status nothing but the index to answer from.
        await index_has_read(w, "blogpost", last_seq(b))
    await deployment.restart_jetsource()
    async with deployment.connect() as w:
        await assert_status_names_its_own_events(w, names, command_id)
