//! The checkpoint's key in a one-value projection's bucket; the record is
//! a [`Checkpoint`] with the projector's state (see
//! [`crate::store::OneValue`]).

pub use crate::store::Checkpoint;

/// The key of the checkpoint in a projection's bucket.
pub const CHECKPOINT_KEY: &str = "checkpoint";
