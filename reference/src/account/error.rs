//! What an account refuses with, for callers to branch on: carried as the
//! rejection's `details` (`{"error":"insufficient_funds","balance":3,
//! "asked":5}`), its reason being the same words as before.

use jetsource_handlers::DomainError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An account's refusal, as its rejection's `details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum AccountError {
    /// Less money in the account than the command takes out or holds.
    InsufficientFunds {
        /// The balance the decision saw.
        balance: u64,
        /// What the command asked for.
        asked: u64,
    },
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::InsufficientFunds { balance, asked } => write!(
                f,
                "insufficient funds: the balance is {balance}, {asked} was asked"
            ),
        }
    }
}

impl DomainError for AccountError {}
