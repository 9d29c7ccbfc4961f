//! A bank account: the second reference aggregate, with an invariant that
//! concurrency must never break — the balance never goes negative.
//!
//! Commands: `open {owner}`, `deposit {amount}`, `withdraw {amount}`;
//! amounts are positive integers (cents, say). Events: `AccountOpened`,
//! `MoneyDeposited`, `MoneyWithdrawn`.

use jetsource_handlers::{Aggregate, Rejection};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An account, as much as its commands need to know.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    open: bool,
    balance: u64,
}

impl Account {
    /// The balance after every applied event.
    pub fn balance(&self) -> u64 {
        self.balance
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
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;

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
                Err(Rejection::validation(format!(
                    "insufficient funds: the balance is {}, {amount} was asked",
                    self.balance
                )))
            }
            AccountCommand::Withdraw { amount } => {
                Ok(vec![AccountEvent::MoneyWithdrawn { amount }])
            }
        }
    }

    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::AccountOpened { .. } => self.open = true,
            AccountEvent::MoneyDeposited { amount } => {
                self.balance = self.balance.saturating_add(amount)
            }
            AccountEvent::MoneyWithdrawn { amount } => {
                self.balance = self.balance.saturating_sub(amount)
            }
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
        AggregateTest::<Account>::given(vec![opened(), MoneyDeposited { amount: 10 }])
            .when_wire("withdraw", r#"{"amount":11}"#)
            .then_expect_rejection(RejectionKind::Validation);
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
}
