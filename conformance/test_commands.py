"""PROTOCOL.md, "Tokens" and "Commands": the subject, the body, unknown
fields, the headers. Bad input of every kind is in test_bad_input.py."""

import uuid

from support.steps import assert_nothing_written, assert_rejected, create_post, post
from support.wire import fresh

TOKEN_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


async def test_a_command_on_its_subject_is_accepted_with_where_its_events_went(deployment, names, schemas):
    async with deployment.connect() as w:
        post_id, command_id = fresh("post"), fresh("cmd")
        reply = await w.command("blogpost", post_id, "create", post("Hello", "Text"),
                                {"Command-Id": command_id})
        schemas.validate("command_reply", reply)
        assert reply["status"] == "accepted"
        assert reply["command_id"] == command_id
        assert (reply["aggregate_type"], reply["aggregate_id"]) == ("blogpost", post_id)
        assert reply["duplicate"] is False
        [event] = reply["events"]
        schemas.validate("event_ref", event)
        assert event["type"] == "BlogPostCreated"
        assert event["stream"] == names.stream("blogpost")
        assert event["seq"] >= 1


async def test_without_a_command_id_one_is_generated_a_uuid(deployment):
    async with deployment.connect() as w:
        first = await create_post(w)
        second = await create_post(w)
        for reply in (first, second):
            uuid.UUID(reply["command_id"])
        assert first["command_id"] != second["command_id"]


async def test_every_token_character_and_128_characters_are_allowed(deployment):
    async with deployment.connect() as w:
        stem = fresh("p")
        post_id = (stem + TOKEN_CHARACTERS * 3)[:128]
        command_id = (fresh("c") + TOKEN_CHARACTERS * 3)[:128]
        correlation = (TOKEN_CHARACTERS * 3)[:128]
        causation = TOKEN_CHARACTERS
        reply = await w.command("blogpost", post_id, "create", post(), {
            "Command-Id": command_id, "Correlation-Id": correlation, "Causation-Id": causation})
        assert reply["status"] == "accepted", reply
        assert reply["aggregate_id"] == post_id and reply["command_id"] == command_id
        [event] = await w.events_of("blogpost", post_id)
        assert event.headers["Command-Id"] == command_id
        assert event.headers["Correlation-Id"] == correlation
        assert event.headers["Causation-Id"] == causation


async def test_an_empty_body_or_an_empty_object_is_a_command_without_fields(deployment):
    async with deployment.connect() as w:
        for body in (b"", b"{}"):
            reply = await create_post(w)
            post_id = reply["aggregate_id"]
            published = await w.command("blogpost", post_id, "publish", body)
            assert published["status"] == "accepted", (body, published)
            assert [e["type"] for e in published["events"]] == ["BlogPostPublished"]


async def test_optional_fields_take_their_default(deployment):
    async with deployment.connect() as w:
        # `publish` defaults to false (commands.json): one event, not two.
        reply = await create_post(w)
        assert [e["type"] for e in reply["events"]] == ["BlogPostCreated"]
        reply = await create_post(w, publish=True)
        assert [e["type"] for e in reply["events"]] == ["BlogPostCreated", "BlogPostPublished"]


async def test_the_reference_aggregates_refuse_unknown_fields(deployment):
    async with deployment.connect() as w:
        post_id = fresh("post")
        reply = await w.command("blogpost", post_id, "create",
                                {"title": "Hello", "body": "Text", "publlish": True})
        assert_rejected(reply, "bad_request")
        account_id = fresh("acct")
        reply = await w.command("account", account_id, "open", {"owner": "Ada", "currency": "EUR"})
        assert_rejected(reply, "bad_request")
        await assert_nothing_written(w, post_id)
        await assert_nothing_written(w, account_id)


async def test_bodies_valid_by_commands_json_are_never_bad_request_and_others_always(deployment, schemas):
    """The schemas alone tell a client which bodies decode: a body valid
    under schemas/json/<type>/commands.json is decided by the aggregate
    (accepted or a business rejection), any other is bad_request."""
    cases = [
        ("account", "open", {"owner": "Ada"}),
        ("account", "open", {"owner": ""}),
        ("account", "open", {"owner": 7}),
        ("account", "open", {}),
        ("account", "open", {"owner": "Ada", "extra": 1}),
        ("account", "deposit", {"amount": 5}),
        ("account", "deposit", {"amount": 0}),
        ("account", "deposit", {"amount": -5}),
        ("account", "deposit", {"amount": 1.5}),
        ("account", "deposit", {"amount": "5"}),
        ("account", "deposit", {"amount": 18446744073709551615}),
        ("account", "deposit", {"amount": 18446744073709551616}),
        ("account", "withdraw", {"amount": 1}),
        ("account", "withdraw", {}),
        ("blogpost", "create", {"title": "T", "body": "B", "publish": True}),
        ("blogpost", "create", {"title": "T", "body": "B", "publish": None}),
        ("blogpost", "create", {"title": "T", "body": "B", "publish": "yes"}),
        ("blogpost", "create", {"title": "T"}),
        ("blogpost", "create", {"title": ["T"], "body": "B"}),
        ("blogpost", "change_title", {"title": "New"}),
        ("blogpost", "change_title", {"title": None}),
        ("blogpost", "publish", {}),
        ("blogpost", "publish", {"now": True}),
    ]
    async with deployment.connect() as w:
        for aggregate_type, command, body in cases:
            aggregate_id = fresh("schema")
            reply = await w.command(aggregate_type, aggregate_id, command, body)
            valid = schemas.command_is_valid(aggregate_type, command, body)
            is_bad_request = reply["status"] == "rejected" and reply["code"] == "bad_request"
            assert is_bad_request != valid, (aggregate_type, command, body, valid, reply)


async def test_correlation_and_causation_ids_are_optional(deployment):
    async with deployment.connect() as w:
        reply = await create_post(w, headers={"Correlation-Id": fresh("flow")})
        assert reply["status"] == "accepted"
        reply = await create_post(w, headers={"Causation-Id": fresh("msg")})
        assert reply["status"] == "accepted"

