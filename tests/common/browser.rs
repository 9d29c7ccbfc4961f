//! A real headless Chromium driven over WebDriver (chromedriver), from
//! Debian's `chromium` and `chromium-driver` packages. Installed with
//! apt-get when missing (as `.ci/run` does); a test that needs it fails,
//! naming what is missing, when it cannot be had: it never skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// chromedriver and the session it serves; chromedriver is killed on drop.
pub struct Browser {
    driver: Child,
    /// The WebDriver session.
    pub client: fantoccini::Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// chromedriver and chromium, installed from Debian's packages if need be.
fn binaries() -> (PathBuf, PathBuf) {
    let found = || Some((on_path("chromedriver")?, on_path("chromium")?));
    if let Some(found) = found() {
        return found;
    }
    let installed = on_path("apt-get").is_some()
        && run("apt-get", &["update", "-qq"])
        && run(
            "apt-get",
            &["install", "-y", "-qq", "chromium", "chromium-driver"],
        );
    found().unwrap_or_else(|| {
        panic!(
            "the console's browser test needs Debian's chromium and chromium-driver \
             (apt-get install -y chromium chromium-driver); installing them {}",
            if installed {
                "succeeded but they are not on PATH"
            } else {
                "failed"
            }
        )
    })
}

/// Starts chromedriver on a free port and opens a headless session.
pub async fn browser() -> Browser {
    let (driver, chromium) = binaries();
    let port = super::free_port();
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", driver.display()));
    let mut driver = Browser::guard(child);
    let url = format!("http://127.0.0.1:{port}");
    let client = super::eventually("chromedriver answering", super::DEADLINE, || async {
        session(&url, &chromium).await.ok()
    })
    .await;
    driver.client = Some(client);
    driver.into_browser()
}

async fn session(url: &str, chromium: &Path) -> Result<fantoccini::Client, String> {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    fantoccini::ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(url)
        .await
        .map_err(|e| e.to_string())
}

/// chromedriver, killed on drop until the session is open.
struct Guard {
    child: Option<Child>,
    client: Option<fantoccini::Client>,
}

impl Browser {
    fn guard(child: Child) -> Guard {
        Guard {
            child: Some(child),
            client: None,
        }
    }
}

impl Guard {
    fn into_browser(mut self) -> Browser {
        Browser {
            driver: self.child.take().expect("chromedriver"),
            client: self.client.take().expect("a session"),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
