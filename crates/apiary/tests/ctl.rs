//! `apiary ctl` and `apiary core user add` against a running Core and node (separate
//! processes): tables and `--json`, every subcommand, roles, paging, the live stream and the
//! errors an operator meets.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::apiary;
use crate::fleet::{Proc, core_toml, enroll, eventually, free_port, node_toml, rt, web_pot};

/// `apiary core user add NAME --role ROLE`; returns the printed token.
fn user_add(core_toml: &Path, name: &str, role: &str) -> String {
    let out = apiary()
        .args(["core", "user", "add", name, "--role", role, "-c"])
        .arg(core_toml)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("API user {name} ({role})")), "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap_or_else(|| panic!("no token in:\n{text}"))
        .to_owned()
}

struct Ctl<'a> {
    core_toml: &'a Path,
    token: String,
}

impl Ctl<'_> {
    /// `apiary ctl ARGS` with the URL from the config file and the token from the environment.
    fn run(&self, args: &[&str]) -> Output {
        apiary()
            .arg("ctl")
            .args(args)
            .arg("-c")
            .arg(self.core_toml)
            .env("APIARY_TOKEN", &self.token)
            .env_remove("APIARY_URL")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "apiary ctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "apiary ctl {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }
}

fn curl(port: u16, tag: &str) {
    let url = format!("http://127.0.0.1:{port}/admin.php?from={tag}");
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "10", "-o", "/dev/null", "-A", "masscan/1.3", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl failed: {out:?}");
}

#[test]
fn ctl_operates_a_running_core() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let (_, core_toml) = core_toml(dir.path(), "127.0.0.1:0", &format!("127.0.0.1:{http}"), "");
    let (secret, ca) = enroll(&core_toml, "hive-1");
    let admin = Ctl { core_toml: &core_toml, token: user_add(&core_toml, "root-op", "admin") };
    let ops = Ctl { core_toml: &core_toml, token: user_add(&core_toml, "ops", "operator") };
    let viewer = Ctl { core_toml: &core_toml, token: user_add(&core_toml, "eyes", "viewer") };
    // A second token with a taken name is refused.
    let dup = apiary()
        .args(["core", "user", "add", "ops", "--role", "viewer", "-c"])
        .arg(&core_toml)
        .output()
        .unwrap();
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("ops"), "{dup:?}");

    let core = Proc::spawn(&["core", "run"], &core_toml);
    let addr = core.wait_line("listening on");
    core.wait_line("API and dashboard:");
    let node = Proc::spawn(&["node", "run"], &node_toml(dir.path(), "hive-1", &addr, &secret, &ca));
    node.wait_line("event socket:");

    // nodes: table and JSON.
    let nodes = rt().block_on(eventually("hive-1 connected", || async {
        let v = viewer.json(&["nodes"]);
        let connected =
            v.as_array()?.iter().any(|n| n["name"] == "hive-1" && n["connected"] == true);
        connected.then_some(v)
    }));
    let id = nodes[0]["id"].as_i64().unwrap();
    let table = viewer.ok(&["nodes"]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("CONNECTED"), "{table}");
    assert!(table.lines().any(|l| l.contains("hive-1") && l.contains("yes")), "{table}");

    // A viewer cannot send commands; the API's reason is shown.
    let err = viewer.fails(&["send", "hive-1", "GetInstalledPots"]);
    assert!(err.contains("403") && err.contains("operator role"), "{err}");
    // A typo fails before anything is queued.
    let err = ops.fails(&["send", "hive-1", "Reboot"]);
    assert!(err.contains("commands: Restart"), "{err}");
    let err = ops.fails(&["pots", "no-such-node"]);
    assert!(err.contains("no node named \"no-such-node\""), "{err}");

    // send: a command by name and one as JSON, followed to the node's answer.
    let out = ops.ok(&["send", "hive-1", "GetInstalledPots"]);
    assert!(out.starts_with("command ") && out.contains("(GetInstalledPots): done"), "{out}");
    let install = serde_json::to_string(&web_pot("web")).unwrap();
    let c = ops.json(&["send", &id.to_string(), &install]);
    assert_eq!(c["status"], "done", "{c}");
    let result = c["result"].as_str().unwrap();
    let port: u16 = result.rsplit(':').next().unwrap().parse().unwrap();
    // --no-wait queues and returns; `command --wait` follows it.
    let queued = ops.json(&["send", "hive-1", "GetPotStatus", "web", "--no-wait"]);
    let cid = queued["id"].as_i64().unwrap().to_string();
    let followed = viewer.ok(&["command", &cid, "--wait", "30s"]);
    assert!(followed.contains("(GetPotStatus web): done"), "{followed}");

    // pots and deploy.
    let pots = viewer.ok(&["pots", "hive-1"]);
    assert!(pots.lines().any(|l| l.contains("web") && l.contains("Running")), "{pots}");
    let all = viewer.json(&["pots"]);
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    let deployed = ops.ok(&["deploy", "hive-1", "web"]);
    assert!(deployed.contains("(DeployPot web): done"), "{deployed}");
    let detail = viewer.ok(&["node", "hive-1"]);
    assert!(detail.contains("latest commands:") && detail.contains("DeployPot web"), "{detail}");

    // The live stream sees the next attack.
    let mut follower = apiary()
        .args(["ctl", "events", "--follow", "--count", "1", "--json", "--kind", "http.request"])
        .arg("-c")
        .arg(&core_toml)
        .env("APIARY_TOKEN", &viewer.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // The stream may start after the first request; attack until the follower reports one.
    let line = loop {
        curl(port, "live");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            break l;
        }
        assert!(follower.try_wait().unwrap().is_none(), "the follower exited early");
    };
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["kind"], "http.request");
    assert_eq!(ev["node"], "hive-1");
    assert!(follower.wait().unwrap().success(), "--count 1 ends the follower");

    // Stored events: filters, table, JSON and paging.
    let evs = rt().block_on(eventually("the attack stored", || async {
        let v = viewer.json(&["events", "--node", "hive-1", "--kind", "http.request"]);
        let list = v["events"].as_array()?.clone();
        (!list.is_empty()).then_some(list)
    }));
    assert!(evs.iter().all(|e| e["kind"] == "http.request" && e["node"] == "hive-1"));
    let table = viewer.ok(&["events", "--src", "127.0.0.1", "--since", "1h"]);
    assert!(table.lines().next().unwrap().starts_with("TIME (UTC)"), "{table}");
    assert!(table.contains("GET /admin.php?from=live"), "{table}");
    let first = viewer.ok(&["events", "--limit", "1"]);
    let cursor = first.lines().last().unwrap().rsplit(' ').next().unwrap().to_owned();
    assert!(first.contains("more with --before"), "{first}");
    let two = viewer.json(&["events", "--limit", "1", "--pages", "2"]);
    let two = two["events"].as_array().unwrap();
    assert_eq!(two.len(), 2);
    let next = viewer.json(&["events", "--limit", "1", "--before", &cursor]);
    assert_eq!(next["events"][0]["id"], two[1]["id"], "paging by cursor");
    let none = viewer.json(&["events", "--kind", "dns.query"]);
    assert_eq!(none["events"].as_array().unwrap().len(), 0);
    assert!(viewer.fails(&["events", "--since", "yesterday"]).contains("400"));

    // Stats.
    let stats = viewer.json(&["stats", "--since", "1h"]);
    assert!(stats["total"].as_i64().unwrap() >= 2, "{stats}");
    assert!(stats["top_sources"].to_string().contains("127.0.0.1"), "{stats}");
    let text = viewer.ok(&["stats", "--since", "1h", "--top", "3"]);
    assert!(text.contains("SOURCE") && text.contains("127.0.0.1"), "{text}");

    // Delete needs admin.
    let err = ops.fails(&["delete", "hive-1"]);
    assert!(err.contains("admin role"), "{err}");
    let out = admin.ok(&["delete", "hive-1"]);
    assert!(out.contains(&format!("deleted node hive-1 (id {id})")), "{out}");
    assert!(!viewer.ok(&["nodes"]).contains("hive-1"));

    // Operator mistakes are explained.
    let no_token = apiary()
        .args(["ctl", "nodes", "-c"])
        .arg(&core_toml)
        .env_remove("APIARY_TOKEN")
        .output()
        .unwrap();
    assert!(!no_token.status.success());
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("no API token"));
    let bad = Ctl { core_toml: &core_toml, token: "apiary_nope".into() };
    assert!(bad.fails(&["nodes"]).contains("401: invalid API token"));
    drop(node);
    drop(core);
}
