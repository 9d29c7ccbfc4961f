"""PROTOCOL.md, "The reply": a rejection may carry `details`, the
aggregate's own error as JSON by `schemas/json/<type>/details.json`; the
notice, `errors.get`, `errors.list` and `status` carry the same; rejections
jetsource makes itself carry none."""

import json

from support.steps import create_post, open_account
from support.wire import eventually, fresh

INSUFFICIENT = {"error": "insufficient_funds", "balance": 10, "asked": 11}


async def test_a_refusal_carries_the_aggregate_s_details_everywhere_it_is_told(deployment, names, schemas):
    async with deployment.connect() as w:
        account = (await open_account(w))["aggregate_id"]
        reply = await w.command("account", account, "deposit", {"amount": 10})
        assert reply["status"] == "accepted", reply
        sub = await w.nc.subscribe(names.notice("account", account))
        await w.nc.flush()
        command_id = fresh("cmd")
        try:
            reply = await w.command("account", account, "withdraw", {"amount": 11},
                                    {"Command-Id": command_id})
            notice = json.loads((await sub.next_msg(timeout=10)).data)
        finally:
            await sub.unsubscribe()
        schemas.validate("command_reply", reply)
        assert (reply["status"], reply["code"]) == ("rejected", "validation"), reply
        assert reply["details"] == INSUFFICIENT, reply
        schemas.validate("account/details", reply["details"])
        assert reply["reason"] == "insufficient funds: the balance is 10, 11 was asked"
        schemas.validate("rejection_notice", notice)
        assert notice["details"] == INSUFFICIENT, notice

        async def cached():
            answer = await w.errors_get(command_id)
            return answer if answer["status"] == "rejected" else None

        answer = await eventually(cached, f"errors.get.{command_id}")
        schemas.validate("feedback_answer", answer)
        assert answer["details"] == INSUFFICIENT, answer
        assert (await w.status(command_id))["details"] == INSUFFICIENT
        listed = await w.errors_list("account", account)
        assert listed["rejections"][0]["details"] == INSUFFICIENT, listed


async def test_refusals_without_details_and_jetsource_s_own_carry_none(deployment):
    async with deployment.connect() as w:
        account = (await open_account(w))["aggregate_id"]
        plain = await w.command("account", account, "deposit", {"amount": 0})
        assert plain["code"] == "validation" and "details" not in plain, plain
        malformed = await w.command("account", account, "deposit", {"amount": "x"})
        assert malformed["code"] == "bad_request" and "details" not in malformed, malformed
        post_id = (await create_post(w))["aggregate_id"]
        stale = await w.command("blogpost", post_id, "publish", {}, {"Expected-Seq": "0"})
        assert stale["code"] == "conflict" and "details" not in stale, stale


async def test_the_details_schema_names_the_accounts_error(schemas):
    assert schemas.is_valid("account/details", INSUFFICIENT)
    assert not schemas.is_valid("account/details", {"error": "insufficient_funds", "balance": -1,
                                                    "asked": 1})
