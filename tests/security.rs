//! Authenticated connections, least privilege, secrets kept out of logs,
//! errors and help, and the body-size limit, against real nats-servers.
//! Every certificate, key, seed and JWT is generated here, per test.

mod common;

use async_nats::jetstream;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{blog_app, eventually, with_id, InProcessRun, NatsServer, DEADLINE};
use jetsource::app::{self, RunError};
use jetsource::auth::{self, Secret};
use jetsource::client::{CommandClient, SendErrorKind};
use jetsource::config::{Config, ConfigError};
use jetsource_handlers::connect::{ConnectError, ConnectErrorKind};
use jetsource_reference::publishing::ScheduledPublishing;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn config_for(url: &str) -> Config {
    let mut config = Config::default();
    config.nats.url = Some(url.to_string());
    config
}

async fn connect(config: &Config) -> Result<async_nats::Client, ConnectError> {
    let url = config.nats.url.clone().expect("a url");
    auth::connect(config, &url).await
}

fn refused(result: Result<async_nats::Client, ConnectError>) -> ConnectErrorKind {
    match result {
        Ok(_) => panic!("the server accepted the connection"),
        Err(e) => e.kind(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn conf_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

#[tokio::test]
async fn token() {
    let server = NatsServer::with(|o| {
        o.extra_config = "authorization { token: \"right-token-7f3a\" }\n".into();
    });
    let mut config = config_for(&server.client_url());
    config.nats.auth.token = Some(Secret::new("right-token-7f3a"));
    connect(&config).await.expect("the right token connects");

    config.nats.auth.token = Some(Secret::new("wrong-token-9c1d"));
    assert_eq!(
        refused(connect(&config).await),
        ConnectErrorKind::Unauthorized
    );
    config.nats.auth.token = None;
    assert_eq!(
        refused(connect(&config).await),
        ConnectErrorKind::Unauthorized
    );
}

#[tokio::test]
async fn user_and_password() {
    let server = NatsServer::with(|o| {
        o.extra_config =
            "authorization { users: [ { user: svc, password: \"right-pw-51ab\" } ] }\n".into();
    });
    let mut config = config_for(&server.client_url());
    config.nats.auth.user = Some("svc".into());
    config.nats.auth.password = Some(Secret::new("right-pw-51ab"));
    connect(&config).await.expect("the right password connects");

    config.nats.auth.password = Some(Secret::new("wrong-pw-0e77"));
    assert_eq!(
        refused(connect(&config).await),
        ConnectErrorKind::Unauthorized
    );
    config.nats.auth.user = None;
    config.nats.auth.password = None;
    assert_eq!(
        refused(connect(&config).await),
        ConnectErrorKind::Unauthorized
    );
}

#[tokio::test]
async fn nkey_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let other = nkeys::KeyPair::new_user();
    let server = NatsServer::with(|o| {
        o.extra_config = format!(
            "authorization {{ users: [ {{ nkey: {} }} ] }}\n",
            user.public_key()
        );
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config_for(&server.client_url());
    config.nats.auth.nkey_seed_file =
        Some(write(dir.path(), "user.nk", &user.seed().expect("seed")));
    connect(&config).await.expect("the right seed connects");

    config.nats.auth.nkey_seed_file =
        Some(write(dir.path(), "other.nk", &other.seed().expect("seed")));
    assert_eq!(
        refused(connect(&config).await),
        ConnectErrorKind::Unauthorized
    );
    config.nats.auth.nkey_seed_file = None;
    assert_eq!(
        refused(connect(&config).await),
        ConnectErrorKind::Unauthorized
    );

    // Not a user seed (an account seed): refused before connecting, and
    // the message names the file, never its content.
    let account_seed = nkeys::KeyPair::new_account().seed().expect("seed");
    config.nats.auth.nkey_seed_file = Some(write(dir.path(), "account.nk", &account_seed));
    let err = connect(&config).await.expect_err("not a user seed");
    assert_eq!(err.kind(), ConnectErrorKind::Credentials);
    assert!(err.to_string().contains("account.nk"));
    assert!(!err.to_string().contains(&account_seed));
}

/// A JWT as nats-server reads them: header.claims.signature, each base64url
/// without padding, signed with the issuer's ed25519 nkey.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        "iat": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = issuer
        .sign(format!("{header}.{claims}").as_bytes())
        .expect("sign");
    format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// An account JWT; `storage` -1 enables JetStream without limits, 0
/// leaves it off (the system account must not have it).
fn account_jwt(
    operator: &nkeys::KeyPair,
    account: &nkeys::KeyPair,
    name: &str,
    storage: i64,
) -> String {
    jwt(
        operator,
        &account.public_key(),
        name,
        serde_json::json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
                "mem_storage": storage, "disk_storage": storage, "streams": -1, "consumer": -1
            },
            "default_permissions": { "pub": {}, "sub": {} },
            "type": "account",
            "version": 2
        }),
    )
}

fn creds_file(account: &nkeys::KeyPair) -> String {
    let user = nkeys::KeyPair::new_user();
    let user_jwt = jwt(
        account,
        &user.public_key(),
        "jetsource",
        serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2
        }),
    );
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
        user.seed().expect("seed")
    )
}

#[tokio::test]
async fn credentials_file_in_operator_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let system = nkeys::KeyPair::new_account();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "test-operator",
        serde_json::json!({ "type": "operator", "version": 2 }),
    );
    let operator_file = write(dir.path(), "operator.jwt", &operator_jwt);
    let extra = format!(
        "operator: {}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{}\"\n  {}: \"{}\"\n}}\n",
        conf_path(&operator_file),
        system.public_key(),
        account.public_key(),
        account_jwt(&operator, &account, "APP", -1),
        system.public_key(),
        account_jwt(&operator, &system, "SYS", 0),
    );
    let server = NatsServer::with(|o| o.extra_config = extra);
    let mut config = config_for(&server.client_url());
    config.nats.auth.credentials_file =
        Some(write(dir.path(), "user.creds", &creds_file(&account)));
    connect(&config)
        .await
        .expect("a user of a trusted account connects");

    // A well-formed user of an account the operator never signed.
    let stranger = nkeys::KeyPair::new_account();
    config.nats.auth.credentials_file =
        Some(write(dir.path(), "stranger.creds", &creds_file(&stranger)));
    assert_eq!(
        refused(connect(&config).await),
        ConnectErrorKind::Unauthorized
    );
    config.nats.auth.credentials_file = None;
    assert_eq!(
        refused(connect(&config).await),
        ConnectErrorKind::Unauthorized
    );
    config.nats.auth.credentials_file = Some(dir.path().join("missing.creds"));
    assert_eq!(
        refused(connect(&config).await),
        ConnectErrorKind::Credentials
    );
}

/// A certificate authority that signs server and client certificates.
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("self-signed").pem();
        Ca { params, key, pem }
    }

    /// Writes `<name>.pem` and `<name>-key.pem` for a leaf certificate.
    fn issue(
        &self,
        dir: &Path,
        name: &str,
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().expect("key");
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signed");
        (
            write(dir, &format!("{name}.pem"), &cert.pem()),
            write(dir, &format!("{name}-key.pem"), &key.serialize_pem()),
        )
    }
}

fn tls_server(dir: &Path, ca: &Ca, verify_clients: bool) -> NatsServer {
    let (cert, key) = ca.issue(dir, "server", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let ca_file = write(dir, "ca.pem", &ca.pem);
    let extra = format!(
        "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {verify_clients}\n}}\n",
        conf_path(&cert),
        conf_path(&key),
        conf_path(&ca_file),
    );
    NatsServer::with(|o| o.extra_config = extra)
}

#[tokio::test]
async fn tls_with_a_custom_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("jetsource test CA");
    let server = tls_server(dir.path(), &ca, false);
    let mut config = config_for(&server.client_url());
    config.nats.tls.ca_file = Some(dir.path().join("ca.pem"));
    let client = connect(&config).await.expect("trusting the CA connects");
    assert!(client.server_info().tls_required);

    // The system's authorities do not know the test CA, nor does another CA.
    config.nats.tls.ca_file = None;
    assert_eq!(refused(connect(&config).await), ConnectErrorKind::Tls);
    config.nats.tls.ca_file = Some(write(dir.path(), "other-ca.pem", &Ca::new("other").pem));
    assert_eq!(refused(connect(&config).await), ConnectErrorKind::Tls);
}

#[tokio::test]
async fn mutual_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("jetsource test CA");
    let server = tls_server(dir.path(), &ca, true);
    let (cert, key) = ca.issue(
        dir.path(),
        "client",
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let mut config = config_for(&server.client_url());
    config.nats.tls.ca_file = Some(dir.path().join("ca.pem"));
    config.nats.tls.cert_file = Some(cert);
    config.nats.tls.key_file = Some(key);
    connect(&config)
        .await
        .expect("a client certificate from the CA connects");

    // A certificate from another CA, and none at all, are refused.
    let stranger = Ca::new("stranger CA");
    let (cert, key) = stranger.issue(
        dir.path(),
        "stranger",
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    config.nats.tls.cert_file = Some(cert);
    config.nats.tls.key_file = Some(key);
    assert_eq!(refused(connect(&config).await), ConnectErrorKind::Tls);
    config.nats.tls.cert_file = None;
    config.nats.tls.key_file = None;
    assert_eq!(refused(connect(&config).await), ConnectErrorKind::Tls);
}

/// A tracing subscriber writing everything (async-nats' own events
/// included) into a buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

#[tokio::test]
async fn secrets_stay_out_of_logs_and_errors() {
    let server = NatsServer::with(|o| {
        o.extra_config =
            "authorization { users: [ { user: svc, password: \"pw-in-the-log-3b9e\" } ] }\n".into();
    });
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // A current-thread runtime: every task runs on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    // Refused: a wrong password, given in the settings.
    let mut config = config_for(&server.client_url());
    config.nats.auth.user = Some("svc".into());
    config.nats.auth.password = Some(Secret::new("wrong-pw-in-error-6d2c"));
    let err = connect(&config).await.expect_err("wrong password");
    assert_eq!(err.kind(), ConnectErrorKind::Unauthorized);
    let debug = format!("{config:?} {err} {err:?}");
    assert!(debug.contains("***"), "{debug}");
    assert!(!debug.contains("wrong-pw-in-error-6d2c"), "{debug}");

    // Accepted: the runtime starts and logs where it is, with the password
    // in the URL itself.
    let port = server
        .client_url()
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let url = format!("nats://svc:pw-in-the-log-3b9e@127.0.0.1:{port}");
    let config = config_for(&url);
    app::run(&blog_app(), &config, None, async {})
        .await
        .expect("runs and stops");

    let text = logs.text();
    assert!(text.contains("jetsource ready"), "{text}");
    assert!(text.contains("nats://***@127.0.0.1"), "{text}");
    for secret in ["pw-in-the-log-3b9e", "wrong-pw-in-error-6d2c"] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}

#[test]
fn secrets_stay_out_of_help_and_cli_errors() {
    let server = NatsServer::with(|o| {
        o.extra_config = "authorization { token: \"server-token-1e4f\" }\n".into();
    });
    let secrets = [
        ("JETSOURCE_NATS_TOKEN", "env-token-a8c2"),
        ("JETSOURCE_NATS_PASSWORD", "env-password-77d0"),
    ];
    let run = |args: &[&str], secret: (&str, &str)| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jetsource"))
            .args(args)
            .env(secret.0, secret.1)
            .env("JETSOURCE_NATS_USER", "someone")
            .env("RUST_LOG", "trace")
            .env("JETSOURCE_CONFIG", "/nonexistent/jetsource.toml")
            .output()
            .expect("runs the binary");
        (
            out.status,
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["send", "--help"],
        &["demo", "--help"],
        &["tail", "--help"],
        &["rewind", "--help"],
        &["streams", "--help"],
        &["schema", "--help"],
    ] {
        for secret in secrets {
            let (status, text) = run(args, secret);
            assert!(status.success(), "{args:?}: {text}");
            assert!(
                text.contains("JETSOURCE_NATS_TOKEN") || args.len() > 1,
                "{text}"
            );
            assert!(
                !text.contains(secret.1),
                "{args:?} shows {}:\n{text}",
                secret.1
            );
        }
    }

    // A real failure, logged at trace level: a wrong token sent to a server.
    let url = server.client_url();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jetsource"))
        .args(["send", "blogpost", "p1", "create", "{}", "--nats-url", &url])
        .env("JETSOURCE_NATS_TOKEN", "wrong-cli-token-90b1")
        .env("RUST_LOG", "trace")
        .output()
        .expect("runs the binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains("wrong-cli-token-90b1"), "{text}");
}

#[tokio::test]
async fn max_body_must_fit_the_servers_max_payload() {
    let server = NatsServer::with(|o| o.extra_config = "max_payload: 4096\n".into());
    let config = config_for(&server.client_url());
    let result = app::run(&blog_app(), &config, None, async {}).await;
    match result {
        Err(RunError::Config(ConfigError::Invalid { setting, message })) => {
            assert_eq!(setting, "handlers.max_body");
            assert!(message.contains("4096"), "{message}");
        }
        other => panic!("expected handlers.max_body refused, got {other:?}"),
    }

    let mut config = config_for(&server.client_url());
    config.handlers.max_body_bytes = 2048;
    app::run(&blog_app(), &config, None, async {})
        .await
        .expect("a body limit below max_payload runs");
}

const SERVICE_PASSWORD: &str = "service-pw-2c61";
const CLIENT_PASSWORD: &str = "client-pw-b03e";
const PROJECTOR_PASSWORD: &str = "projector-pw-5a9d";
const PRIVACY_PASSWORD: &str = "privacy-pw-71e3";

/// The shipped least-privilege configuration, on a free port with a
/// temporary store, its passwords set.
fn secure_server() -> NatsServer {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/nats-server.secure.conf"),
    )
    .expect("config/nats-server.secure.conf")
    .replace(
        "$JETSOURCE_SERVICE_PASSWORD",
        &format!("{SERVICE_PASSWORD:?}"),
    )
    .replace(
        "$JETSOURCE_CLIENT_PASSWORD",
        &format!("{CLIENT_PASSWORD:?}"),
    )
    .replace(
        "$JETSOURCE_PROJECTOR_PASSWORD",
        &format!("{PROJECTOR_PASSWORD:?}"),
    )
    .replace(
        "$JETSOURCE_PRIVACY_PASSWORD",
        &format!("{PRIVACY_PASSWORD:?}"),
    );
    NatsServer::from_config(&text)
}

/// A connection as `user`, reporting server errors (permission violations).
async fn connect_as(
    url: &str,
    user: &str,
    password: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(url)
        .await
        .expect("connects");
    (client, rx)
}

/// Waits for the server to report a permission violation on `subject`.
async fn violation(errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>, subject: &str) {
    loop {
        let error = tokio::time::timeout(Duration::from_secs(10), errors.recv())
            .await
            .expect("the server reports the violation")
            .expect("errors channel open");
        let lower = error.to_lowercase();
        if lower.contains("permissions violation") && error.contains(subject) {
            return;
        }
    }
}

#[tokio::test]
async fn least_privilege() {
    let server = secure_server();
    let url = server.client_url();

    // jetsource under its own restricted user.
    let mut config = config_for(&url);
    config.nats.auth.user = Some("jetsource".into());
    config.nats.auth.password = Some(Secret::new(SERVICE_PASSWORD));
    // With a process manager, which sends commands and sets deadlines
    // under the same user.
    let app = blog_app().process_manager(|| ScheduledPublishing);
    let serving = InProcessRun::spawn(app, config, None);

    // A command client creates a post once the runtime answers.
    let (client, mut client_errors) = connect_as(&url, "client", CLIENT_PASSWORD).await;
    let commands = CommandClient::new(client.clone()).with_timeout(Duration::from_secs(10));
    let options = with_id("create-p1");
    let body = r#"{"title":"Least privilege","body":"..."}"#;
    let reply = eventually("an answer to create-p1", DEADLINE, || {
        let (commands, options, serving) = (&commands, &options, &serving);
        async move {
            match commands
                .send("blogpost", "p1", "create", body, options)
                .await
            {
                Err(e) if e.kind() == SendErrorKind::NoAnswer => {
                    assert!(!serving.is_finished(), "the runtime stopped");
                    None
                }
                other => Some(other.expect("an answer")),
            }
        }
    })
    .await;
    assert!(reply.is_accepted(), "{reply:?}");

    // The runtime's user reads its stream: one event so far.
    let (service, _) = connect_as(&url, "jetsource", SERVICE_PASSWORD).await;
    let service_js = jetstream::new(service);
    let mut stream = service_js.get_stream("EVT_BLOGPOST").await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 1);

    // The command client cannot forge history...
    let forged = "evt.blogpost.x.BlogPostCreated";
    client
        .publish(forged, r#"{"title":"forged"}"#.into())
        .await
        .expect("queued");
    client.flush().await.expect("flushed");
    violation(&mut client_errors, forged).await;
    assert_eq!(stream.info().await.expect("info").state.messages, 1);
    assert!(stream.direct_get_last_for_subject(forged).await.is_err());

    // ...nor delete it.
    let delete = "$JS.API.STREAM.DELETE.EVT_BLOGPOST";
    let answer = client
        .send_request(
            delete,
            async_nats::Request::new()
                .payload("".into())
                .timeout(Some(Duration::from_secs(2))),
        )
        .await;
    assert!(answer.is_err(), "the delete request was answered");
    violation(&mut client_errors, delete).await;
    assert_eq!(stream.info().await.expect("info").state.messages, 1);

    // The projector reads the stream through its own consumer only.
    let (projector, mut projector_errors) = connect_as(&url, "projector", PROJECTOR_PASSWORD).await;
    let projector_js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(projector);
    let events = projector_js
        .get_stream("EVT_BLOGPOST")
        .await
        .expect("stream");
    let consumer = events
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("blog_list".into()),
            ..Default::default()
        })
        .await
        .expect("its own consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .expect("fetch");
    use futures::StreamExt;
    let event = batch.next().await.expect("one event").expect("message");
    assert_eq!(event.subject.as_str(), "evt.blogpost.p1.BlogPostCreated");
    event.ack().await.expect("ack");
    let other = events
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("someone_else".into()),
            ..Default::default()
        })
        .await;
    assert!(other.is_err(), "created a consumer it does not own");
    violation(&mut projector_errors, "someone_else").await;

    // The process manager works under the runtime's user: a post
    // scheduled is published at its time, by the manager.
    let at = (time::OffsetDateTime::now_utc() + Duration::from_secs(1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a time");
    let reply = commands
        .send("blogpost", "p2", "create", body, &with_id("create-p2"))
        .await
        .expect("an answer");
    assert!(reply.is_accepted(), "{reply:?}");
    let schedule = serde_json::json!({ "at": at }).to_string();
    let reply = commands
        .send(
            "blogpost",
            "p2",
            "schedule_publish",
            schedule,
            &with_id("schedule-p2"),
        )
        .await
        .expect("an answer");
    assert!(reply.is_accepted(), "{reply:?}");
    let published = eventually("p2 is published", DEADLINE, || {
        let stream = stream.clone();
        async move {
            stream
                .direct_get_last_for_subject("evt.blogpost.p2.BlogPostPublished")
                .await
                .ok()
        }
    })
    .await;
    let by = published
        .headers
        .get("Command-Id")
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    assert!(
        by.starts_with("pm-"),
        "published by the process manager: {by}"
    );

    // And the runtime keeps working: the post is published.
    let reply = commands
        .send("blogpost", "p1", "publish", "{}", &with_id("publish-p1"))
        .await
        .expect("an answer");
    assert!(reply.is_accepted(), "{reply:?}");
    assert_eq!(stream.info().await.expect("info").state.messages, 5);

    // Forgetting is the privacy user's: a client's request is refused, the
    // privacy user's answered by the runtime (with the keys bucket made and
    // read under the runtime's own permissions).
    let forget = "forget.blogpost.p1";
    let refused = client
        .send_request(
            forget,
            async_nats::Request::new()
                .payload("".into())
                .timeout(Some(Duration::from_secs(2))),
        )
        .await;
    assert!(refused.is_err(), "a client's forget was answered");
    violation(&mut client_errors, forget).await;
    // A saga's steps are its process manager's: a client may not refund
    // itself a payment it made.
    let refund = "cmd.account.a1.refund_payment";
    client
        .publish(refund, r#"{"payment":"p1"}"#.into())
        .await
        .expect("published");
    client.flush().await.expect("flushed");
    violation(&mut client_errors, refund).await;
    let (privacy, _) = connect_as(&url, "privacy", PRIVACY_PASSWORD).await;
    let answer = privacy
        .request(forget, "".into())
        .await
        .expect("the runtime answers the privacy user");
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload).expect("JSON");
    assert_eq!(answer["status"], "forgotten", "{answer}");
    // The notice was stored under the runtime's permissions, before the answer.
    let mut notices = service_js
        .get_stream("jetsource_forgotten")
        .await
        .expect("the notices stream");
    assert_eq!(notices.info().await.expect("info").state.messages, 1);

    serving.stop().await.expect("the runtime stopped cleanly");
}
