//! The wire contract checked from outside, in another language: the Python
//! suite in `conformance/` (pytest and nats-py, written against PROTOCOL.md
//! and the JSON Schemas alone) runs in managed mode against this build's
//! `jetsource run` and the harness's nats-server, once without a subject
//! prefix and once under `acme.shop`. Its known defects are strict xfails,
//! so it passes now and fails when a fix lands without its marker going.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Every Python package the suite runs with, pinned.
const REQUIREMENTS: &str = include_str!("../conformance/requirements.txt");

/// The pinned packages a pip install must have left: `(name, version)` of
/// every requirement without an environment marker (those with one, for
/// older Pythons only, are pip's to decide).
fn pins() -> Vec<(&'static str, &'static str)> {
    REQUIREMENTS
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty() && !line.contains(';'))
        .filter_map(|line| line.split_once("=="))
        .collect()
}

/// Project-local copies of the suite's pinned packages under
/// `<tools>/conformance`, installed with pip when any is missing; parallel
/// callers wait on a lock file.
fn conformance_packages() -> PathBuf {
    let tools = jetsource_test_server::tools_dir();
    let target = tools.join("conformance");
    // pip names each installed package's folder `<name>-<version>.dist-info`,
    // with `-` in the name as `_`.
    let markers: Vec<PathBuf> = pins()
        .into_iter()
        .map(|(name, version)| {
            target.join(format!("{}-{version}.dist-info", name.replace('-', "_")))
        })
        .collect();
    assert!(
        markers.len() >= 5,
        "no pins in conformance/requirements.txt"
    );
    let installed = || markers.iter().all(|m| m.is_dir());
    if installed() {
        return target;
    }
    std::fs::create_dir_all(&tools).expect("the tools folder");
    let lock = File::create(tools.join(".conformance-install.lock")).expect("the install lock");
    lock.lock().expect("locking the install lock");
    if installed() {
        return target;
    }
    let requirements = repository().join("conformance/requirements.txt");
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--upgrade",
            "--target",
        ])
        .arg(&target)
        .arg("-r")
        .arg(&requirements)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "installing {} into {}: {}",
        requirements.display(),
        target.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        installed(),
        "pip left a pinned package out of {}",
        target.display()
    );
    target
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One run of the suite in managed mode, with `args` after the binaries.
fn run_suite(packages: &Path, args: &[&str]) -> Output {
    Command::new("python3")
        .args(["-m", "pytest", "conformance", "-p", "no:cacheprovider"])
        .arg("--jetsource-bin")
        .arg(env!("CARGO_BIN_EXE_jetsource"))
        .arg("--nats-server-bin")
        .arg(&jetsource_test_server::binary().path)
        .args(args)
        .current_dir(repository())
        .env("PYTHONPATH", packages)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs")
}

/// Runs the suite and fails with its whole output unless pytest exits 0
/// having run tests (exit 5 would be none collected).
fn suite_passes(args: &[&str]) {
    let packages = conformance_packages();
    let out = run_suite(&packages, args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        out.status.success() && summary.contains(" passed"),
        "the conformance suite {args:?} exited {:?}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
        out.status.code()
    );
    // The summary on the test's own output, for `--nocapture`.
    println!("conformance {args:?}: {summary}");
}

#[test]
fn the_conformance_suite_passes_against_this_build() {
    suite_passes(&[]);
}

#[test]
fn the_conformance_suite_passes_under_a_subject_prefix() {
    suite_passes(&["--subject-prefix", "acme.shop"]);
}
