//! An order desk, as an application in its own crate builds one on
//! jetsource: orders and payments are two aggregate types (two streams);
//! the `desk` projection follows both, typed, to answer what each order is
//! owed; the `orders` projection keeps one KV document per order; and the
//! `settlement` process manager confirms an order once paid, or cancels it
//! when its payment is refused or late.
//!
//! Written only against the public API of the `jetsource` crate.
//!
//! # Layout
//! - [`order`]: the order aggregate (`place`, `confirm`, `cancel`).
//! - [`payment`]: the payment aggregate (`pay` an order, or `refuse`).
//! - [`desk`]: the in-memory `desk` projection over both, and its typed
//!   queries.
//! - [`orders`]: the `orders` document projection, persisted in KV.
//! - [`settlement`]: the `settlement` process manager.

pub mod desk;
pub mod order;
pub mod orders;
pub mod payment;
pub mod settlement;

use jetsource::App;
use settlement::Settlement;

/// The desk's application, settling orders within the default window.
pub fn app() -> App {
    app_with(Settlement::default())
}

/// The desk's application with `settlement`'s window: both aggregates,
/// the in-memory `desk` projection, the `orders` documents and the
/// settlement.
pub fn app_with(settlement: Settlement) -> App {
    App::new()
        .aggregate::<order::Order>()
        .aggregate::<payment::Payment>()
        .projector(desk::Desk::default)
        .documents(|| orders::Orders)
        .process_manager(move || settlement)
}
