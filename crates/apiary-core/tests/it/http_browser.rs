//! The dashboard in headless Chromium: `tests/browser/dashboard.mjs` (playwright-core) against
//! a real `apiary up`, attacked with curl. Skipped with a note when chromium, node or the npm
//! packages are missing, unless APIARY_REQUIRE_SERVICES=1.
//!
//! Screenshots go to `$APIARY_SCREENSHOTS` (the committed ones in `docs/img/dashboard/` were
//! made with `APIARY_SCREENSHOTS=$PWD/docs/img/dashboard`), else to the target directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use apiary_core::up::{UpConfig, run};
use apiary_event::Transport;
use apiary_pot::ServiceConfig;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Whether the browser test can run; a missing piece fails the test when services are
/// required.
fn tools_present() -> bool {
    let chromium = std::env::var("APIARY_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing: Vec<&str> = [
        (!Path::new(&chromium).exists()).then_some("chromium (apt-get install -y chromium)"),
        (!node_ok).then_some("node"),
        (!browser_dir().join("node_modules/playwright-core").exists())
            .then_some("playwright-core (npm ci in crates/apiary-core/tests/browser)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("APIARY_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "browser test needs {missing:?} (APIARY_REQUIRE_SERVICES=1)"
    );
    eprintln!("note: skipping the dashboard browser test; missing {missing:?}");
    false
}

fn svc(name: &str, plugin: &str) -> ServiceConfig {
    ServiceConfig {
        name: name.into(),
        plugin: plugin.into(),
        ports: vec!["tcp:0".parse().unwrap()],
        bind: None,
        enabled: true,
        description: None,
        options: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let geoip = dir.path().join("GeoLite2-City.mmdb");
    crate::mmdb::write(&geoip, "GeoLite2-City", &crate::mmdb::world_entries(), 1_700_000_000);
    let up = run(UpConfig {
        data_dir: dir.path().to_path_buf(),
        core_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        pot_bind: vec!["127.0.0.1".parse().unwrap()],
        services: Some(vec![svc("web", "web"), svc("smtp", "smtp")]),
        geoip: Some(geoip),
        ..UpConfig::default()
    })
    .await
    .unwrap();
    // Attacks from the test GeoIP world (loopback, where the real attacks come from, has no
    // place), so the overview has countries and a map to show.
    let located = crate::mmdb::located_events(&crate::mmdb::world_entries(), 400);
    up.core().store().insert_events(&located).await.unwrap();
    let addr = |name: &str| {
        up.listeners
            .iter()
            .find(|l| l.service == name && l.transport == Transport::Tcp)
            .map(|l| l.addr.to_string())
            .unwrap()
    };
    let shots = std::env::var("APIARY_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots"));
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(browser_dir().join("dashboard.mjs"))
        .current_dir(browser_dir())
        .env("APIARY_URL", &up.api_url)
        .env("APIARY_TOKEN", &up.token)
        .env("APIARY_WEB_POT", addr("web"))
        .env("APIARY_SMTP_POT", addr("smtp"))
        .env("APIARY_SCREENSHOTS", &shots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("browser test did not finish in 180 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "browser test failed: {stdout}\n{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(summary["problems"], serde_json::json!([]));
    assert!(summary["user"].as_str().unwrap().contains("apiary-up"));
    assert_eq!(summary["map_dots"], serde_json::json!(crate::mmdb::world_entries().len()));
    assert!(summary["countries"].as_str().unwrap().contains("BR"));
    for page in
        ["login", "overview", "live", "search", "session", "nodes", "node", "enroll", "alerts"]
    {
        assert!(shots.join(format!("{page}.png")).exists(), "no screenshot of {page}");
    }
    up.shutdown().await;
}
