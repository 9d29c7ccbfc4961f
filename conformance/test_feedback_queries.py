"""PROTOCOL.md, "Queries" of the feedback role and "Command index":
`errors.get.<command_id>`, `errors.list.<aggregate_type>.<aggregate_id>`
and `status.<command_id>`, their answers by the schemas, bad tokens, and
the command index bucket they fall back on."""

import json

import pytest

from support.steps import create_post, index_has_read, last_seq, post
from support.wire import SILENCE, NoAnswer, eventually, fresh


async def reject(w, aggregate_type, aggregate_id, command="publish", body=None, command_id=None):
    command_id = command_id or fresh("cmd")
    reply = await w.command(aggregate_type, aggregate_id, command, body or {}, {"Command-Id": command_id})
    assert reply["status"] == "rejected", reply
    return command_id, reply


async def found(w, command_id):
    async def rejected():
        answer = await w.errors_get(command_id)
        return answer if answer["status"] == "rejected" else None

    return await eventually(rejected, f"errors.get.{command_id}")


async def test_errors_get_answers_a_rejection_with_the_notice_fields(deployment, schemas):
    async with deployment.connect() as w:
        post_id = fresh("post")
        command_id, reply = await reject(w, "blogpost", post_id)
        answer = await found(w, command_id)
        schemas.validate("feedback_answer", answer)
        assert answer["command_id"] == command_id
        assert (answer["aggregate_type"], answer["aggregate_id"], answer["command"]) == (
            "blogpost", post_id, "publish")
        assert (answer["code"], answer["reason"]) == (reply["code"], reply["reason"])


async def test_errors_get_of_an_id_never_seen_is_unknown(deployment, schemas):
    async with deployment.connect() as w:
        command_id = fresh("never")
        answer = await w.errors_get(command_id)
        schemas.validate("feedback_answer", answer)
        assert answer == {"status": "unknown", "command_id": command_id}


async def test_errors_get_of_an_accepted_command_is_unknown(deployment):
    async with deployment.connect() as w:
        command_id = fresh("cmd")
        await create_post(w, headers={"Command-Id": command_id})
        assert await w.errors_get(command_id) == {"status": "unknown", "command_id": command_id}


async def test_errors_list_answers_the_rejections_newest_first(deployment, schemas):
    async with deployment.connect() as w:
        account_id = fresh("acct")
        ids = [(await reject(w, "account", account_id, "deposit", {"amount": n}))[0] for n in (1, 2, 3)]

        async def all_three():
            answer = await w.errors_list("account", account_id)
            return answer if len(answer["rejections"]) == 3 else None

        answer = await eventually(all_three, "errors.list with three rejections")
        schemas.validate("rejection_list", answer)
        assert (answer["aggregate_type"], answer["aggregate_id"]) == ("account", account_id)
        assert [r["command_id"] for r in answer["rejections"]] == ids[::-1]
        for r in answer["rejections"]:
            schemas.validate("rejection_notice", r)
            assert r["code"] == "not_found"


async def test_errors_list_of_an_aggregate_without_rejections_is_empty(deployment, schemas):
    async with deployment.connect() as w:
        post_id = (await create_post(w))["aggregate_id"]
        answer = await w.errors_list("blogpost", post_id)
        schemas.validate("rejection_list", answer)
        assert answer["rejections"] == []
        assert (answer["aggregate_type"], answer["aggregate_id"]) == ("blogpost", post_id)


async def test_errors_list_answers_at_most_list_limit_rejections(deployment):
    """`list_limit` is 100 by default."""
    async with deployment.connect() as w:
        post_id = fresh("post")
        ids = [(await reject(w, "blogpost", post_id))[0] for _ in range(105)]
        await found(w, ids[-1])

        async def full():
            answer = await w.errors_list("blogpost", post_id)
            newest = answer["rejections"][:1]
            return answer if newest and newest[0]["command_id"] == ids[-1] else None

        answer = await eventually(full, "errors.list holding the newest rejection")
        assert [r["command_id"] for r in answer["rejections"]] == ids[::-1][:100]


async def test_status_of_an_accepted_command_names_its_aggregate_and_events(deployment, schemas):
    async with deployment.connect() as w:
        command_id = fresh("cmd")
        reply = await create_post(w, publish=True, headers={"Command-Id": command_id})
        status = await w.status(command_id)
        schemas.validate("feedback_answer", status)
        assert status == {"status": "accepted", "command_id": command_id, "aggregate_type": "blogpost",
                          "aggregate_id": reply["aggregate_id"], "events": reply["events"]}


async def test_status_of_a_duplicate_is_the_original(deployment):
    async with deployment.connect() as w:
        command_id = fresh("cmd")
        reply = await create_post(w, headers={"Command-Id": command_id})
        again = await w.command("blogpost", reply["aggregate_id"], "create", post(),
                                {"Command-Id": command_id})
        assert again["duplicate"] is True
        status = await w.status(command_id)
        assert (status["status"], status["events"]) == ("accepted", reply["events"])


async def test_status_of_a_rejected_command_is_its_rejection(deployment, schemas):
    async with deployment.connect() as w:
        account_id = fresh("acct")
        command_id, reply = await reject(w, "account", account_id, "withdraw", {"amount": 1})
        await found(w, command_id)
        status = await w.status(command_id)
        schemas.validate("feedback_answer", status)
        assert status["status"] == "rejected"
        assert (status["command_id"], status["aggregate_id"], status["code"]) == (
            command_id, account_id, "not_found")


async def test_status_of_an_id_never_seen_is_unknown(deployment, schemas):
    async with deployment.connect() as w:
        command_id = fresh("never")
        answer = await w.status(command_id)
        schemas.validate("feedback_answer", answer)
        assert answer == {"status": "unknown", "command_id": command_id}


BAD_TOKENS = {
    "star": "bad*{}",
    "gt": "bad>{}",
    "wildcard": "*",
    "tail_wildcard": ">",
    "non_ascii": "bäd{}",
    "too_long": "x{}" + "x" * 128,
}


def bad_token(kind: str) -> str:
    """The kind's token, made unique where it can be."""
    return BAD_TOKENS[kind].replace("{}", fresh("t").replace("-", ""))


@pytest.mark.parametrize("query", ["status", "errors.get"])
@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_a_bad_command_id_token_is_bad_request_and_never_echoed(
        deployment, names, schemas, query, kind):
    async with deployment.connect() as w:
        token = bad_token(kind)
        answer = await w.ask(names.subject(f"{query}.{token}"))
        schemas.validate("feedback_answer", answer)
        assert answer["status"] == "bad_request", answer
        assert answer["command_id"] == ""
        assert isinstance(answer["reason"], str) and answer["reason"]
        if len(token) > 1:
            assert token not in json.dumps(answer, ensure_ascii=False), answer


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_errors_list_with_a_bad_token_is_answered_without_echoing_it(deployment, names, schemas, kind):
    """What PROTOCOL.md says: the bad_request answer, the token not echoed."""
    async with deployment.connect() as w:
        token = bad_token(kind)
        for subject in (f"errors.list.blogpost.{token}", f"errors.list.{token}.p1"):
            answer = await w.ask(names.subject(subject))
            assert answer.get("status") == "bad_request", answer
            assert answer.get("command_id") == "" and answer.get("reason"), answer
            if len(token) > 1:
                assert token not in json.dumps(answer, ensure_ascii=False), answer


@pytest.mark.parametrize("subject", ["status", "status.a.b", "errors.get", "errors.get.a.b",
                                     "errors.list", "errors.list.blogpost",
                                     "errors.list.blogpost.a.b"])
async def test_a_feedback_query_with_the_wrong_number_of_tokens_is_bad_request(deployment, names, subject):
    async with deployment.connect() as w:
        try:
            answer = await w.ask(names.subject(subject), timeout=SILENCE)
        except NoAnswer as e:
            pytest.fail(f"{subject}: {e}")
        assert answer.get("status") == "bad_request", answer
        assert answer.get("command_id") == "", answer


async def test_the_command_index_holds_each_accepted_command_by_id(deployment, names, schemas):
    async with deployment.connect() as w:
        command_id = fresh("cmd")
        reply = await create_post(w, publish=True, headers={"Command-Id": command_id})
        await index_has_read(w, "blogpost", last_seq(reply))
        kv = await w.js.key_value(names.bucket("jetsource_command_index"))
        entry = json.loads((await kv.get(command_id)).value)
        schemas.validate("command_index_entry", entry)
        assert entry == {"aggregate_type": "blogpost", "aggregate_id": reply["aggregate_id"],
                         "events": reply["events"]}


async def test_the_command_index_reads_each_stream_with_a_durable_consumer(deployment, names):
    async with deployment.connect() as w:
        await create_post(w)
        for aggregate_type in ("blogpost", "account"):
            info = await w.js.consumer_info(names.stream(aggregate_type), "jetsource-command-index")
            assert info.config.durable_name == "jetsource-command-index"
            assert info.config.filter_subject == names.stream_subjects(aggregate_type) or (
                info.config.filter_subjects == [names.stream_subjects(aggregate_type)]), info.config
            # Cumulative acks (a consumer created by an earlier version keeps
            # explicit ones; a fresh deployment never has one).
            assert str(info.config.ack_policy).lower().endswith("all"), info.config
            assert info.config.deliver_subject is None, "a pull consumer has no deliver subject"
