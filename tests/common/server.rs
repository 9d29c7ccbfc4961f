//! Real nats-servers (each test starts its own, through the harness crate)
//! and connections to them.

// A binary uses what it needs of these.
#[allow(unused_imports)]
pub use jetsource_test_server::{free_port, tools_dir, NatsCluster, NatsServer};

/// A connection to `url` (several URLs comma-separated) as jetsource makes
/// it: the server's version checked.
pub async fn connect(url: &str) -> async_nats::Client {
    jetsource::connect(url).await.expect("connect")
}
