//! Syslog sink against a real rsyslog (Debian package `rsyslog`) started by the test with its
//! own configuration on free ports: UDP, TCP with octet counting, and TLS (gtls driver,
//! package `rsyslog-gnutls`).

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn rsyslog_receives_rfc5424_over_udp_tcp_and_tls() {
    if std::process::Command::new("rsyslogd").arg("-v").output().is_err() {
        if std::env::var("APIARY_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            panic!("rsyslogd is not installed");
        }
        eprintln!("note: rsyslogd not installed; test skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (udp, tcp, tls) = (free_port(), free_port(), free_port());
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let out = dir.path().join("out.log");
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
input(type="imtcp" address="127.0.0.1" port="{tls}" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon" streamDriver.CAFile="{cert}" streamDriver.CertFile="{cert}" streamDriver.KeyFile="{key}")
template(name="t" type="string" string="%app-name%|%msgid%|%structured-data%|%msg%\n")
*.* action(type="omfile" file="{out}" template="t" flushOnTXEnd="on" asyncWriting="off")
"#,
            work = dir.path().display(),
            out = out.display(),
            cert = cert_pem.display(),
            key = key_pem.display()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.path().join("pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", tls)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (transport, port, n) in [("udp", udp, 50u32), ("tcp", tcp, 300), ("tls", tls, 300)] {
        let cfg = logger(&format!(
            "[[logger]]\ntype = \"syslog\"\nname = \"s-{transport}\"\nhost = \"127.0.0.1\"\nport = {port}\ntransport = \"{transport}\"\nca_file = \"{}\"\n",
            cert_pem.display()
        ));
        let p = start(&cfg, dir.path());
        let em = p.emitter();
        for i in 0..n {
            let mut e = event(i);
            e.fields.insert("transport".into(), transport.into());
            em.emit(e);
            if transport == "udp" {
                // UDP has no flow control; pace it so the test checks format, not buffers.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        p.shutdown(Duration::from_secs(10)).await;
    }
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines =
            std::fs::read_to_string(&out).unwrap_or_default().lines().map(String::from).collect();
        if lines.len() >= 650 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await.unwrap();
    let mut per = std::collections::BTreeMap::<String, Vec<u64>>::new();
    for l in &lines {
        let mut parts = l.splitn(4, '|');
        let (app, msgid, sd, msg) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert_eq!(app, "apiary");
        assert_eq!(msgid, "session.rx");
        let e = apiary_event::encode::from_json(msg.trim().as_bytes()).unwrap();
        assert_eq!(sd, format!("[apiary@32473 id=\"{}\"]", e.id));
        per.entry(e.fields["transport"].as_str().unwrap().to_owned())
            .or_default()
            .push(e.fields["seq"].as_u64().unwrap());
    }
    assert_eq!(per["tcp"], (0..300).collect::<Vec<u64>>());
    assert_eq!(per["udp"], (0..50).collect::<Vec<u64>>());
    assert_eq!(per.get("tls").cloned().unwrap_or_default(), (0..300).collect::<Vec<u64>>());
}
