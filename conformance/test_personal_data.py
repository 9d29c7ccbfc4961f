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
