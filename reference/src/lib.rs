//! The reference application: what the `jetsource` binary hosts, its demo
//! and its bench run, and the tests use. Written only against the public
//! APIs of `jetsource-handlers` and `jetsource-projector`, as a user's
//! crate would be.
//!
//! # Layout
//! - [`blog`]: the blog post from the Rewind post.
//! - [`account`]: a bank account, the reference for an invariant under
//!   concurrency.
//! - [`blogposts`]: the blog's read model, the `blogposts` projection.
//! - [`blogposts_pg`]: the same read model in a PostgreSQL table, the
//!   `blogposts_pg` projection.
//! - [`publishing`]: scheduled publishing, a process manager that
//!   publishes a post at the time its `schedule_publish` recorded.
//! - [`payments`]: a saga that carries a payment between two accounts and
//!   refunds it when the payee refuses it or does not answer in time.

pub mod account;
pub mod blog;
pub mod blogposts;
pub mod blogposts_pg;
pub mod payments;
pub mod publishing;
