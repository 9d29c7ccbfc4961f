"""PROTOCOL.md, "Events" and the Projectors' "Each event": the stored
events' subjects, bodies and headers, their time, and the atomic append of
a command's several events."""

import json
from datetime import datetime, timedelta, timezone

from support.steps import create_post, last_seq, open_account
from support.wire import fresh, is_sealed

# Headers JetStream adds to an atomic batch or keeps from an append's
# concurrency check; readers ignore them.
JETSTREAM_HEADERS = ("Nats-Batch-Id", "Nats-Batch-Sequence", "Nats-Batch-Commit",
                     "Nats-Expected-Last-Subject-Sequence", "Nats-Expected-Last-Subject-Sequence-Subject")


async def test_each_event_is_on_its_aggregates_subject_with_its_fields_as_body(deployment, names, schemas):
    async with deployment.connect() as w:
        created = await create_post(w, title="Hello", body="Text")
        post_id = created["aggregate_id"]
        await w.command("blogpost", post_id, "change_title", {"title": "Hello again"})
        await w.command("blogpost", post_id, "publish", {})
        stored = await w.events_of("blogpost", post_id)
        assert [(e.subject, e.body) for e in stored] == [
            (names.event("blogpost", post_id, "BlogPostCreated"),
             {"title": "Hello", "body": "Text", "author": "unknown"}),
            (names.event("blogpost", post_id, "BlogPostTitleChanged"), {"new_title": "Hello again"}),
            (names.event("blogpost", post_id, "BlogPostPublished"), {}),
        ]
        for e in stored:
            assert e.stream == names.stream("blogpost")
            # Written today: today's version, named in its header.
            assert e.version == schemas.event_version("blogpost") == 2
            assert e.headers["Event-Version"] == "2"
            schemas.validate_event("blogpost", e.event_type, e.body, e.version)


async def test_account_events_validate_against_their_schema(deployment, names, schemas):
    async with deployment.connect() as w:
        account_id = (await open_account(w))["aggregate_id"]
        await w.command("account", account_id, "deposit", {"amount": 12})
        await w.command("account", account_id, "withdraw", {"amount": 5})
        stored = await w.events_of("account", account_id)
        # The owner is personal data: stored sealed, never in plain text.
        assert is_sealed(stored[0].body["owner"]) and b"Ada" not in stored[0].data
        assert [(e.event_type, e.redacted) for e in stored] == [
            ("AccountOpened", {"owner": "[forgotten]"}), ("MoneyDeposited", {"amount": 12}),
            ("MoneyWithdrawn", {"amount": 5})]
        for e in stored:
            # Version 1: no header.
            assert e.version == 1 and "Event-Version" not in e.headers, e.headers
            # Validated as read: the schemas describe the plain fields.
            schemas.validate_event("account", e.event_type, e.redacted, e.version)
            assert e.subject == names.event("account", account_id, e.event_type)


async def test_the_event_types_are_those_of_the_schema_files(deployment, schemas):
    async with deployment.connect() as w:
        reply = await create_post(w)
        post = reply["aggregate_id"]
        await w.command("blogpost", post, "change_title", {"title": "Other"})
        at = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
        await w.command("blogpost", post, "schedule_publish", {"at": at})
        await w.command("blogpost", post, "unschedule_publish", {})
        await w.command("blogpost", post, "publish", {})
        stored = await w.events_of("blogpost", post)
        types = {e.event_type for e in stored}
        assert types == set(schemas.variants("blogpost/events"))
        for e in stored:
            schemas.validate_event("blogpost", e.event_type, e.body, e.version)


async def test_a_stored_title_is_the_trimmed_one(deployment):
    async with deployment.connect() as w:
        reply = await create_post(w, title="  Spaced  ")
        [event] = await w.events_of("blogpost", reply["aggregate_id"])
        assert event.body["title"] == "Spaced"


async def test_every_event_carries_its_command_id_and_the_commands_correlation(deployment):
    async with deployment.connect() as w:
        command_id, correlation, causation = fresh("cmd"), fresh("flow"), fresh("cause")
        reply = await create_post(w, publish=True, headers={
            "Command-Id": command_id, "Correlation-Id": correlation, "Causation-Id": causation})
        stored = await w.events_of("blogpost", reply["aggregate_id"])
        assert len(stored) == 2
        for e in stored:
            assert e.headers["Command-Id"] == command_id
            assert e.headers["Correlation-Id"] == correlation
            assert e.headers["Causation-Id"] == causation


async def test_only_the_documented_headers_are_written(deployment):
    """`Command-Id` always; `Correlation-Id`/`Causation-Id` only when the
    command had them; `Event-Version` only past version 1 (blog post events
    are at 2, account events at 1); no `Event-Time`, no `Nats-Msg-Id`;
    JetStream's own batch and concurrency headers besides."""
    async with deployment.connect() as w:
        reply = await create_post(w, publish=True)
        post_id = reply["aggregate_id"]
        await w.command("blogpost", post_id, "change_title", {"title": "Other"})
        for e in await w.events_of("blogpost", post_id):
            assert e.headers["Command-Id"]
            assert e.headers["Event-Version"] == "2", e.headers
            extra = set(e.headers) - {"Command-Id", "Event-Version"} - set(JETSTREAM_HEADERS)
            assert extra == set(), (e.subject, e.headers)
        account_id = (await open_account(w))["aggregate_id"]
        for e in await w.events_of("account", account_id):
            extra = set(e.headers) - {"Command-Id"} - set(JETSTREAM_HEADERS)
            assert extra == set(), (e.subject, e.headers)


async def test_an_events_time_is_its_jetstream_timestamp(deployment):
    async with deployment.connect() as w:
        reply = await create_post(w)
        event = await w.event_at("blogpost", last_seq(reply))
        assert event.time.endswith("Z"), event.time
        datetime.strptime(event.time.split(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S")
        assert "Event-Time" not in event.headers


async def test_a_commands_events_are_stored_atomically_at_consecutive_sequences(deployment):
    async with deployment.connect() as w:
        reply = await create_post(w, publish=True)
        seqs = [e["seq"] for e in reply["events"]]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        stored = [await w.event_at("blogpost", s) for s in seqs]
        # One ADR-50 batch: one id, consecutive positions in it.
        batch_ids = {e.headers.get("Nats-Batch-Id") for e in stored}
        assert len(batch_ids) == 1 and None not in batch_ids, [e.headers for e in stored]
        positions = [int(e.headers["Nats-Batch-Sequence"]) for e in stored]
        assert positions == list(range(positions[0], positions[0] + len(positions)))


async def test_one_aggregates_events_are_in_the_order_they_were_decided(deployment):
    async with deployment.connect() as w:
        account_id = (await open_account(w))["aggregate_id"]
        amounts = list(range(1, 21))
        for amount in amounts:
            await w.command("account", account_id, "deposit", {"amount": amount})
        stored = await w.events_of("account", account_id)
        assert [e.body.get("amount") for e in stored[1:]] == amounts
        assert [e.seq for e in stored] == sorted(e.seq for e in stored)


async def test_an_event_stored_at_version_1_reads_as_version_2(deployment, names, schemas):
    """PROTOCOL.md "Event versions": a version 1 event, stored as a release
    before version 2 wrote it (no header, the old shapes), validates against
    its own version's schema, and the deployment decides and projects on it
    as read through the listed differences."""
    async with deployment.connect() as w:
        post_id = fresh("post")
        created = {"title": "Old", "body": "v1 text"}
        retitled = {"title": "Old, again"}
        schemas.validate_event("blogpost", "BlogPostCreated", created, 1)
        schemas.validate_event("blogpost", "BlogPostTitleChanged", retitled, 1)
        for event_type, body in (("BlogPostCreated", created), ("BlogPostTitleChanged", retitled)):
            ack = await w.js.publish(names.event("blogpost", post_id, event_type),
                                     json.dumps(body).encode())
            stored_at = ack.seq
        # Decided on the title the renamed field carried: the same one is no change.
        same = await w.command("blogpost", post_id, "change_title", {"title": "Old, again"})
        assert same["status"] == "accepted" and same["events"] == [], same
        answer = await w.query(f"blogposts.get.{post_id}", after_seq=str(stored_at))
        assert answer["status"] == "ok", answer
        post = answer["result"]
        assert (post["title"], post["body"], post["author"], post["events"]) == (
            "Old, again", "v1 text", "unknown", 2), post
