"""Events, "Personal data": personal fields stored sealed, never in plain
text; `forget.<type>.<id>` and its answers; a forgotten account lives on."""

from support.steps import open_account
from support.wire import fresh, is_sealed


async def test_a_personal_field_is_stored_sealed_in_the_documented_shape(deployment):
    async with deployment.connect() as w:
        owner = fresh("Owner")
        account_id = fresh("acct")
        reply = await w.command("account", account_id, "open", {"owner": owner})
        assert reply["status"] == "accepted", reply
        [opened] = await w.events_of("account", account_id)
        assert owner.encode() not in opened.data
        assert is_sealed(opened.body["owner"])
        assert opened.redacted == {"owner": "[forgotten]"}


async def test_forget_answers_and_a_forgotten_account_still_takes_deposits(deployment, names):
    async with deployment.connect() as w:
        account_id = (await open_account(w))["aggregate_id"]
        forget = names.subject(f"forget.account.{account_id}")
        answer = await w.ask(forget)
        assert answer == {"status": "forgotten", "aggregate_type": "account",
                          "aggregate_id": account_id, "keys_erased": 1}, answer
        # Again, and for an id that never had data: no error.
        assert (await w.ask(forget))["keys_erased"] == 0
        never = names.subject(f"forget.account.{fresh('never')}")
        assert (await w.ask(never))["status"] == "forgotten"
        reply = await w.command("account", account_id, "deposit", {"amount": 3})
        assert reply["status"] == "accepted", reply
        # The sealed value is still there, unchanged: history is not rewritten.
        opened = (await w.events_of("account", account_id))[0]
        assert is_sealed(opened.body["owner"])


async def test_forget_of_a_type_not_hosted_is_bad_request(deployment, names):
    async with deployment.connect() as w:
        answer = await w.ask(names.subject("forget.nosuchtype.x1"))
        assert answer["status"] == "rejected" and answer["code"] == "bad_request", answer


async def test_forget_stores_a_notice_naming_the_aggregate_and_where_its_stream_ended(
        deployment, names):
    """PROTOCOL.md, "Forgotten notices": `forgotten` is answered once the notice is stored in
    `jetsource_forgotten` on `forgotten.<type>.<id>`; its `seq` is at least where the aggregate's
    stream ended before the request (other writers may append meanwhile)."""
    async with deployment.connect() as w:
        account_id = (await open_account(w))["aggregate_id"]
        end = await w.last_seq("account")
        answer = await w.ask(names.subject(f"forget.account.{account_id}"))
        assert answer["status"] == "forgotten", answer
        stream = names.bucket("jetsource_forgotten")
        info = await w.js.stream_info(stream)
        assert info.config.subjects == [names.subject("forgotten.>")], info.config
        assert info.config.max_msgs_per_subject == 1, info.config
        subject = names.subject(f"forgotten.account.{account_id}")
        notice = await w.direct_get(stream, {"last_by_subj": subject})
        assert notice is not None, f"no notice on {subject}"
        body = notice.body
        assert {k: body[k] for k in ("aggregate_type", "aggregate_id", "stream")} == {
            "aggregate_type": "account", "aggregate_id": account_id,
            "stream": names.stream("account")}, body
        assert set(body) == {"aggregate_type", "aggregate_id", "stream", "seq"}, body
        assert end <= body["seq"] <= await w.last_seq("account"), (end, body)
