"""PROTOCOL.md, "The reference application": an account's payment commands
and the `payments` process manager the `jetsource` binary hosts, which
presents a payment to its payee and refunds the payer when the payee does
not exist, declines, or does not accept in time."""

from support.steps import assert_rejected, open_account
from support.wire import eventually, fresh


async def types_of(w, account: str) -> list:
    return [e.event_type for e in await w.events_of("account", account)]


async def funded(w, amount: int) -> str:
    account = (await open_account(w))["aggregate_id"]
    reply = await w.command("account", account, "deposit", {"amount": amount})
    assert reply["status"] == "accepted", reply
    return account


async def offer(w, payer: str, payee: str, amount: int, within: int) -> str:
    payment = fresh("pay")
    reply = await w.command("account", payer, "offer_payment", {
        "payment": payment, "to": payee, "amount": amount, "accept_within_secs": within})
    assert reply["status"] == "accepted", reply
    [event] = reply["events"]
    assert event["type"] == "PaymentOffered"
    return payment


async def test_an_accepted_payment_is_settled_and_an_unanswered_one_refunded(deployment):
    async with deployment.connect() as w:
        payer = await funded(w, 100)
        payee = (await open_account(w))["aggregate_id"]
        accepted = await offer(w, payer, payee, 30, 600)
        late = await offer(w, payer, payee, 20, 1)

        async def presented():
            return (await types_of(w, payee)).count("PaymentPresented") == 2

        await eventually(presented, "both payments are presented to the payee", within=30)
        reply = await w.command("account", payee, "accept_payment", {"payment": accepted})
        assert reply["status"] == "accepted", reply

        async def ended():
            return {"PaymentSettled", "PaymentRefunded"} <= set(await types_of(w, payer))

        await eventually(ended, "one payment settled, the other refunded", within=30)
        # The late one expired on the payee first: accepting it now is refused.
        assert "PaymentExpired" in await types_of(w, payee)
        assert_rejected(await w.command("account", payee, "accept_payment", {"payment": late}),
                        "validation")
        events = await w.events_of("account", payer)
        refund = next(e for e in events if e.event_type == "PaymentRefunded")
        assert refund.body == {"payment": late, "amount": 20}, refund.body
        # Sent by the process manager, under its deterministic command id.
        assert refund.headers["Command-Id"].startswith("pm-"), refund.headers
        assert (await types_of(w, payer)).count("PaymentRefunded") == 1


async def test_a_payment_to_no_account_is_refunded_and_bad_offers_are_refused(deployment):
    async with deployment.connect() as w:
        payer = await funded(w, 10)
        payment = await offer(w, payer, fresh("nobody"), 10, 600)

        async def refunded():
            return "PaymentRefunded" in await types_of(w, payer)

        await eventually(refunded, "the payer is refunded", within=30)
        # The money is back: all of it can be offered again.
        await offer(w, payer, fresh("nobody"), 10, 600)
        for bad in ({"payment": "p.1", "to": "b", "amount": 1, "accept_within_secs": 60},
                    {"payment": fresh("pay"), "to": "b", "amount": 0, "accept_within_secs": 60},
                    {"payment": fresh("pay"), "to": "b", "amount": 1, "accept_within_secs": 0},
                    {"payment": fresh("pay"), "to": "b", "amount": 1000, "accept_within_secs": 60}):
            assert_rejected(await w.command("account", payer, "offer_payment", bad), "validation")
        assert_rejected(await w.command("account", payer, "refund_payment", {"payment": payment}),
                        "validation")
