//! A bank account: the second reference aggregate, with an invariant that
//! concurrency must never break — the balance never goes negative.
//!
//! Commands: `open {owner}`, `deposit {amount}`, `withdraw {amount}`,
//! `transfer {to, amount}`, and a payment's steps (`offer_payment` and the
//! others of [`payment`]); amounts are positive integers (cents, say).
//! Events: `AccountOpened`, `MoneyDeposited`, `MoneyWithdrawn`, for a
//! transfer `TransferSent` on the source and `TransferReceived` on the
//! target, appended together or not at all, and a payment's `Payment…`.
//!
//! A transfer decides over both accounts (it [`Aggregate::involves`] the
//! target): the source's balance must cover it and the target must be
//! open, and both are checked again at commit, so no interleaving of
//! transfers, deposits and withdrawals makes money appear, vanish or go
//! below zero.
//!
//! A payment is the other way to move money, one step at a time, for when
//! the payee must agree and may never answer: see [`payment`] for its
//! commands and events, and [`crate::payments`] for the process manager
//! that carries it through and refunds it when it fails.

mod error;
pub mod payment;

pub use error::AccountError;

pub use payment::{Offered, Presented};

use jetsource_handlers::{Aggregate, Rejection};
use jetsource_schemas::personal::PersonalData;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An account, as much as its commands need to know, and its owner.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    open: bool,
    balance: u64,
    /// Personal data: stored sealed, `[forgotten]` once forgotten. No
    /// decision reads it, so a forgotten owner changes no decision.
    owner: String,
    /// Payments this account offered that are not settled or refunded
    /// yet, by payment id: their money is held, out of the balance.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    offered: BTreeMap<String, Offered>,
    /// Payments offered to this account, waiting for it to accept or
    /// decline them, by payment id.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    presented: BTreeMap<String, Presented>,
}

impl Account {
    /// The balance after every applied event.
    pub fn balance(&self) -> u64 {
        self.balance
    }

    /// The owner, or [`jetsource_schemas::personal::REDACTED`] once forgotten.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The payments it offered and holds the money of.
    pub fn offered(&self) -> &BTreeMap<String, Offered> {
        &self.offered
    }

    /// The payments waiting for it to accept or decline them.
    pub fn presented(&self) -> &BTreeMap<String, Presented> {
        &self.presented
    }
}

/// Commands on an account: `cmd.account.<id>.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AccountCommand {
    /// Opens the account.
    Open {
        /// Who owns it (1 to 200 characters).
        owner: String,
    },
    /// Adds money.
    Deposit {
        /// A positive amount.
        amount: u64,
    },
    /// Takes money out, never below zero.
    Withdraw {
        /// A positive amount.
        amount: u64,
    },
    /// Moves money to another open account, never below zero.
    Transfer {
        /// The id of the account paid into (not this one).
        to: String,
        /// A positive amount.
        amount: u64,
    },
    /// Offers a payment to another account, which may accept it within
    /// `accept_within_secs`; its money is held until then.
    OfferPayment {
        /// The payment's id, `[A-Za-z0-9_-]{1,64}`: it names the payment
        /// everywhere (use a UUID), not only on this account.
        payment: String,
        /// The account paid (this one too: the money goes round).
        to: String,
        /// A positive amount.
        amount: u64,
        /// How long the payee has to accept, 1 to 2,592,000 seconds.
        accept_within_secs: u64,
    },
    /// The payment's step on the payee: records it as waiting. Sent by the
    /// `payments` process manager.
    PresentPayment {
        /// The payment's id.
        payment: String,
        /// The account paying.
        from: String,
        /// How much.
        amount: u64,
    },
    /// Takes a payment waiting here: the money comes in.
    AcceptPayment {
        /// The payment's id.
        payment: String,
    },
    /// Turns a payment waiting here down.
    DeclinePayment {
        /// The payment's id.
        payment: String,
    },
    /// Withdraws a payment still waiting here once its time ran out. Sent
    /// by the `payments` process manager.
    ExpirePayment {
        /// The payment's id.
        payment: String,
    },
    /// Gives a payer the money of a payment that failed back. Sent by the
    /// `payments` process manager.
    RefundPayment {
        /// The payment's id.
        payment: String,
    },
    /// Closes a payment the payee accepted on the payer's side. Sent by the
    /// `payments` process manager.
    SettlePayment {
        /// The payment's id.
        payment: String,
    },
}

/// Events of an account: `evt.account.<id>.<EventType>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AccountEvent {
    /// The account was opened.
    AccountOpened {
        /// Its owner.
        owner: String,
    },
    /// Money came in.
    MoneyDeposited {
        /// How much.
        amount: u64,
    },
    /// Money went out.
    MoneyWithdrawn {
        /// How much.
        amount: u64,
    },
    /// Money went out to another account, which received it in the same
    /// atomic append.
    TransferSent {
        /// The account paid into.
        to: String,
        /// How much.
        amount: u64,
    },
    /// Money came in from another account, which sent it in the same
    /// atomic append.
    TransferReceived {
        /// The account paid from.
        from: String,
        /// How much.
        amount: u64,
    },
    /// A payment was offered; its money is held.
    PaymentOffered {
        /// The payment's id.
        payment: String,
        /// The account paid.
        to: String,
        /// How much.
        amount: u64,
        /// How long the payee has to accept, from this event's time.
        accept_within_secs: u64,
    },
    /// A payment is waiting for this account to accept or decline it.
    PaymentPresented {
        /// The payment's id.
        payment: String,
        /// The account paying.
        from: String,
        /// How much.
        amount: u64,
    },
    /// This account took a payment: the money came in.
    PaymentAccepted {
        /// The payment's id.
        payment: String,
        /// The account that paid.
        from: String,
        /// How much.
        amount: u64,
    },
    /// This account turned a payment down.
    PaymentDeclined {
        /// The payment's id.
        payment: String,
        /// The account that offered it.
        from: String,
        /// How much.
        amount: u64,
    },
    /// A payment waiting here ran out of time; it can no longer be
    /// accepted.
    PaymentExpired {
        /// The payment's id.
        payment: String,
        /// The account that offered it.
        from: String,
        /// How much.
        amount: u64,
    },
    /// A payment this account offered failed: its money is back.
    PaymentRefunded {
        /// The payment's id.
        payment: String,
        /// How much.
        amount: u64,
    },
    /// A payment this account offered was accepted: its money is gone.
    PaymentSettled {
        /// The payment's id.
        payment: String,
        /// How much.
        amount: u64,
    },
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;

    /// The owner is personal data: sealed under the account's own key.
    fn personal_data() -> PersonalData {
        PersonalData::new().field("AccountOpened", "owner")
    }

    /// Its refusals' details: [`AccountError`].
    fn details_schema() -> Option<schemars::Schema> {
        Some(schemars::schema_for!(AccountError))
    }

    fn handle(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, Rejection> {
        match command {
            AccountCommand::Open { .. } if self.open => {
                Err(Rejection::validation("the account is already open"))
            }
            AccountCommand::Open { owner } => {
                let owner = owner.trim();
                if owner.is_empty() || owner.chars().count() > 200 {
                    return Err(Rejection::validation(
                        "the owner must be 1 to 200 characters",
                    ));
                }
                Ok(vec![AccountEvent::AccountOpened {
                    owner: owner.to_string(),
                }])
            }
            _ if !self.open => Err(Rejection::not_found("no such account")),
            AccountCommand::Deposit { amount: 0 } | AccountCommand::Withdraw { amount: 0 } => {
                Err(Rejection::validation("the amount must be positive"))
            }
            AccountCommand::Deposit { amount } => match self.balance.checked_add(amount) {
                Some(_) => Ok(vec![AccountEvent::MoneyDeposited { amount }]),
                None => Err(Rejection::validation("the balance would overflow")),
            },
            AccountCommand::Withdraw { amount } if amount > self.balance => {
                Err(AccountError::InsufficientFunds {
                    balance: self.balance,
                    asked: amount,
                }
                .into())
            }
            AccountCommand::Withdraw { amount } => {
                Ok(vec![AccountEvent::MoneyWithdrawn { amount }])
            }
            AccountCommand::OfferPayment { .. }
            | AccountCommand::PresentPayment { .. }
            | AccountCommand::AcceptPayment { .. }
            | AccountCommand::DeclinePayment { .. }
            | AccountCommand::ExpirePayment { .. }
            | AccountCommand::RefundPayment { .. }
            | AccountCommand::SettlePayment { .. } => self.handle_payment(command),
            // Decided over both accounts, by `handle_many`; the runtime
            // never asks `handle` for it.
            AccountCommand::Transfer { .. } => Err(Rejection::validation(
                "a transfer is decided over both accounts",
            )),
        }
    }

    fn involves(command: &AccountCommand) -> Vec<String> {
        match command {
            AccountCommand::Transfer { to, .. } => vec![to.clone()],
            _ => Vec::new(),
        }
    }

    fn handle_many(
        &self,
        id: &str,
        command: AccountCommand,
        others: &BTreeMap<&str, &Account>,
    ) -> Result<Vec<(String, AccountEvent)>, Rejection> {
        let AccountCommand::Transfer { to, amount } = command else {
            let events = self.handle(command)?;
            return Ok(events.into_iter().map(|e| (id.to_string(), e)).collect());
        };
        if to == id {
            return Err(Rejection::validation(
                "a transfer needs another account than its source",
            ));
        }
        if !self.open {
            return Err(Rejection::not_found("no such account"));
        }
        let target = match others.get(to.as_str()) {
            Some(target) if target.open => target,
            _ => return Err(Rejection::not_found(format!("no such account: {to}"))),
        };
        if amount == 0 {
            return Err(Rejection::validation("the amount must be positive"));
        }
        if amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                asked: amount,
            }
            .into());
        }
        if target.balance.checked_add(amount).is_none() {
            return Err(Rejection::validation("the target's balance would overflow"));
        }
        Ok(vec![
            (
                id.to_string(),
                AccountEvent::TransferSent {
                    to: to.clone(),
                    amount,
                },
            ),
            (
                to,
                AccountEvent::TransferReceived {
                    from: id.to_string(),
                    amount,
                },
            ),
        ])
    }

    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::AccountOpened { owner } => {
                self.open = true;
                self.owner = owner;
            }
            AccountEvent::MoneyDeposited { amount } => {
                self.balance = self.balance.saturating_add(amount)
            }
            AccountEvent::MoneyWithdrawn { amount } | AccountEvent::TransferSent { amount, .. } => {
                self.balance = self.balance.saturating_sub(amount)
            }
            AccountEvent::TransferReceived { amount, .. } => {
                self.balance = self.balance.saturating_add(amount)
            }
            AccountEvent::PaymentOffered { .. }
            | AccountEvent::PaymentPresented { .. }
            | AccountEvent::PaymentAccepted { .. }
            | AccountEvent::PaymentDeclined { .. }
            | AccountEvent::PaymentExpired { .. }
            | AccountEvent::PaymentRefunded { .. }
            | AccountEvent::PaymentSettled { .. } => self.apply_payment(event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsource_handlers::testing::AggregateTest;
    use jetsource_handlers::RejectionKind;
    use AccountEvent::*;

    fn opened() -> AccountEvent {
        AccountOpened {
            owner: "ada".into(),
        }
    }

    #[test]
    fn open_deposit_withdraw() {
        AggregateTest::<Account>::given_no_previous_events()
            .when_wire("open", r#"{"owner":"ada"}"#)
            .then_expect_events(vec![opened()]);
        AggregateTest::<Account>::given(vec![opened()])
            .when_wire("deposit", r#"{"amount":10}"#)
            .then_expect_events(vec![MoneyDeposited { amount: 10 }]);
        AggregateTest::<Account>::given(vec![opened(), MoneyDeposited { amount: 10 }])
            .when_wire("withdraw", r#"{"amount":10}"#)
            .then_expect_events(vec![MoneyWithdrawn { amount: 10 }]);
    }

    #[test]
    fn the_balance_never_goes_negative() {
        let refused =
            AggregateTest::<Account>::given(vec![opened(), MoneyDeposited { amount: 10 }])
                .when_wire("withdraw", r#"{"amount":11}"#)
                .then_expect_rejection_with_details(
                    RejectionKind::Validation,
                    AccountError::InsufficientFunds {
                        balance: 10,
                        asked: 11,
                    },
                );
        assert_eq!(
            refused.reason(),
            "insufficient funds: the balance is 10, 11 was asked"
        );
        assert_eq!(
            refused.details(),
            Some(&serde_json::json!({"error": "insufficient_funds", "balance": 10, "asked": 11}))
        );
        // A refusal of its own words carries no details.
        let plain = AggregateTest::<Account>::given(vec![opened()])
            .when_wire("deposit", r#"{"amount":0}"#)
            .then_expect_rejection(RejectionKind::Validation);
        assert_eq!(plain.details(), None);
    }

    #[test]
    fn amounts_are_positive_integers() {
        AggregateTest::<Account>::given(vec![opened()])
            .when_wire("deposit", r#"{"amount":0}"#)
            .then_expect_rejection(RejectionKind::Validation);
        for body in [r#"{"amount":-5}"#, r#"{"amount":1.5}"#, r#"{"amount":"5"}"#] {
            assert!(jetsource_schemas::codec::decode_command::<AccountCommand>(
                "deposit",
                body.as_bytes()
            )
            .is_err());
        }
        AggregateTest::<Account>::given(vec![opened(), MoneyDeposited { amount: u64::MAX }])
            .when_wire("deposit", r#"{"amount":1}"#)
            .then_expect_rejection(RejectionKind::Validation);
    }

    #[test]
    fn a_missing_account_is_not_found() {
        AggregateTest::<Account>::given_no_previous_events()
            .when_wire("withdraw", r#"{"amount":1}"#)
            .then_expect_rejection(RejectionKind::NotFound);
    }

    fn funded(amount: u64) -> Vec<AccountEvent> {
        vec![opened(), MoneyDeposited { amount }]
    }

    fn transfer(to: &str, amount: u64) -> String {
        format!(r#"{{"to":"{to}","amount":{amount}}}"#)
    }

    #[test]
    fn a_transfer_is_one_event_on_each_account() {
        AggregateTest::<Account>::given(funded(10))
            .and_other("b", vec![opened()])
            .when_wire_on("a", "transfer", &transfer("b", 10))
            .then_expect_events(vec![
                (
                    "a",
                    TransferSent {
                        to: "b".into(),
                        amount: 10,
                    },
                ),
                (
                    "b",
                    TransferReceived {
                        from: "a".into(),
                        amount: 10,
                    },
                ),
            ]);
        let mut source = Account::default();
        let mut target = Account::default();
        for event in funded(10) {
            source.apply(event);
        }
        source.apply(TransferSent {
            to: "b".into(),
            amount: 4,
        });
        target.apply(TransferReceived {
            from: "a".into(),
            amount: 4,
        });
        assert_eq!((source.balance(), target.balance()), (6, 4));
    }

    #[test]
    fn a_transfer_never_overdraws_and_needs_another_account() {
        AggregateTest::<Account>::given(funded(10))
            .and_other("b", vec![opened()])
            .when_wire_on("a", "transfer", &transfer("b", 11))
            .then_expect_rejection(RejectionKind::Validation);
        AggregateTest::<Account>::given(funded(10))
            .when_wire_on("a", "transfer", &transfer("a", 1))
            .then_expect_rejection(RejectionKind::Validation);
        AggregateTest::<Account>::given(funded(10))
            .and_other("b", vec![opened()])
            .when_wire_on("a", "transfer", &transfer("b", 0))
            .then_expect_rejection(RejectionKind::Validation);
        AggregateTest::<Account>::given(funded(10))
            .and_other("b", funded(u64::MAX))
            .when_wire_on("a", "transfer", &transfer("b", 1))
            .then_expect_rejection(RejectionKind::Validation);
    }

    #[test]
    fn a_transfer_from_or_to_a_missing_account_is_not_found() {
        AggregateTest::<Account>::given(funded(10))
            .when_wire_on("a", "transfer", &transfer("nobody", 1))
            .then_expect_rejection(RejectionKind::NotFound);
        AggregateTest::<Account>::given_no_previous_events()
            .and_other("b", vec![opened()])
            .when_wire_on("a", "transfer", &transfer("b", 1))
            .then_expect_rejection(RejectionKind::NotFound);
    }

    #[test]
    fn only_a_transfer_involves_another_account() {
        let decode = |name: &str, body: &str| {
            jetsource_schemas::codec::decode_command::<AccountCommand>(name, body.as_bytes())
                .expect("decodes")
        };
        assert_eq!(
            Account::involves(&decode("transfer", &transfer("b", 1))),
            ["b"]
        );
        assert!(Account::involves(&decode("deposit", r#"{"amount":1}"#)).is_empty());
        // A one-account command decided on the way of several is decided
        // as `handle` decides it.
        AggregateTest::<Account>::given(funded(10))
            .when_wire_on("a", "withdraw", r#"{"amount":3}"#)
            .then_expect_events(vec![("a", MoneyWithdrawn { amount: 3 })]);
    }
}
