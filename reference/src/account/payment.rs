//! Payments: money moved one step at a time, each step a command on one
//! account, for when the payee has to agree and may never answer.
//!
//! A transfer is one atomic append over both accounts, decided at once. A
//! payment cannot be: the payee accepts (or not) later, by a command of its
//! own. So the payer's `offer_payment` holds the money (`PaymentOffered`),
//! the payee's `present_payment` puts it in front of them
//! (`PaymentPresented`), and the payee ends it with `accept_payment`
//! (`PaymentAccepted`: the money comes in) or `decline_payment`; a payment
//! still waiting when its time runs out is withdrawn by `expire_payment`.
//! The payer's `settle_payment` or `refund_payment` (money back) closes it.
//! The [`payments`](crate::payments) process manager sends the steps in
//! between.
//!
//! The payee's account is where the race between a late `accept_payment`
//! and `expire_payment` is decided: both need the payment waiting, and one
//! command per aggregate at a time means exactly one of them finds it. So a
//! payment is accepted or refunded, never both, whatever the timing.
//!
//! `present_payment`, `expire_payment`, `refund_payment` and
//! `settle_payment` are the process manager's steps: a client sending them
//! could refund money it gave away. In a deployment only the process
//! managers' user may publish them (see `config/nats-secure.conf`).

use super::AccountError;
use super::{Account, AccountCommand, AccountEvent};
use jetsource_handlers::Rejection;
use serde::Serialize;

/// The longest payment id.
pub const MAX_PAYMENT_ID: usize = 64;

/// The longest time a payee may be given to accept: 30 days.
pub const MAX_ACCEPT_WITHIN_SECS: u64 = 30 * 24 * 60 * 60;

/// A payment an account offered, its money held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offered {
    /// The account paid.
    pub to: String,
    /// How much is held.
    pub amount: u64,
}

/// A payment waiting for an account to accept or decline it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Presented {
    /// The account paying.
    pub from: String,
    /// How much.
    pub amount: u64,
}

impl Account {
    /// Decides a payment command on an open account.
    pub(super) fn handle_payment(
        &self,
        command: AccountCommand,
    ) -> Result<Vec<AccountEvent>, Rejection> {
        match command {
            AccountCommand::OfferPayment {
                payment,
                to,
                amount,
                accept_within_secs,
            } => {
                check_payment_id(&payment)?;
                check_account_id(&to)?;
                if amount == 0 {
                    return Err(Rejection::validation("the amount must be positive"));
                }
                if !(1..=MAX_ACCEPT_WITHIN_SECS).contains(&accept_within_secs) {
                    return Err(Rejection::validation(format!(
                        "accept_within_secs must be 1 to {MAX_ACCEPT_WITHIN_SECS}"
                    )));
                }
                if self.offered.contains_key(&payment) {
                    return Err(Rejection::validation(format!(
                        "payment {payment} is already offered"
                    )));
                }
                if amount > self.balance {
                    return Err(AccountError::InsufficientFunds {
                        balance: self.balance,
                        asked: amount,
                    }
                    .into());
                }
                Ok(vec![AccountEvent::PaymentOffered {
                    payment,
                    to,
                    amount,
                    accept_within_secs,
                }])
            }
            AccountCommand::PresentPayment {
                payment,
                from,
                amount,
            } => {
                check_payment_id(&payment)?;
                check_account_id(&from)?;
                if amount == 0 {
                    return Err(Rejection::validation("the amount must be positive"));
                }
                if self.presented.contains_key(&payment) {
                    return Err(Rejection::validation(format!(
                        "payment {payment} is already waiting here"
                    )));
                }
                Ok(vec![AccountEvent::PaymentPresented {
                    payment,
                    from,
                    amount,
                }])
            }
            AccountCommand::AcceptPayment { payment } => {
                let waiting = self.waiting(&payment)?;
                if self.balance.checked_add(waiting.amount).is_none() {
                    return Err(Rejection::validation("the balance would overflow"));
                }
                Ok(vec![AccountEvent::PaymentAccepted {
                    payment,
                    from: waiting.from.clone(),
                    amount: waiting.amount,
                }])
            }
            AccountCommand::DeclinePayment { payment } => {
                let waiting = self.waiting(&payment)?;
                Ok(vec![AccountEvent::PaymentDeclined {
                    payment,
                    from: waiting.from.clone(),
                    amount: waiting.amount,
                }])
            }
            AccountCommand::ExpirePayment { payment } => {
                let waiting = self.waiting(&payment)?;
                Ok(vec![AccountEvent::PaymentExpired {
                    payment,
                    from: waiting.from.clone(),
                    amount: waiting.amount,
                }])
            }
            AccountCommand::RefundPayment { payment } => {
                let held = self.held(&payment)?;
                Ok(vec![AccountEvent::PaymentRefunded {
                    payment,
                    amount: held.amount,
                }])
            }
            AccountCommand::SettlePayment { payment } => {
                let held = self.held(&payment)?;
                Ok(vec![AccountEvent::PaymentSettled {
                    payment,
                    amount: held.amount,
                }])
            }
            // `handle` routes only payment commands here.
            _ => Err(Rejection::validation("not a payment command")),
        }
    }

    /// Applies a payment event.
    pub(super) fn apply_payment(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::PaymentOffered {
                payment,
                to,
                amount,
                ..
            } => {
                self.balance = self.balance.saturating_sub(amount);
                self.offered.insert(payment, Offered { to, amount });
            }
            AccountEvent::PaymentPresented {
                payment,
                from,
                amount,
            } => {
                self.presented.insert(payment, Presented { from, amount });
            }
            AccountEvent::PaymentAccepted {
                payment, amount, ..
            } => {
                self.presented.remove(&payment);
                self.balance = self.balance.saturating_add(amount);
            }
            AccountEvent::PaymentDeclined { payment, .. }
            | AccountEvent::PaymentExpired { payment, .. } => {
                self.presented.remove(&payment);
            }
            AccountEvent::PaymentRefunded { payment, amount } => {
                self.offered.remove(&payment);
                self.balance = self.balance.saturating_add(amount);
            }
            AccountEvent::PaymentSettled { payment, .. } => {
                self.offered.remove(&payment);
            }
            // Not a payment event; `apply` routes none here.
            AccountEvent::AccountOpened { .. }
            | AccountEvent::MoneyDeposited { .. }
            | AccountEvent::MoneyWithdrawn { .. }
            | AccountEvent::TransferSent { .. }
            | AccountEvent::TransferReceived { .. } => {}
        }
    }

    /// The payment `payment` waiting here, or why there is none.
    fn waiting(&self, payment: &str) -> Result<&Presented, Rejection> {
        check_payment_id(payment)?;
        self.presented
            .get(payment)
            .ok_or_else(|| Rejection::validation(format!("no payment {payment} is waiting here")))
    }

    /// The payment `payment` this account offered and holds, or why there
    /// is none.
    fn held(&self, payment: &str) -> Result<&Offered, Rejection> {
        check_payment_id(payment)?;
        self.offered
            .get(payment)
            .ok_or_else(|| Rejection::validation(format!("payment {payment} is not held here")))
    }
}

/// A payment id is a token of at most [`MAX_PAYMENT_ID`] characters: it
/// names the process manager's instance and is echoed in rejections.
fn check_payment_id(payment: &str) -> Result<(), Rejection> {
    let valid = !payment.is_empty()
        && payment.len() <= MAX_PAYMENT_ID
        && payment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(Rejection::validation(format!(
            "a payment id is 1 to {MAX_PAYMENT_ID} of A-Z, a-z, 0-9, '_' and '-'"
        )))
    }
}

/// The other account is an aggregate id the process manager sends
/// commands to: refused here, rather than when the step is sent.
fn check_account_id(id: &str) -> Result<(), Rejection> {
    jetsource_schemas::token::validate("account id", id)
        .map_err(|e| Rejection::validation(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountEvent::*;
    use jetsource_handlers::testing::AggregateTest;
    use jetsource_handlers::{Aggregate, RejectionKind};

    fn funded(amount: u64) -> Vec<AccountEvent> {
        vec![
            AccountOpened {
                owner: "ada".into(),
            },
            MoneyDeposited { amount },
        ]
    }

    fn offer(payment: &str, amount: u64, within: u64) -> String {
        format!(
            r#"{{"payment":"{payment}","to":"bob","amount":{amount},"accept_within_secs":{within}}}"#
        )
    }

    fn offered(amount: u64) -> AccountEvent {
        PaymentOffered {
            payment: "p1".into(),
            to: "bob".into(),
            amount,
            accept_within_secs: 60,
        }
    }

    fn presented(amount: u64) -> AccountEvent {
        PaymentPresented {
            payment: "p1".into(),
            from: "ada".into(),
            amount,
        }
    }

    fn fold(events: Vec<AccountEvent>) -> Account {
        let mut account = Account::default();
        for event in events {
            account.apply(event);
        }
        account
    }

    #[test]
    fn an_offer_holds_its_money() {
        AggregateTest::<Account>::given(funded(10))
            .when_wire("offer_payment", &offer("p1", 4, 60))
            .then_expect_events(vec![PaymentOffered {
                payment: "p1".into(),
                to: "bob".into(),
                amount: 4,
                accept_within_secs: 60,
            }]);
        let mut events = funded(10);
        events.push(offered(4));
        let account = fold(events);
        assert_eq!(account.balance(), 6, "held, out of the balance");
        assert_eq!(account.offered()["p1"].amount, 4);
    }

    #[test]
    fn an_offer_needs_the_money_a_good_id_and_a_time() {
        let refused = |body: String| {
            AggregateTest::<Account>::given(funded(10))
                .when_wire("offer_payment", &body)
                .then_expect_rejection(RejectionKind::Validation);
        };
        refused(offer("p1", 11, 60));
        refused(offer("p1", 0, 60));
        refused(offer("p1", 1, 0));
        refused(offer("p1", 1, MAX_ACCEPT_WITHIN_SECS + 1));
        refused(offer("p.1", 1, 60));
        refused(offer(&"p".repeat(MAX_PAYMENT_ID + 1), 1, 60));
        refused(r#"{"payment":"p1","to":"b.b","amount":1,"accept_within_secs":60}"#.into());
        let mut events = funded(10);
        events.push(offered(1));
        AggregateTest::<Account>::given(events)
            .when_wire("offer_payment", &offer("p1", 1, 60))
            .then_expect_rejection(RejectionKind::Validation);
        AggregateTest::<Account>::given_no_previous_events()
            .when_wire("offer_payment", &offer("p1", 1, 60))
            .then_expect_rejection(RejectionKind::NotFound);
    }

    #[test]
    fn a_presented_payment_is_accepted_declined_or_expired_once() {
        let payee = || {
            vec![
                AccountOpened {
                    owner: "bob".into(),
                },
                presented(4),
            ]
        };
        AggregateTest::<Account>::given(payee())
            .when_wire("accept_payment", r#"{"payment":"p1"}"#)
            .then_expect_events(vec![PaymentAccepted {
                payment: "p1".into(),
                from: "ada".into(),
                amount: 4,
            }]);
        AggregateTest::<Account>::given(payee())
            .when_wire("decline_payment", r#"{"payment":"p1"}"#)
            .then_expect_events(vec![PaymentDeclined {
                payment: "p1".into(),
                from: "ada".into(),
                amount: 4,
            }]);
        AggregateTest::<Account>::given(payee())
            .when_wire("expire_payment", r#"{"payment":"p1"}"#)
            .then_expect_events(vec![PaymentExpired {
                payment: "p1".into(),
                from: "ada".into(),
                amount: 4,
            }]);
        // Whichever came first, the other finds nothing waiting: a late
        // acceptance never meets a refund.
        let mut expired = payee();
        expired.push(PaymentExpired {
            payment: "p1".into(),
            from: "ada".into(),
            amount: 4,
        });
        AggregateTest::<Account>::given(expired)
            .when_wire("accept_payment", r#"{"payment":"p1"}"#)
            .then_expect_rejection(RejectionKind::Validation);
        let mut accepted = payee();
        accepted.push(PaymentAccepted {
            payment: "p1".into(),
            from: "ada".into(),
            amount: 4,
        });
        AggregateTest::<Account>::given(accepted.clone())
            .when_wire("expire_payment", r#"{"payment":"p1"}"#)
            .then_expect_rejection(RejectionKind::Validation);
        assert_eq!(fold(accepted).balance(), 4, "the money came in");
        AggregateTest::<Account>::given(payee())
            .when_wire(
                "present_payment",
                r#"{"payment":"p1","from":"ada","amount":4}"#,
            )
            .then_expect_rejection(RejectionKind::Validation);
    }

    #[test]
    fn a_refund_gives_the_money_back_once() {
        let mut events = funded(10);
        events.push(offered(4));
        AggregateTest::<Account>::given(events.clone())
            .when_wire("refund_payment", r#"{"payment":"p1"}"#)
            .then_expect_events(vec![PaymentRefunded {
                payment: "p1".into(),
                amount: 4,
            }]);
        AggregateTest::<Account>::given(events.clone())
            .when_wire("settle_payment", r#"{"payment":"p1"}"#)
            .then_expect_events(vec![PaymentSettled {
                payment: "p1".into(),
                amount: 4,
            }]);
        let mut refunded = events.clone();
        refunded.push(PaymentRefunded {
            payment: "p1".into(),
            amount: 4,
        });
        AggregateTest::<Account>::given(refunded.clone())
            .when_wire("refund_payment", r#"{"payment":"p1"}"#)
            .then_expect_rejection(RejectionKind::Validation);
        assert_eq!(fold(refunded).balance(), 10);
        let mut settled = events;
        settled.push(PaymentSettled {
            payment: "p1".into(),
            amount: 4,
        });
        let settled = fold(settled);
        assert_eq!(settled.balance(), 6, "the money is the payee's");
        assert!(settled.offered().is_empty());
    }
}
