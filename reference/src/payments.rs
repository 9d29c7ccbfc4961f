//! Payments, the reference saga: a process manager that carries a payment
//! from one account to another through its steps, and compensates (refunds
//! the payer) when a step is refused or the payee does not answer in time.
//!
//! Each payment is an instance, keyed by its id. The steps, each a command
//! on one account (see [`crate::account::payment`]):
//! 1. `PaymentOffered` on the payer (its money held) starts the instance:
//!    it sends `present_payment` to the payee and sets the `accept`
//!    deadline at the offer's time plus `accept_within_secs`.
//! 2. `present_payment` refused (the payee does not exist, or has a payment
//!    of that id waiting already): the payer is refunded at once, the
//!    deadline cancelled, and the instance ends.
//! 3. `PaymentAccepted` on the payee: the payer's side is settled.
//!    `PaymentDeclined` or `PaymentExpired`: the payer is refunded. Either
//!    way the deadline is cancelled and the instance ends.
//! 4. The deadline coming sends `expire_payment` to the payee. If the payee
//!    accepted or declined just before, that is refused, and the event
//!    that beat it (step 3) ends the instance; otherwise `PaymentExpired`
//!    follows and the payer is refunded. The payee's account decides which
//!    came first, so a late acceptance never meets a refund.
//!
//! Every command goes out with a `Command-Id` derived from its trigger, so
//! a redelivery or a second process sends nothing twice; every time comes
//! from an event, never the clock.

use crate::account::{Account, AccountEvent};
use jetsource_process::{Command, ProcessManager, Reaction, Refused, Trigger};
use jetsource_projector::Envelope;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The deadline's name.
pub const ACCEPT: &str = "accept";

/// Carries each payment through, and refunds the ones that fail.
#[derive(Debug, Clone, Copy, Default)]
pub struct Payments;

/// A payment under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The payment's id (the instance's key).
    pub id: String,
    /// The account paying.
    pub payer: String,
    /// The account paid.
    pub payee: String,
    /// How much.
    pub amount: u64,
    /// Whether its time ran out and `expire_payment` was sent.
    #[serde(default)]
    pub expiring: bool,
}

impl ProcessManager for Payments {
    type Input = Envelope<Account>;
    type State = Payment;

    fn name(&self) -> &'static str {
        "payments"
    }

    fn key(&self, input: &Envelope<Account>) -> Option<String> {
        match &input.event {
            AccountEvent::PaymentOffered { payment, .. }
            | AccountEvent::PaymentPresented { payment, .. }
            | AccountEvent::PaymentAccepted { payment, .. }
            | AccountEvent::PaymentDeclined { payment, .. }
            | AccountEvent::PaymentExpired { payment, .. }
            | AccountEvent::PaymentRefunded { payment, .. }
            | AccountEvent::PaymentSettled { payment, .. } => Some(payment.clone()),
            AccountEvent::AccountOpened { .. }
            | AccountEvent::MoneyDeposited { .. }
            | AccountEvent::MoneyWithdrawn { .. }
            | AccountEvent::TransferSent { .. }
            | AccountEvent::TransferReceived { .. } => None,
        }
    }

    fn react(
        &self,
        state: Option<Payment>,
        trigger: Trigger<Envelope<Account>>,
    ) -> Reaction<Payment> {
        match trigger {
            Trigger::Event(input) => on_event(state, input),
            Trigger::Deadline(fired) if fired.name == ACCEPT => match state {
                Some(payment) => {
                    let expire = step(&payment.payee, "expire_payment", &payment.id);
                    Reaction::keep(Payment {
                        expiring: true,
                        ..payment
                    })
                    .send(expire)
                }
                None => Reaction::end(),
            },
            Trigger::Deadline(_) => keep_or_end(state),
            Trigger::Refused(refused) => on_refused(state, refused),
            // A payment's state copies no personal data: never named.
            Trigger::Forgotten(_) => keep_or_end(state),
        }
    }
}

/// Reacts to an event of a payment.
fn on_event(state: Option<Payment>, input: Envelope<Account>) -> Reaction<Payment> {
    let at_account = input.meta.aggregate_id;
    match (input.event, state) {
        (
            AccountEvent::PaymentOffered {
                payment,
                to,
                amount,
                accept_within_secs,
            },
            None,
        ) => {
            // The store's time, so a redelivery sets the same deadline. One
            // that does not parse cannot be waited for: the deadline comes
            // at once and the payment expires, rather than hold the money
            // for good.
            let offered_at = OffsetDateTime::parse(&input.meta.time, &Rfc3339)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let within =
                time::Duration::seconds(i64::try_from(accept_within_secs).unwrap_or(i64::MAX));
            let until = offered_at.checked_add(within).unwrap_or(offered_at);
            let present = Command::to::<Account>(
                to.clone(),
                "present_payment",
                serde_json::json!({ "payment": &payment, "from": &at_account, "amount": amount }),
            );
            Reaction::keep(Payment {
                id: payment,
                payer: at_account,
                payee: to,
                amount,
                expiring: false,
            })
            .send(present)
            .set_deadline(ACCEPT, until)
        }
        // An id already under way, offered again by another account: that
        // offer cannot be carried, so its money goes back at once.
        (AccountEvent::PaymentOffered { payment, .. }, Some(current))
            if current.payer != at_account =>
        {
            Reaction::keep(current).send(step(&at_account, "refund_payment", &payment))
        }
        (AccountEvent::PaymentAccepted { payment, .. }, Some(current)) => Reaction::end()
            .cancel_deadline(ACCEPT)
            .send(step(&current.payer, "settle_payment", &payment)),
        (
            AccountEvent::PaymentDeclined { payment, .. }
            | AccountEvent::PaymentExpired { payment, .. },
            Some(current),
        ) => Reaction::end().cancel_deadline(ACCEPT).send(step(
            &current.payer,
            "refund_payment",
            &payment,
        )),
        // Presented (step 1 done), or an event after the end: nothing to do.
        (_, state) => keep_or_end(state),
    }
}

/// Reacts to a step the reaction sent being refused.
fn on_refused(state: Option<Payment>, refused: Refused) -> Reaction<Payment> {
    match (refused.command.command.as_str(), state) {
        // The payee cannot take it: give the money back.
        ("present_payment", Some(current)) => Reaction::end().cancel_deadline(ACCEPT).send(step(
            &current.payer,
            "refund_payment",
            &current.id,
        )),
        // Accepted or declined just before: the event that did it ends the
        // instance. Any other refusal is logged by the runtime and changes
        // nothing here.
        (_, state) => keep_or_end(state),
    }
}

/// A command naming one payment, to `account`.
fn step(account: &str, command: &str, payment: &str) -> Command {
    Command::to::<Account>(account, command, serde_json::json!({ "payment": payment }))
}

/// Goes on, or stays ended.
fn keep_or_end(state: Option<Payment>) -> Reaction<Payment> {
    match state {
        Some(payment) => Reaction::keep(payment),
        None => Reaction::end(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsource_process::testing::ReactionTest;
    use jetsource_process::{Deadline, Fired, Refusal};
    use jetsource_projector::Meta;

    const OFFERED_AT: &str = "2026-01-01T10:00:00Z";

    fn on(account: &str, event: AccountEvent) -> Trigger<Envelope<Account>> {
        Trigger::Event(Envelope {
            event,
            meta: Meta {
                stream: "EVT_ACCOUNT".into(),
                seq: 1,
                subject: format!("evt.account.{account}.Event"),
                aggregate_type: "account".into(),
                aggregate_id: account.into(),
                event_type: "Event".into(),
                version: 1,
                time: OFFERED_AT.into(),
                command_id: None,
                correlation_id: None,
                causation_id: None,
            },
        })
    }

    fn offered(amount: u64) -> AccountEvent {
        AccountEvent::PaymentOffered {
            payment: "p1".into(),
            to: "bob".into(),
            amount,
            accept_within_secs: 60,
        }
    }

    fn under_way() -> Payment {
        Payment {
            id: "p1".into(),
            payer: "ada".into(),
            payee: "bob".into(),
            amount: 5,
            expiring: false,
        }
    }

    fn step_to(account: &str, command: &str) -> Command {
        step(account, command, "p1")
    }

    fn time_of(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).expect("a time")
    }

    fn fired() -> Trigger<Envelope<Account>> {
        Trigger::Deadline(Fired {
            name: ACCEPT.into(),
            at: time_of("2026-01-01T10:01:00Z"),
        })
    }

    fn refused(command: Command) -> Trigger<Envelope<Account>> {
        Trigger::Refused(Refused {
            command,
            refusal: Refusal::NotFound,
            reason: "no such account".into(),
        })
    }

    #[test]
    fn an_offer_presents_the_payment_and_waits_for_the_payee() {
        let reaction = ReactionTest::new(&Payments).when(on("ada", offered(5)));
        assert_eq!(reaction.state, Some(under_way()));
        assert_eq!(
            reaction.commands,
            [Command::to::<Account>(
                "bob",
                "present_payment",
                serde_json::json!({"payment": "p1", "from": "ada", "amount": 5})
            )]
        );
        assert_eq!(
            reaction.set,
            [Deadline {
                name: ACCEPT.into(),
                at: time_of("2026-01-01T10:01:00Z"),
            }],
            "the offer's time and its accept_within_secs"
        );
    }

    #[test]
    fn a_refused_presentation_refunds_the_payer_and_ends() {
        let reaction =
            ReactionTest::given(&Payments, under_way()).when(refused(Command::to::<Account>(
                "bob",
                "present_payment",
                serde_json::json!({"payment": "p1", "from": "ada", "amount": 5}),
            )));
        assert_eq!(reaction.state, None);
        assert_eq!(reaction.commands, [step_to("ada", "refund_payment")]);
        assert_eq!(reaction.cancel, [ACCEPT]);
    }

    #[test]
    fn acceptance_settles_and_a_refusal_by_the_payee_refunds() {
        let accepted = AccountEvent::PaymentAccepted {
            payment: "p1".into(),
            from: "ada".into(),
            amount: 5,
        };
        let reaction = ReactionTest::given(&Payments, under_way()).when(on("bob", accepted));
        assert_eq!(reaction.state, None);
        assert_eq!(reaction.commands, [step_to("ada", "settle_payment")]);
        assert_eq!(reaction.cancel, [ACCEPT]);
        for ended in [
            AccountEvent::PaymentDeclined {
                payment: "p1".into(),
                from: "ada".into(),
                amount: 5,
            },
            AccountEvent::PaymentExpired {
                payment: "p1".into(),
                from: "ada".into(),
                amount: 5,
            },
        ] {
            let reaction = ReactionTest::given(&Payments, under_way()).when(on("bob", ended));
            assert_eq!(reaction.state, None);
            assert_eq!(reaction.commands, [step_to("ada", "refund_payment")]);
            assert_eq!(reaction.cancel, [ACCEPT]);
        }
    }

    #[test]
    fn the_deadline_expires_the_payment_on_the_payee_and_waits_for_the_outcome() {
        let reaction = ReactionTest::given(&Payments, under_way()).when(fired());
        assert_eq!(
            reaction.state,
            Some(Payment {
                expiring: true,
                ..under_way()
            })
        );
        assert_eq!(reaction.commands, [step_to("bob", "expire_payment")]);
        // Refused because the payee accepted just before: wait for that
        // event rather than refund.
        let reaction = ReactionTest::given(&Payments, under_way())
            .when(refused(step_to("bob", "expire_payment")));
        assert_eq!(reaction.state, Some(under_way()));
        assert!(reaction.commands.is_empty());
    }

    #[test]
    fn an_id_offered_by_a_second_payer_is_refunded_to_it() {
        let reaction = ReactionTest::given(&Payments, under_way()).when(on("eve", offered(7)));
        assert_eq!(reaction.state, Some(under_way()), "the first goes on");
        assert_eq!(reaction.commands, [step_to("eve", "refund_payment")]);
    }

    #[test]
    fn the_whole_way_through_one_instance() {
        let reaction = ReactionTest::new(&Payments)
            .when_all([
                on("ada", offered(5)),
                on(
                    "bob",
                    AccountEvent::PaymentPresented {
                        payment: "p1".into(),
                        from: "ada".into(),
                        amount: 5,
                    },
                ),
                fired(),
                on(
                    "bob",
                    AccountEvent::PaymentExpired {
                        payment: "p1".into(),
                        from: "ada".into(),
                        amount: 5,
                    },
                ),
            ])
            .expect("reactions");
        assert_eq!(reaction.state, None);
        assert_eq!(reaction.commands, [step_to("ada", "refund_payment")]);
        // Events after the end start nothing.
        let reaction = ReactionTest::new(&Payments).when(on(
            "ada",
            AccountEvent::PaymentRefunded {
                payment: "p1".into(),
                amount: 5,
            },
        ));
        assert_eq!(reaction.state, None);
        assert!(reaction.commands.is_empty() && reaction.set.is_empty());
    }

    #[test]
    fn other_events_belong_to_no_payment() {
        let Trigger::Event(input) = on("ada", AccountEvent::MoneyDeposited { amount: 1 }) else {
            unreachable!()
        };
        assert_eq!(Payments.key(&input), None);
        let Trigger::Event(input) = on("ada", offered(1)) else {
            unreachable!()
        };
        assert_eq!(Payments.key(&input).as_deref(), Some("p1"));
    }
}
