//! PostgreSQL for the tests: a fresh database per test ([`TestDb`]), on the
//! first server that answers:
//!
//! 1. `JETSOURCE_TEST_POSTGRES_URL` (a server URL; its database is where
//!    the test databases are created from; `private` skips to 3);
//! 2. `127.0.0.1:5432` with trust authentication, as user `postgres`, then
//!    as `root`;
//! 3. a private cluster this test binary starts with the binaries of
//!    Debian's `postgresql` package (`/usr/lib/postgresql/<v>/bin`),
//!    installed with `apt-get` first when they are missing and the tests
//!    run as root. It runs as the `postgres` user (or `nobody`) through
//!    `runuser` when the tests run as root, on a free loopback port, with
//!    trust authentication and without fsync, and is stopped and removed
//!    when the test binary exits (it watches the pipe the binary holds).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One test's own database, dropped with it.
pub struct TestDb {
    admin: String,
    name: String,
    url: String,
}

impl TestDb {
    /// A new, empty database on the test server.
    pub async fn new() -> TestDb {
        let admin = server_url().to_string();
        let name = format!("jetsource_test_{}", uuid::Uuid::new_v4().simple());
        let client = pg_connect(&admin).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let url = with_database(&admin, &name);
        TestDb { admin, name, url }
    }

    /// Its URL, `postgres://user@host:port/<database>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection to it.
    pub async fn client(&self) -> tokio_postgres::Client {
        pg_connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which must not block on
        // itself: the database is dropped from a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("test database {} was not dropped", self.name);
        }
    }
}

/// A connection to `url`, driven on the current runtime.
pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{database}")
}

/// The server the tests use, found or started once per test binary.
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match find_or_start() {
        Ok(url) => {
            eprintln!("PostgreSQL for the tests: {url}");
            url
        }
        Err(e) => panic!("no PostgreSQL for the tests: {e}"),
    })
}

fn find_or_start() -> Result<String, String> {
    let asked = std::env::var("JETSOURCE_TEST_POSTGRES_URL").unwrap_or_default();
    if asked == "private" {
        let bin = match binaries() {
            Some(bin) => bin,
            None => {
                install()?;
                binaries().ok_or("the postgresql package installed no initdb")?
            }
        };
        return start_private(&bin);
    }
    if let Ok(url) = std::env::var("JETSOURCE_TEST_POSTGRES_URL") {
        if !url.is_empty() {
            return answers(&url)
                .then_some(url.clone())
                .ok_or_else(|| format!("JETSOURCE_TEST_POSTGRES_URL={url} does not answer"));
        }
    }
    for user in ["postgres", "root"] {
        let url = format!("postgres://{user}@127.0.0.1:5432/postgres");
        if answers(&url) {
            return Ok(url);
        }
    }
    let bin = match binaries() {
        Some(bin) => bin,
        None => {
            install()?;
            // The package may have started a cluster of its own.
            let url = "postgres://postgres@127.0.0.1:5432/postgres".to_string();
            if answers(&url) {
                return Ok(url);
            }
            binaries().ok_or("the postgresql package installed no initdb")?
        }
    };
    start_private(&bin)
}

/// True when a trust-authenticated session at `url` opens.
fn answers(url: &str) -> bool {
    let url = url.to_string();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return false;
        };
        runtime.block_on(async move {
            let connecting = tokio_postgres::connect(&url, tokio_postgres::NoTls);
            match tokio::time::timeout(Duration::from_secs(5), connecting).await {
                Ok(Ok((client, connection))) => {
                    tokio::spawn(connection);
                    client.simple_query("SELECT 1").await.is_ok()
                }
                _ => false,
            }
        })
    })
    .join()
    .unwrap_or(false)
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs Debian's `postgresql` package (as root only).
fn install() -> Result<(), String> {
    if !is_root() {
        return Err("no PostgreSQL server answers and its binaries are missing \
                    (install the postgresql package, or set JETSOURCE_TEST_POSTGRES_URL)"
            .into());
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let package = ["install", "-y", "--no-install-recommends", "postgresql"];
    if apt(&package) || (apt(&["update"]) && apt(&package)) {
        Ok(())
    } else {
        Err("apt-get could not install postgresql".into())
    }
}

/// The user the private cluster runs as when the tests run as root
/// (PostgreSQL refuses to run as root).
fn cluster_user() -> Option<String> {
    if !is_root() {
        return None;
    }
    let exists = |user: &str| {
        Command::new("id")
            .arg(user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    Some(
        if exists("postgres") {
            "postgres"
        } else {
            "nobody"
        }
        .to_string(),
    )
}

/// `program args…`, as `user` when there is one.
fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Keeps the private cluster's watch pipe open while the binary runs.
static WATCH: Mutex<Vec<std::process::ChildStdin>> = Mutex::new(Vec::new());

fn start_private(bin: &Path) -> Result<String, String> {
    let user = cluster_user();
    let dir = tempfile::Builder::new()
        .prefix("jetsource-pg-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?
        .keep();
    if let Some(user) = &user {
        let chown = Command::new("chown")
            .args(["-R", user])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !chown {
            return Err(format!("could not give {} to {user}", dir.display()));
        }
    }
    let data = dir.join("data");
    let init = as_user(user.as_deref(), &bin.join("initdb"))
        .args([
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "-D",
        ])
        .arg(&data)
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !init.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    let port = jetsource_test_server::free_port();
    // The shell stops the server and removes its files when the pipe
    // from this binary closes, however the binary ends.
    let script = r#"postgres="$1"; data="$2"; dir="$3"; port="$4"
"$postgres" -D "$data" -p "$port" -k "$dir" -c listen_addresses=127.0.0.1 \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
  >"$dir/log" 2>&1 &
pid=$!
read _ignored
kill -INT "$pid"; wait "$pid"; rm -rf "$dir""#;
    let mut watcher = as_user(user.as_deref(), Path::new("/bin/sh"))
        .args(["-c", script, "sh"])
        .arg(bin.join("postgres"))
        .arg(&data)
        .arg(&dir)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("postgres: {e}"))?;
    if let Some(stdin) = watcher.stdin.take() {
        WATCH.lock().unwrap_or_else(|p| p.into_inner()).push(stdin);
    }
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        if answers(&url) {
            return Ok(url);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    if let Some(mut stdin) = WATCH.lock().unwrap_or_else(|p| p.into_inner()).pop() {
        let _ = stdin.write_all(b"\n");
    }
    Err(format!("the private cluster did not start: {log}"))
}
