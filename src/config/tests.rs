use super::*;
use jetsource_handlers::command::HandlerConfig;
use jetsource_handlers::snapshot::SnapshotConfig;
use jetsource_handlers::store::{GroupCommitConfig, GroupCommitMode};
use std::time::Duration;

const SHIPPED: &str = include_str!("../../config/jetsource.toml");

fn read(text: &str) -> Result<Config, ConfigError> {
    error::parse(Path::new("test.toml"), text)
}

/// The setting a file, or the checks after it, refuse.
fn refused(text: &str) -> String {
    let error = match read(text) {
        Ok(config) => config.validate().expect_err(text),
        Err(error) => error,
    };
    error
        .setting()
        .unwrap_or_else(|| panic!("{text}: {error}"))
        .to_string()
}

#[test]
fn the_shipped_file_is_the_defaults() {
    let shipped: Config = toml::from_str(SHIPPED).expect("config/jetsource.toml parses");
    assert_eq!(shipped, Config::default());
    assert_eq!(read("").expect("an empty file"), Config::default());
}

#[test]
fn each_library_default_is_its_empty_section() {
    fn empty<T: serde::de::DeserializeOwned>() -> T {
        toml::from_str("").expect("an empty section")
    }
    assert_eq!(empty::<RuntimeConfig>(), RuntimeConfig::default());
    assert_eq!(empty::<HandlerConfig>(), HandlerConfig::default());
    assert_eq!(empty::<SnapshotConfig>(), SnapshotConfig::default());
    assert_eq!(empty::<GroupCommitConfig>(), GroupCommitConfig::default());
    assert_eq!(empty::<StreamSettings>(), StreamSettings::default());
    assert_eq!(empty::<FeedbackConfig>(), FeedbackConfig::default());
    assert_eq!(empty::<ProjectorConfig>(), ProjectorConfig::default());
    // What the sections add (reply, the index's replicas) has the
    // library's default too.
    let defaults = Config::default();
    assert_eq!(defaults.runtime().expect("valid"), RuntimeConfig::default());
    assert_eq!(
        defaults.feedback().expect("valid"),
        FeedbackConfig::default()
    );
    assert_eq!(
        defaults.projectors().expect("valid"),
        ProjectorConfig::default()
    );
}

#[test]
fn every_key_reaches_its_library_type() {
    let config = read(
        "[handlers]\nmax_body = \"2KiB\"\ncache_idle = \"1m\"\nsnapshot_every = 7\n\
         group_commit = true\nbatch_max_wait = \"3ms\"\n\
         [streams]\nmax_bytes = \"10GiB\"\nreplicas = 3\n\
         [feedback]\nreply = false\nerror_capacity = \"1MiB\"\n\
         [projectors]\npostgres_url = \"postgres://db\"\nlease_ttl = \"250ms\"\n",
    )
    .expect("valid");
    let runtime = config.runtime().expect("valid");
    assert_eq!(runtime.max_body_bytes, 2048);
    assert_eq!(runtime.handler.cache_idle, Duration::from_secs(60));
    assert_eq!(runtime.handler.snapshots.every, 7);
    assert_eq!(runtime.group_commit.mode, GroupCommitMode::On);
    assert_eq!(runtime.group_commit.max_wait, Duration::from_millis(3));
    assert_eq!(runtime.streams.max_bytes, Some(10 << 30));
    assert!(!runtime.reply);
    let feedback = config.feedback().expect("valid");
    assert_eq!(feedback.error_capacity, 1 << 20);
    assert_eq!(feedback.index_replicas, 3);
    let projectors = config.projectors().expect("valid");
    assert_eq!(projectors.lease_ttl, Duration::from_millis(250));
    let url = config.projectors.postgres_url.as_ref().expect("a url");
    assert_eq!(url.expose(), "postgres://db");
    let off = read("[handlers]\ngroup_commit = false").expect("valid");
    assert_eq!(off.handlers.group_commit.mode, GroupCommitMode::Off);
}

#[test]
fn invalid_settings_are_named() {
    let cases = [
        (
            "[handlers]\nstore_timeout = \"soon\"",
            "handlers.store_timeout",
        ),
        ("[handlers]\nno_such_key = 1", "handlers.no_such_key"),
        (
            "[handlers]\ngroup_commit = \"sometimes\"",
            "handlers.group_commit",
        ),
        ("[handlers]\nmax_in_flight = 0", "handlers.max_in_flight"),
        ("[handlers]\nqueue_group = \"a b\"", "handlers.queue_group"),
        (
            "[handlers]\nbatch_max_messages = 1001",
            "handlers.batch_max_messages",
        ),
        (
            "[handlers]\nbatch_max_in_flight = 0",
            "handlers.batch_max_in_flight",
        ),
        ("[streams]\nmax_bytes = \"lots\"", "streams.max_bytes"),
        (
            "[streams]\nmax_bytes = \"9000000000GiB\"",
            "streams.max_bytes",
        ),
        ("[streams]\nreplicas = 6", "streams.replicas"),
        (
            "[feedback]\nerror_capacity = \"1KiB\"",
            "feedback.error_capacity",
        ),
        ("[feedback]\nreply = \"yes\"", "feedback.reply"),
        ("[feedback]\nindex_replicas = 3", "feedback.index_replicas"),
        ("[projectors]\nlease_ttl = \"50ms\"", "projectors.lease_ttl"),
        (
            "[projectors]\non_poison = \"ignore\"",
            "projectors.on_poison",
        ),
        ("[projectors]\nnamespace = \"x\"", "projectors.namespace"),
        ("[embedded]\nport = \"high\"", "embedded.port"),
        ("[nats.auth]\ntokens = \"t\"", "nats.auth.tokens"),
        ("[cooking]\nrecipes = 3", "cooking.recipes"),
        ("[run]\nroles = [\"handlers\", \"cooking\"]", "run.roles"),
        (
            "[observability]\nmetrics_addr = \"localhost\"",
            "observability.metrics_addr",
        ),
        (
            "[observability]\notlp_endpoint = \"https://collector:4318\"",
            "observability.otlp_endpoint",
        ),
        (
            "[observability]\notlp_endpoint = \"127.0.0.1:4318\"",
            "observability.otlp_endpoint",
        ),
        (
            "[observability]\notlp_endpoint = \"http:///v1\"",
            "observability.otlp_endpoint",
        ),
    ];
    for (text, setting) in cases {
        assert_eq!(refused(text), setting, "{text}");
    }
    for bad in ["Acme", "acme_shop", "acme..shop", "cmd", "a.>", "a b"] {
        let text = format!("[nats]\nsubject_prefix = {bad:?}");
        assert_eq!(refused(&text), "nats.subject_prefix", "{bad:?} accepted");
    }
    // The culprit is named even among valid settings of the same section.
    let text = "[handlers]\nmax_in_flight = 3\ncache_idle = \"1x\"\nbatch_max_messages = 9";
    match read(text) {
        Err(ConfigError::Invalid { setting, message }) => {
            assert_eq!(setting, "handlers.cache_idle");
            assert!(message.contains("unknown duration unit"), "{message}");
        }
        other => panic!("expected an invalid setting, got {other:?}"),
    }
}

#[test]
fn the_environment_overrides_the_file() {
    let mut config = read(
        "[handlers]\nmax_in_flight = 10\n[feedback]\nerror_ttl = \"1m\"\n[run]\nroles = [\"handlers\"]",
    )
    .expect("parses");
    let env = |name: &str| match name {
        "JETSOURCE_MAX_IN_FLIGHT" => Some("7".to_string()),
        "JETSOURCE_ROLES" => Some("feedback, projectors".to_string()),
        "JETSOURCE_METRICS_ADDR" => Some("off".to_string()),
        "JETSOURCE_ERROR_TTL" => Some(String::new()),
        "JETSOURCE_ERROR_CAPACITY" => Some("8MiB".to_string()),
        _ => None,
    };
    config.apply_env(env).expect("valid environment");
    assert_eq!(config.handlers.max_in_flight, 7);
    assert_eq!(
        config.feedback.settings.error_ttl,
        Duration::from_secs(60),
        "an empty variable changes nothing"
    );
    assert_eq!(config.feedback().expect("valid").error_capacity, 8 << 20);
    assert_eq!(
        config.roles().expect("valid roles"),
        Roles {
            handlers: false,
            feedback: true,
            projectors: true
        }
    );
    assert_eq!(config.metrics_addr().expect("valid"), None);
    assert_eq!(config.otlp_endpoint().expect("valid"), None);
    let mut traced = config.clone();
    traced.observability.otlp_endpoint = "http://127.0.0.1:4318/".into();
    assert_eq!(
        traced.otlp_endpoint().expect("valid").as_deref(),
        Some("http://127.0.0.1:4318/v1/traces")
    );

    for (variable, value, setting) in [
        ("JETSOURCE_STREAM_REPLICAS", "three", "streams.replicas"),
        ("JETSOURCE_STORE_TIMEOUT", "soon", "handlers.store_timeout"),
        (
            "JETSOURCE_ERROR_CAPACITY",
            "1TiB",
            "feedback.error_capacity",
        ),
    ] {
        let var = |name: &str| (name == variable).then(|| value.to_string());
        match Config::default().apply_env(var) {
            Err(ConfigError::Invalid {
                setting: named,
                message,
            }) => {
                assert_eq!(named, setting);
                assert!(message.contains(variable), "{message}");
            }
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }
    let mut config = Config::default();
    config
        .apply_env(|name| (name == "JETSOURCE_ERROR_TTL").then(|| "0s".to_string()))
        .expect("checked later");
    assert_eq!(
        config.validate().expect_err("zero").setting(),
        Some("feedback.error_ttl")
    );
}

#[test]
fn every_override_names_a_setting_it_sets() {
    for (variable, setting) in ENV_OVERRIDES {
        // "2" reads as every type an override has (text, count, duration,
        // size) and is no default.
        let mut config = Config::default();
        config
            .apply_env(|name| (name == variable).then(|| "2".to_string()))
            .unwrap_or_else(|e| panic!("{variable}: {e}"));
        assert_ne!(
            config,
            Config::default(),
            "{variable} did not set {setting}"
        );
    }
}

#[test]
fn the_subject_prefix_reaches_every_role() {
    let mut config = read("[nats]\nsubject_prefix = \"from-file\"").expect("parses");
    let file = config.namespace().expect("valid");
    assert_eq!(file.prefix(), "from-file");
    config
        .apply_env(|name| (name == SUBJECT_PREFIX_ENV).then(|| "acme.shop".to_string()))
        .expect("valid environment");
    let namespace = config.namespace().expect("valid");
    assert_eq!(namespace.prefix(), "acme.shop");
    assert_eq!(config.runtime().expect("valid").namespace, namespace);
    assert_eq!(config.feedback().expect("valid").namespace, namespace);
    assert_eq!(config.projectors().expect("valid").namespace, namespace);

    let mut config = Config::default();
    config
        .apply_env(|name| (name == SUBJECT_PREFIX_ENV).then(|| "Acme".to_string()))
        .expect("checked later");
    for result in [
        config.validate().err(),
        config.runtime().err(),
        config.feedback().err(),
        config.projectors().err(),
    ] {
        let setting = result.as_ref().and_then(ConfigError::setting);
        assert_eq!(setting, Some("nats.subject_prefix"), "{result:?}");
    }
}

#[test]
fn every_override_is_documented() {
    for (variable, setting) in ENV_OVERRIDES {
        assert!(
            SHIPPED.contains(variable),
            "{variable} ({setting}) is not in config/jetsource.toml"
        );
    }
}

#[test]
fn parse_errors_do_not_quote_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jetsource.toml");
    std::fs::write(&path, "[nats.auth]\ntoken = \"half-written-secret\n").expect("write");
    let err = Config::load(Some(&path)).expect_err("unterminated string");
    let text = err.to_string();
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(text.contains("line 2"), "{text}");
    assert!(!text.contains("half-written-secret"), "{text}");
    let err = read("[projectors]\npostgres_url = \"postgres://u:pw-7d1e@db\"\nbatch = 0")
        .expect("parses")
        .validate()
        .expect_err("no batch");
    assert!(!err.to_string().contains("pw-7d1e"), "{err}");
}

/// The keys a derived settings type reads, as serde names them.
fn keys<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{value::Error, Error as _, Visitor};
    /// Hands the derived code nothing, keeping the field names it asks for.
    struct Keys<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Keys<'_> {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            *self.0 = fields;
            Err(Error::custom("keys taken"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Keys(&mut fields));
    assert!(
        !fields.is_empty(),
        "{} is no struct",
        std::any::type_name::<T>()
    );
    fields
}

#[test]
fn the_shipped_file_documents_every_key() {
    // Each key stands in its section, set to its default or (when it has
    // none) commented out: `key = ` or `# key = `.
    let mut documented = std::collections::BTreeSet::new();
    let mut section = "";
    for line in SHIPPED.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if let Some((key, _)) = line.trim_start_matches("# ").split_once(" = ") {
            documented.insert(format!("{section}.{key}"));
        }
    }
    let sections: [(&str, &[&[&str]]); 12] = [
        ("nats", &[&["url", "subject_prefix"]]),
        ("nats.auth", &[keys::<crate::auth::AuthConfig>()]),
        ("nats.tls", &[keys::<crate::auth::TlsConfig>()]),
        ("embedded", &[keys::<EmbeddedConfig>()]),
        (
            "handlers",
            &[
                keys::<RuntimeConfig>(),
                keys::<HandlerConfig>(),
                keys::<SnapshotConfig>(),
                keys::<GroupCommitConfig>(),
            ],
        ),
        ("streams", &[keys::<StreamSettings>()]),
        ("feedback", &[&["reply"], keys::<FeedbackConfig>()]),
        (
            "projectors",
            &[&["postgres_url"], keys::<ProjectorConfig>()],
        ),
        ("run", &[keys::<RunConfig>()]),
        ("keys", &[keys::<KeysConfig>()]),
        ("observability", &[keys::<ObservabilityConfig>()]),
        ("console", &[keys::<ConsoleConfig>()]),
    ];
    let mut expected = std::collections::BTreeSet::new();
    for (section, types) in sections {
        for key in types.iter().copied().flatten() {
            expected.insert(format!("{section}.{key}"));
        }
    }
    assert_eq!(
        keys::<NatsConfig>(),
        ["url", "subject_prefix", "auth", "tls"]
    );
    assert_eq!(
        documented, expected,
        "config/jetsource.toml is not every key"
    );
}

#[test]
fn a_master_key_file_is_read_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jetsource.master");
    let secret = "JGkhPOTAA9rE6uCa2E3bzKbI7bGv1XCFtgrk5F5gp1c=";
    std::fs::write(&path, format!("{secret}\n")).expect("write");
    let mut config = Config::default();
    assert_eq!(config.master_key().expect("unset"), None);
    config
        .apply_env(|name| (name == MASTER_KEY_FILE_ENV).then(|| path.display().to_string()))
        .expect("a path");
    let master = config.master_key().expect("reads").expect("set");
    assert_eq!(
        config.runtime().expect("valid").master_key,
        Some(master.clone())
    );
    assert_eq!(config.projectors().expect("valid").master_key, Some(master));

    for content in ["short", "c2hvcnQ="] {
        std::fs::write(&path, content).expect("write");
        let text = format!("[keys]\nmaster_key_file = {:?}", path.display().to_string());
        assert_eq!(refused(&text), "keys.master_key_file", "{content}");
        let err = read(&text).expect("parses").validate().expect_err(content);
        assert!(!err.to_string().contains(content), "{err}");
    }
    let missing = dir.path().join("absent");
    let text = format!(
        "[keys]\nmaster_key_file = {:?}",
        missing.display().to_string()
    );
    assert_eq!(refused(&text), "keys.master_key_file");
    assert_eq!(refused("[keys]\nmaster_key = \"x\""), "keys.master_key");
}
