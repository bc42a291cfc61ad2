//! The web console in a real browser: headless Chromium, driven by Selenium
//! (`tests/console/console_test.py`), against a real server with an auth token.
//!
//! Needs Debian's `chromium` and `chromium-driver` and PyPI's `selenium` (`.ci/run` installs
//! them). Without them the test says so and passes, except under CI, where it fails: CI is
//! where the console is proven. The screenshot the script takes is kept in Cargo's temporary
//! directory for integration tests, and its path printed.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::json;
use support::{insert_as, ksql_as, pull_until_as, Server};

const TOKEN: &str = "console-s3cret";

/// What is missing to drive a browser, if anything.
fn missing_browser() -> Option<String> {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} (apt install chromium chromium-driver)"));
        }
    }
    let selenium = Command::new("python3")
        .args(["-c", "import selenium"])
        .status();
    if !matches!(selenium, Ok(s) if s.success()) {
        return Some("python3's selenium (pip install selenium)".into());
    }
    None
}

#[test]
fn the_console_runs_statements_and_shows_rows_as_they_arrive_in_chromium() {
    if let Some(missing) = missing_browser() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must test the console in a browser, but this machine lacks {missing}"
        );
        eprintln!("skipped: no browser to drive, this machine lacks {missing}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--auth-token", TOKEN]);
    let url = server.url.clone();
    ksql_as(
        &url,
        "CREATE STREAM events (k VARCHAR KEY, v BIGINT) \
             WITH (kafka_topic='events', partitions=1, value_format='JSON'); \
         CREATE TABLE counts AS SELECT k, COUNT(*) AS n FROM events GROUP BY k EMIT CHANGES;",
        Some(TOKEN),
    );
    let acks = insert_as(
        &url,
        "EVENTS",
        &[
            json!({"K": "a", "V": 1}),
            json!({"K": "b", "V": 2}),
            json!({"K": "a", "V": 3}),
        ],
        Some(TOKEN),
    );
    assert!(acks.iter().all(|a| a["status"] == "ok"), "{acks:?}");
    // The page's pull query expects the table to have caught up.
    pull_until_as(
        &url,
        "SELECT * FROM counts WHERE k = 'a';",
        Some(TOKEN),
        |rows| rows.first().is_some_and(|r| r[1] == 2),
    );

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/console_test.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&url)
        .arg(TOKEN)
        .arg(&screenshot)
        .output()
        .expect("python3 runs");
    eprintln!("screenshot of the console: {}", screenshot.display());
    assert!(
        out.status.success(),
        "the console failed in Chromium:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        screenshot.metadata().unwrap().len() > 10_000,
        "an empty screenshot"
    );
    server.stop();
}
