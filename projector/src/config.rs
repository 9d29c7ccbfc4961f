//! Settings of the projector runtime.

use jetsource_schemas::key_wrap::MasterKey;
use jetsource_schemas::settings::{self, InvalidSetting, SettingError};
use jetsource_schemas::Namespace;
use serde::Deserialize;
use std::time::Duration;

/// Settings of the projector runtime. Every field documents its default.
///
/// Deserializes from its fields' names, durations in the units of
/// [`jetsource_schemas::settings`]; `namespace` comes from elsewhere (the
/// jetsource settings file has it under `[nats]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectorConfig {
    /// How long a query with `After-Seq` waits for the projection to reach
    /// that position before answering `timeout` (default 5 s).
    #[serde(with = "settings::duration")]
    pub query_wait: Duration,
    /// The queue group of query subscribers (default `jetsource-queries`),
    /// so one of several processes answers each query.
    pub queue_group: String,
    /// Events applied together before the read model is published to
    /// queries, and, when persisted, written to its bucket once (default 256).
    pub batch: usize,
    /// Persisted projectors: how long JetStream waits for an ack before it
    /// redelivers (default 30 s). Redeliveries are recognised by their
    /// sequence and never applied twice.
    #[serde(with = "settings::duration")]
    pub ack_wait: Duration,
    /// Persisted projectors: events delivered but not yet acknowledged, at
    /// most (default 1,000).
    pub max_ack_pending: i64,
    /// In-memory projectors: retries of an apply that failed with a
    /// transient error before the projector halts (default 5).
    pub apply_retries: u32,
    /// The first back-off between those retries; it grows linearly
    /// (default 100 ms).
    #[serde(with = "settings::duration")]
    pub retry_backoff: Duration,
    /// Persisted projectors: deliveries of an event whose apply keeps
    /// failing before it is parked (default 5). Each failed delivery is
    /// redelivered after `retry_backoff` times the deliveries so far.
    pub max_deliveries: u32,
    /// Persisted projectors: what follows parking an event (default
    /// [`OnPoison::Stop`], so nothing is skipped unless a projector or the
    /// settings say so).
    pub on_poison: OnPoison,
    /// Persisted projectors: how long the active instance's lease lasts
    /// unrenewed (default 5 s); a standby takes over within about this
    /// long after the holder dies.
    #[serde(with = "settings::duration")]
    pub lease_ttl: Duration,
    /// The subject prefix (default: none). Projectors name their subjects
    /// without it (`evt.blogpost.>`); the runtime follows them, and serves
    /// queries, control subjects and buckets, under it.
    #[serde(skip)]
    pub namespace: Namespace,
    /// What the data keys of personal data are wrapped under (default
    /// none); see [`jetsource_schemas::key_wrap`].
    #[serde(skip)]
    pub master_key: Option<MasterKey>,
}

/// What a persisted projector does once an event is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPoison {
    /// Halt at the event and report why in the status.
    Stop,
    /// Go on with the next event; the parked one waits for `replay-parked`.
    Skip,
}

/// When an event counts as poison and what then happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoisonPolicy {
    /// Failed deliveries before the event is parked (at least 1).
    pub max_deliveries: u32,
    /// Stop or skip once parked.
    pub on_poison: OnPoison,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            query_wait: Duration::from_secs(5),
            queue_group: "jetsource-queries".into(),
            batch: 256,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            apply_retries: 5,
            retry_backoff: Duration::from_millis(100),
            max_deliveries: 5,
            on_poison: OnPoison::Stop,
            lease_ttl: Duration::from_secs(5),
            namespace: Namespace::default(),
            master_key: None,
        }
    }
}

impl ProjectorConfig {
    /// Checks every setting; the error's kind names the first invalid key.
    pub fn validate(&self) -> Result<(), SettingError> {
        let at_least_one = |key| Err(SettingError::new(InvalidSetting(key), "must be at least 1"));
        if self.batch == 0 {
            return at_least_one("batch");
        }
        if self.max_ack_pending < 1 {
            return at_least_one("max_ack_pending");
        }
        if self.max_deliveries == 0 {
            return at_least_one("max_deliveries");
        }
        if self.lease_ttl < Duration::from_millis(100) {
            return Err(SettingError::new(
                InvalidSetting("lease_ttl"),
                "must be at least 100ms",
            ));
        }
        jetsource_schemas::token::validate("queue group", &self.queue_group)
            .map_err(|e| SettingError::new(InvalidSetting("queue_group"), e.to_string()))
    }

    /// The poison policy these settings give.
    pub fn poison_policy(&self) -> PoisonPolicy {
        PoisonPolicy {
            max_deliveries: self.max_deliveries.max(1),
            on_poison: self.on_poison,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_name_their_key() {
        assert!(ProjectorConfig::default().validate().is_ok());
        /// Makes one setting invalid.
        type Spoil = fn(&mut ProjectorConfig);
        let cases: [(&str, Spoil); 5] = [
            ("batch", |c| c.batch = 0),
            ("max_ack_pending", |c| c.max_ack_pending = 0),
            ("max_deliveries", |c| c.max_deliveries = 0),
            ("lease_ttl", |c| c.lease_ttl = Duration::from_millis(99)),
            ("queue_group", |c| c.queue_group = "a.b".into()),
        ];
        for (key, spoil) in cases {
            let mut config = ProjectorConfig::default();
            spoil(&mut config);
            let e = config.validate().expect_err(key);
            assert_eq!(e.kind(), InvalidSetting(key));
        }
    }

    #[test]
    fn durations_read_in_human_units() {
        let config: ProjectorConfig =
            serde_json::from_str(r#"{"lease_ttl": "250ms", "on_poison": "skip"}"#).expect("valid");
        assert_eq!(config.lease_ttl, Duration::from_millis(250));
        assert_eq!(config.on_poison, OnPoison::Skip);
        assert_eq!(config.ack_wait, ProjectorConfig::default().ack_wait);
        assert!(serde_json::from_str::<ProjectorConfig>(r#"{"namespace": "x"}"#).is_err());
    }
}
