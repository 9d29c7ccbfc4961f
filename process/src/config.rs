//! Settings of a process manager's runtime.

use jetsource_schemas::key_wrap::MasterKey;
use jetsource_schemas::Namespace;
use std::time::Duration;

/// How a process manager runs.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The subject prefix of the application (default none): its command
    /// and event subjects, and the manager's own names, are under it.
    pub namespace: Namespace,
    /// How long a command's reply is awaited before it is resent with the
    /// same `Command-Id` (default 10 s).
    pub command_timeout: Duration,
    /// The pause before a trigger that failed for the infrastructure
    /// (JetStream, a command not answered) is tried again (default 200 ms).
    pub retry_after: Duration,
    /// How long JetStream waits for an ack before redelivering a trigger
    /// to another process (default 30 s); the runtime reports progress on
    /// a trigger it retries, so only a process that died loses it.
    pub ack_wait: Duration,
    /// What the data keys of personal data are wrapped under (default
    /// none); see [`jetsource_schemas::key_wrap`].
    pub master_key: Option<MasterKey>,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            namespace: Namespace::default(),
            command_timeout: Duration::from_secs(10),
            retry_after: Duration::from_millis(200),
            ack_wait: Duration::from_secs(30),
            master_key: None,
        }
    }
}
