//! An order desk, as an application in its own crate builds one on
//! jetsource: orders and payments are two aggregate types (two streams),
//! and the `desk` projection follows both, typed, to answer what each order
//! is owed.
//!
//! Written only against the public API of the `jetsource` crate.
//!
//! # Layout
//! - [`order`]: the order aggregate (`place`, `cancel`).
//! - [`payment`]: the payment aggregate (`pay` an order).
//! - [`desk`]: the `desk` projection over both, and its typed queries.

pub mod desk;
pub mod order;
pub mod payment;

use jetsource::App;

/// The desk's application: both aggregates and the in-memory `desk`
/// projection.
pub fn app() -> App {
    App::new()
        .aggregate::<order::Order>()
        .aggregate::<payment::Payment>()
        .projector(desk::Desk::default)
}
