"""PROTOCOL.md, the `Expected-Seq` header and "Concurrency": the version a
client decides on is the stream sequence of the aggregate's last event
(`0`: it does not exist yet), not a per-aggregate counter; a stale one is
`conflict` and writes nothing. Malformed values are in test_bad_input.py."""

import asyncio

from support.steps import assert_nothing_written, assert_rejected, create_post, last_seq, open_account
from support.wire import fresh


async def test_zero_creates_an_aggregate_that_does_not_exist(deployment):
    async with deployment.connect() as w:
        reply = await create_post(w, headers={"Expected-Seq": "0"})
        assert reply["status"] == "accepted"


async def test_zero_on_an_aggregate_that_exists_is_conflict(deployment):
    async with deployment.connect() as w:
        created = await create_post(w)
        post_id = created["aggregate_id"]
        reply = await w.command("blogpost", post_id, "change_title", {"title": "Other"},
                                {"Expected-Seq": "0"})
        assert_rejected(reply, "conflict")
        assert [e.seq for e in await w.events_of("blogpost", post_id)] == [last_seq(created)]


async def test_the_last_events_stream_sequence_is_the_version_not_a_counter(deployment):
    async with deployment.connect() as w:
        first = await create_post(w)
        post_id = first["aggregate_id"]
        # Another aggregate moves the stream, so that the post's version
        # (a stream sequence) and its event count part ways.
        await create_post(w)
        await create_post(w)
        changed = await w.command("blogpost", post_id, "change_title", {"title": "Two"},
                                  {"Expected-Seq": str(last_seq(first))})
        assert changed["status"] == "accepted", changed
        assert last_seq(changed) > last_seq(first) + 1
        # Its event count (2) is not its version.
        counted = await w.command("blogpost", post_id, "change_title", {"title": "Three"},
                                  {"Expected-Seq": "2"})
        assert_rejected(counted, "conflict")
        current = await w.command("blogpost", post_id, "change_title", {"title": "Three"},
                                  {"Expected-Seq": str(last_seq(changed))})
        assert current["status"] == "accepted", current


async def test_after_a_command_of_several_events_the_version_is_its_last_event(deployment):
    async with deployment.connect() as w:
        created = await create_post(w, publish=True)
        post_id = created["aggregate_id"]
        first_of_two = created["events"][0]["seq"]
        stale = await w.command("blogpost", post_id, "change_title", {"title": "New"},
                                {"Expected-Seq": str(first_of_two)})
        assert_rejected(stale, "conflict")
        reply = await w.command("blogpost", post_id, "change_title", {"title": "New"},
                                {"Expected-Seq": str(last_seq(created))})
        assert reply["status"] == "accepted", reply


async def test_a_stale_or_future_version_is_conflict_and_writes_nothing(deployment):
    async with deployment.connect() as w:
        opened = await open_account(w)
        account_id = opened["aggregate_id"]
        deposited = await w.command("account", account_id, "deposit", {"amount": 5})
        for expected in (last_seq(opened), last_seq(deposited) + 1, 18446744073709551615):
            reply = await w.command("account", account_id, "deposit", {"amount": 7},
                                    {"Expected-Seq": str(expected)})
            assert_rejected(reply, "conflict")
        events = await w.events_of("account", account_id)
        assert [e.seq for e in events] == [last_seq(opened), last_seq(deposited)]


async def test_a_version_on_an_aggregate_that_does_not_exist_is_conflict(deployment):
    async with deployment.connect() as w:
        account_id = fresh("acct")
        reply = await w.command("account", account_id, "open", {"owner": "Ada"}, {"Expected-Seq": "5"})
        assert_rejected(reply, "conflict")
        await assert_nothing_written(w, account_id)


async def test_each_append_carries_its_concurrency_check_on_its_first_event(deployment, names):
    """"Concurrency": an append expects the aggregate's last sequence
    (0 when it has none) on the aggregate's wildcard subject; JetStream
    keeps those headers on the first event of each append."""
    async with deployment.connect() as w:
        created = await create_post(w, publish=True)
        post_id = created["aggregate_id"]
        changed = await w.command("blogpost", post_id, "change_title", {"title": "New"})
        for reply, expected in ((created, 0), (changed, last_seq(created))):
            first = await w.event_at("blogpost", reply["events"][0]["seq"])
            assert first.headers.get("Nats-Expected-Last-Subject-Sequence") == str(expected), first.headers
            assert (first.headers.get("Nats-Expected-Last-Subject-Sequence-Subject")
                    == names.events_of("blogpost", post_id)), first.headers


async def test_concurrent_writers_on_one_aggregate_each_get_an_answer_and_none_is_lost(deployment):
    """Without Expected-Seq, jetsource decides again after another writer
    moved the aggregate: every deposit is accepted or `conflict`, and the
    stored deposits are exactly the accepted ones."""
    async with deployment.connect() as w:
        account_id = (await open_account(w))["aggregate_id"]

        async def deposit(amount):
            return amount, await w.command("account", account_id, "deposit", {"amount": amount})

        replies = await asyncio.gather(*(deposit(n) for n in range(1, 33)))
        accepted = sorted(n for n, r in replies if r["status"] == "accepted")
        for _, reply in replies:
            assert reply["status"] == "accepted" or reply.get("code") == "conflict", reply
        events = await w.events_of("account", account_id)
        assert sorted(e.body["amount"] for e in events[1:]) == accepted
