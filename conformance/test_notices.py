"""PROTOCOL.md, "Rejection notices": every rejected command whose subject
parsed and whose `Command-Id` was valid is published on
`notice.rejected.<aggregate_type>.<aggregate_id>`, core NATS only, as a
notice of the schema with `at` in RFC 3339 UTC."""

import json
from datetime import datetime

import pytest

from support.steps import create_post, post
from support.wire import fresh

NOTICE_WAIT = 10.0


def parse_rfc3339_utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    whole, _, fraction = text[:-1].partition(".")
    assert fraction == "" or fraction.isdigit(), text
    return datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S")


async def notice_of(w, names, aggregate_type, aggregate_id, send):
    """Subscribes to the aggregate's notices, runs `send`, and returns the
    reply and the first notice."""
    sub = await w.nc.subscribe(names.notice(aggregate_type, aggregate_id))
    await w.nc.flush()
    try:
        reply = await send()
        msg = await sub.next_msg(timeout=NOTICE_WAIT)
        return reply, msg
    finally:
        await sub.unsubscribe()


@pytest.mark.parametrize("code", ["validation", "not_found", "conflict", "bad_request"])
async def test_every_code_gets_a_notice_with_the_rejections_fields(deployment, names, schemas, code):
    async with deployment.connect() as w:
        aggregate_id, command_id = fresh("agg"), fresh("cmd")
        headers = {"Command-Id": command_id}
        command, body = {
            "validation": ("create", post(title="")),
            "not_found": ("publish", {}),
            "conflict": ("create", post()),
            "bad_request": ("create", b"{not json"),
        }[code]
        if code == "conflict":
            headers["Expected-Seq"] = "3"

        reply, msg = await notice_of(w, names, "blogpost", aggregate_id,
                                     lambda: w.command("blogpost", aggregate_id, command, body, headers))
        assert reply["code"] == code, reply
        notice = json.loads(msg.data)
        schemas.validate("rejection_notice", notice)
        assert notice["command_id"] == command_id
        assert (notice["aggregate_type"], notice["aggregate_id"]) == ("blogpost", aggregate_id)
        assert notice["command"] == command
        assert (notice["code"], notice["reason"]) == (reply["code"], reply["reason"])
        parse_rfc3339_utc(notice["at"])


async def test_an_unknown_command_of_a_parsed_subject_gets_a_notice(deployment, names):
    async with deployment.connect() as w:
        aggregate_id, command_id = fresh("agg"), fresh("cmd")
        reply, msg = await notice_of(
            w, names, "blogpost", aggregate_id,
            lambda: w.command("blogpost", aggregate_id, "archive", {}, {"Command-Id": command_id}))
        assert reply["code"] == "bad_request"
        notice = json.loads(msg.data)
        assert (notice["command_id"], notice["command"], notice["code"]) == (
            command_id, "archive", "bad_request")


async def test_a_fire_and_forget_rejection_gets_a_notice(deployment, names):
    async with deployment.connect() as w:
        aggregate_id, command_id = fresh("agg"), fresh("cmd")

        async def send():
            await w.publish(names.command("account", aggregate_id, "withdraw"), b'{"amount":1}',
                            {"Command-Id": command_id})

        _, msg = await notice_of(w, names, "account", aggregate_id, send)
        notice = json.loads(msg.data)
        assert (notice["command_id"], notice["code"]) == (command_id, "not_found")


async def test_an_accepted_command_gets_no_notice(deployment, names):
    async with deployment.connect() as w:
        post_id = fresh("post")
        sub = await w.nc.subscribe(names.notice("blogpost", post_id))
        await w.nc.flush()
        await create_post(w, post_id)
        # A rejection after it: its notice must be the first to arrive.
        command_id = fresh("cmd")
        await w.command("blogpost", post_id, "create", post(), {"Command-Id": command_id})
        msg = await sub.next_msg(timeout=NOTICE_WAIT)
        assert json.loads(msg.data)["command_id"] == command_id
        await sub.unsubscribe()


async def test_notices_are_never_written_to_a_stream(deployment, names):
    async with deployment.connect() as w:
        aggregate_id = fresh("agg")
        await w.command("blogpost", aggregate_id, "publish", {})
        answer = await w.ask("$JS.API.STREAM.NAMES",
                             json.dumps({"subject": names.notice("blogpost", aggregate_id)}).encode())
        assert not answer.get("streams"), answer
