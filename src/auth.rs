//! Authenticating to NATS: the `[nats.auth]` and `[nats.tls]` settings and
//! their environment variables, turned into connect options.
//!
//! Secrets (a token, a password) live in [`Secret`], whose `Debug` and
//! `Display` print `***`, so a logged config or error cannot leak them. Seeds
//! and credentials are read from files named by the settings; only the file
//! names ever appear in messages, never their contents.

use crate::config::{Config, ConfigError};
use jetsource_handlers::connect::{connect_with, ConnectError, ConnectErrorKind};
use jetsource_handlers::error::Error;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A token, before `[nats.auth] token`.
pub const TOKEN_ENV: &str = "JETSOURCE_NATS_TOKEN";
/// A user name, before `[nats.auth] user`.
pub const USER_ENV: &str = "JETSOURCE_NATS_USER";
/// A password, before `[nats.auth] password`.
pub const PASSWORD_ENV: &str = "JETSOURCE_NATS_PASSWORD";
/// A file holding a user nkey seed, before `[nats.auth] nkey_seed_file`.
pub const NKEY_SEED_FILE_ENV: &str = "JETSOURCE_NATS_NKEY_SEED_FILE";
/// A credentials file (user JWT and seed), before `[nats.auth] credentials_file`.
pub const CREDS_ENV: &str = "JETSOURCE_NATS_CREDS";
/// A PEM file of certificate authorities, before `[nats.tls] ca_file`.
pub const TLS_CA_ENV: &str = "JETSOURCE_NATS_TLS_CA";
/// A PEM client certificate, before `[nats.tls] cert_file`.
pub const TLS_CERT_ENV: &str = "JETSOURCE_NATS_TLS_CERT";
/// The client certificate's PEM key, before `[nats.tls] key_file`.
pub const TLS_KEY_ENV: &str = "JETSOURCE_NATS_TLS_KEY";

/// A secret value: prints as `***` in `Debug` and `Display`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for handing to the NATS client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `[nats.auth]`: at most one way of authenticating. All unset (the
/// default): connect without credentials.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A token (`authorization { token }` on the server).
    pub token: Option<Secret>,
    /// A user name, with `password`.
    pub user: Option<String>,
    /// The user's password.
    pub password: Option<Secret>,
    /// A file holding a user nkey seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    /// A credentials file: a user JWT and its seed (operator mode).
    pub credentials_file: Option<PathBuf>,
}

/// `[nats.tls]`: TLS towards the server.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate authorities trusted for the server's certificate, in
    /// addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate, for servers that verify clients (mutual
    /// TLS); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's PEM private key.
    pub key_file: Option<PathBuf>,
    /// Refuse servers that do not offer TLS. Default false; implied by any
    /// file above.
    pub required: bool,
}

/// How to prove who we are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// No credentials.
    Anonymous,
    /// A token.
    Token(Secret),
    /// A user and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: Secret,
    },
    /// A user nkey seed, read from this file.
    NkeySeedFile(PathBuf),
    /// A credentials file.
    CredentialsFile(PathBuf),
}

/// The resolved settings: the file's, each overridden by its environment
/// variable when that is set and not empty.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The authentication method.
    pub method: Method,
    /// The TLS settings.
    pub tls: TlsConfig,
}

fn conflict(message: &str) -> ConfigError {
    ConfigError::invalid("nats.auth", message)
}

impl Auth {
    /// Resolves `auth` and `tls` against the environment `env` (a lookup,
    /// so tests need not touch the process environment).
    pub fn resolve(
        auth: &AuthConfig,
        tls: &TlsConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Auth, ConfigError> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        let path =
            |name: &str, file: &Option<PathBuf>| var(name).map(PathBuf::from).or(file.clone());
        let token = var(TOKEN_ENV).map(Secret::new).or(auth.token.clone());
        let user = var(USER_ENV).or(auth.user.clone());
        let password = var(PASSWORD_ENV).map(Secret::new).or(auth.password.clone());
        let seed = path(NKEY_SEED_FILE_ENV, &auth.nkey_seed_file);
        let creds = path(CREDS_ENV, &auth.credentials_file);
        let chosen = [
            token.is_some(),
            user.is_some(),
            seed.is_some(),
            creds.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if chosen > 1 {
            return Err(conflict(
                "set only one of token, user (with password), nkey_seed_file, credentials_file",
            ));
        }
        let method = match (token, user, password, seed, creds) {
            (Some(token), ..) => Method::Token(token),
            (None, Some(user), Some(password), ..) => Method::UserPassword { user, password },
            (None, Some(_), None, ..) => return Err(conflict("user is set without a password")),
            (None, None, Some(_), ..) => return Err(conflict("password is set without a user")),
            (None, None, None, Some(seed), _) => Method::NkeySeedFile(seed),
            (None, None, None, None, Some(creds)) => Method::CredentialsFile(creds),
            (None, None, None, None, None) => Method::Anonymous,
        };
        let tls = TlsConfig {
            ca_file: path(TLS_CA_ENV, &tls.ca_file),
            cert_file: path(TLS_CERT_ENV, &tls.cert_file),
            key_file: path(TLS_KEY_ENV, &tls.key_file),
            required: tls.required,
        };
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(ConfigError::invalid(
                "nats.tls",
                "cert_file and key_file go together",
            ));
        }
        Ok(Auth { method, tls })
    }

    /// Connect options carrying these credentials and TLS settings.
    pub async fn connect_options(&self) -> Result<async_nats::ConnectOptions, ConnectError> {
        let base = async_nats::ConnectOptions::new();
        let options = match &self.method {
            Method::Anonymous => base,
            Method::Token(token) => base.token(token.expose().to_string()),
            Method::UserPassword { user, password } => {
                base.user_and_password(user.clone(), password.expose().to_string())
            }
            Method::NkeySeedFile(path) => base.nkey(read_seed(path).await?),
            Method::CredentialsFile(path) => base.credentials_file(path).await.map_err(|e| {
                // async-nats names what it could not parse, never the content.
                Error::new(
                    ConnectErrorKind::Credentials,
                    format!("credentials file {}: {e}", path.display()),
                )
            })?,
        };
        let mut options = options.name("jetsource");
        let tls = &self.tls;
        if let Some(ca) = &tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let required = tls.required || tls.ca_file.is_some() || tls.cert_file.is_some();
        Ok(options.require_tls(required))
    }
}

/// Reads a user seed, checking it without ever echoing it.
async fn read_seed(path: &Path) -> Result<String, ConnectError> {
    let text = tokio::fs::read_to_string(path).await.map_err(|e| {
        Error::new(
            ConnectErrorKind::Credentials,
            format!("nkey seed file {}: {e}", path.display()),
        )
    })?;
    let seed = text.trim().to_string();
    match nkeys::KeyPair::from_seed(&seed) {
        Ok(pair) if pair.key_pair_type() == nkeys::KeyPairType::User => Ok(seed),
        _ => Err(Error::new(
            ConnectErrorKind::Credentials,
            format!(
                "nkey seed file {}: does not hold a user seed (SU...)",
                path.display()
            ),
        )),
    }
}

/// `url` with any `user:password@` or `token@` part replaced by `***@`, for
/// logs and output.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|part| match (part.find("://"), part.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &part[..scheme + 3], &part[at..])
            }
            (None, Some(at)) => format!("***{}", &part[at..]),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits `user:password@` or `token@` off `url` (every server in a
/// comma-separated list), since async-nats ignores credentials in URLs.
/// Returns the bare URL and the credentials found, if any.
pub fn split_url_credentials(url: &str) -> (String, Option<Method>) {
    let mut found = None;
    let bare = url
        .split(',')
        .map(|part| match (part.find("://"), part.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &part[scheme + 3..at];
                if found.is_none() && !userinfo.is_empty() {
                    found = Some(match userinfo.split_once(':') {
                        Some((user, password)) => Method::UserPassword {
                            user: user.to_string(),
                            password: Secret::new(password),
                        },
                        None => Method::Token(Secret::new(userinfo)),
                    });
                }
                format!("{}{}", &part[..scheme + 3], &part[at + 1..])
            }
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    (bare, found)
}

/// Connects to `url` with `config`'s credentials and TLS settings (and
/// their environment variables), or the credentials in the URL, checking
/// the server's version. Every connection jetsource makes goes through here.
pub async fn connect(config: &Config, url: &str) -> Result<async_nats::Client, ConnectError> {
    let credentials = |e| Error::with_source(ConnectErrorKind::Credentials, e);
    let mut auth = config.auth().map_err(credentials)?;
    let (url, in_url) = split_url_credentials(url);
    if let Some(method) = in_url {
        if auth.method != Method::Anonymous {
            return Err(Error::new(
                ConnectErrorKind::Credentials,
                "credentials both in the NATS URL and in [nats.auth] or JETSOURCE_NATS_*: keep one",
            ));
        }
        auth.method = method;
    }
    connect_with(&url, auth.connect_options().await?).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn secrets_print_as_stars() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
        let auth = Auth::resolve(
            &AuthConfig::default(),
            &TlsConfig::default(),
            env(&[(USER_ENV, "svc"), (PASSWORD_ENV, "hunter2")]),
        )
        .expect("valid");
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert_eq!(
            auth.method,
            Method::UserPassword {
                user: "svc".into(),
                password: Secret::new("hunter2")
            }
        );
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let file = AuthConfig {
            token: Some(Secret::new("from-file")),
            ..AuthConfig::default()
        };
        let auth = Auth::resolve(
            &file,
            &TlsConfig::default(),
            env(&[(TOKEN_ENV, "from-env")]),
        )
        .expect("valid");
        assert_eq!(auth.method, Method::Token(Secret::new("from-env")));
        let auth =
            Auth::resolve(&file, &TlsConfig::default(), env(&[(TOKEN_ENV, "")])).expect("valid");
        assert_eq!(auth.method, Method::Token(Secret::new("from-file")));
    }

    #[test]
    fn conflicting_settings_are_refused_without_echoing_them() {
        let file = AuthConfig {
            token: Some(Secret::new("tok-value")),
            ..AuthConfig::default()
        };
        let err = Auth::resolve(&file, &TlsConfig::default(), env(&[(USER_ENV, "u")]))
            .expect_err("two methods");
        assert_eq!(err.setting(), Some("nats.auth"));
        assert!(!err.to_string().contains("tok-value"));
        let err = Auth::resolve(
            &AuthConfig::default(),
            &TlsConfig::default(),
            env(&[(PASSWORD_ENV, "pw-value")]),
        )
        .expect_err("password alone");
        assert!(!err.to_string().contains("pw-value"));
        let err = Auth::resolve(
            &AuthConfig::default(),
            &TlsConfig::default(),
            env(&[(TLS_CERT_ENV, "c.pem")]),
        )
        .expect_err("cert without key");
        assert_eq!(err.setting(), Some("nats.tls"));
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact_url("nats://u:pw@h:4222"), "nats://***@h:4222");
        assert_eq!(
            redact_url("tls://tok@a:1,nats://b:2"),
            "tls://***@a:1,nats://b:2"
        );
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn url_credentials_become_settings() {
        let (url, method) = split_url_credentials("nats://u:pw@h:1,nats://h2:2");
        assert_eq!(url, "nats://h:1,nats://h2:2");
        assert_eq!(
            method,
            Some(Method::UserPassword {
                user: "u".into(),
                password: Secret::new("pw")
            })
        );
        let (url, method) = split_url_credentials("tls://tok@h:1");
        assert_eq!(url, "tls://h:1");
        assert_eq!(method, Some(Method::Token(Secret::new("tok"))));
        assert_eq!(
            split_url_credentials("nats://h:1"),
            ("nats://h:1".to_string(), None)
        );
    }
}
