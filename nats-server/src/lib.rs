//! A nats-server child process for jetsource, in the manner of nats.rs's
//! own `nats-server` test crate: find a suitable binary (or install the
//! pinned one into a project-local folder), start it, stop it on drop, and
//! have it stop by itself when the starting process dies.
//!
//! `jetsource run` uses it for its embedded default, `jetsource bench` for
//! its own servers, and the test harness for one server per test. Nothing
//! here speaks NATS: it only runs the process.
//!
//! # Layout
//! - [`binary`]: finding, probing and installing the binary.
//! - [`process`]: the running child, its options, restarts and kills.

pub mod binary;
pub mod process;

pub use binary::{find, find_or_install, probe, tools_dir, ServerBinary, ServerError};
pub use jetsource_schemas::server_version::{
    ServerVersion, MIN_SERVER_VERSION, PINNED_SERVER_VERSION,
};
pub use process::{ServerOptions, ServerProcess};
