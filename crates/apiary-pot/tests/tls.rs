//! TLS on any TCP service: curl and openssl s_client through it, the handshake event (SNI,
//! version, cipher), a certificate like a default install that stays across restarts, and
//! nmap naming the wrapped web server.

use apiary_event::{Event, Kind, Transport};
use apiary_pot::{Limits, ServiceConfig};

use crate::ssh::{have, run};
use crate::support::{service, start};

fn tls(mut s: ServiceConfig, dir: &std::path::Path) -> ServiceConfig {
    let o = &mut s.options;
    o.insert("tls".into(), true.into());
    o.insert("tls_cert".into(), dir.join("snakeoil.pem").display().to_string().into());
    o.insert("tls_key".into(), dir.join("snakeoil.key").display().to_string().into());
    o.insert("tls_hostname".into(), "shop-01.example.net".into());
    s
}

fn handshakes(events: &[Event]) -> Vec<&Event> {
    events.iter().filter(|e| e.kind.as_str() == "tls.handshake").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_s_client_through_tls_with_sni_recorded() {
    if !have(&["curl", "openssl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let services = [
        tls(service("HTTPS", "web", &["tcp:0"]), dir.path()),
        tls(service("MOTDS", "motd", &["tcp:0"]), dir.path()),
    ];
    let pot = start(&services, Limits::default(), "127.0.0.1");
    let web = pot.handle.addr("HTTPS", Transport::Tcp).unwrap().port();
    let motd = pot.handle.addr("MOTDS", Transport::Tcp).unwrap().port();
    let resolve = format!("shop.test:{web}:127.0.0.1");
    let url = format!("https://shop.test:{web}/");
    let o = run(
        ["curl", "-k", "-s", "-i", "--resolve", &resolve, &url].map(String::from).to_vec(),
        None,
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let connect = format!("127.0.0.1:{motd}");
    let o = run(
        ["openssl", "s_client", "-connect", &connect, "-servername", "mail.test", "-ign_eof"]
            .map(String::from)
            .to_vec(),
        None,
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Prototype unit 0001"), "{out}");
    assert!(
        out.contains("subject=CN=shop-01.example.net")
            || out.contains("subject=CN = shop-01.example.net"),
        "{out}"
    );
    // Plain text to a TLS port: recorded, and the session ends.
    let o = run(
        ["curl", "-s", "--max-time", "20", &format!("http://127.0.0.1:{web}/")]
            .map(String::from)
            .to_vec(),
        None,
    )
    .await;
    assert!(!o.status.success());
    pot.wait_for(&Kind::new("tls.handshake"), 3).await;
    let events = pot.finish().await;
    let hs = handshakes(&events);
    let web_hs = hs.iter().find(|e| e.fields.get("sni").is_some_and(|s| s == "shop.test")).unwrap();
    assert_eq!(web_hs.service.as_deref(), Some("HTTPS"));
    assert_eq!(web_hs.fields["version"], "TLSv1_3");
    assert!(web_hs.fields["cipher"].as_str().unwrap().starts_with("TLS13_"));
    assert!(web_hs.fields["alpn"].as_array().unwrap().iter().any(|a| a == "http/1.1"));
    assert!(hs.iter().any(|e| e.fields.get("sni").is_some_and(|s| s == "mail.test")));
    assert!(
        hs.iter().any(|e| e.message.as_deref().unwrap_or("").starts_with("no TLS client hello"))
    );
    // Requests inside TLS are recorded as usual.
    assert!(events.iter().any(|e| e.kind.as_str() == "http.request" || e.kind == Kind::SESSION_RX));

    // The certificate: a default install's shape, nothing naming apiary, kept on restart.
    let pem = std::fs::read_to_string(dir.path().join("snakeoil.pem")).unwrap();
    let text = run(
        ["openssl", "x509", "-noout", "-subject", "-issuer", "-ext", "subjectAltName", "-in"]
            .map(String::from)
            .into_iter()
            .chain([dir.path().join("snakeoil.pem").display().to_string()])
            .collect(),
        None,
    )
    .await;
    let text = String::from_utf8_lossy(&text.stdout).to_lowercase();
    assert!(text.contains("subject=cn") && text.contains("shop-01.example.net"), "{text}");
    assert!(text.contains("dns:shop-01.example.net") && !text.contains("apiary"), "{text}");
    let again = start(&services, Limits::default(), "127.0.0.1");
    drop(again.finish().await);
    assert_eq!(std::fs::read_to_string(dir.path().join("snakeoil.pem")).unwrap(), pem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmap_sees_ssl_http() {
    if !have(&["nmap"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pot = start(
        &[tls(service("HTTPS", "web", &["tcp:0"]), dir.path())],
        Limits::default(),
        "127.0.0.1",
    );
    let port = pot.handle.addr("HTTPS", Transport::Tcp).unwrap().port().to_string();
    let o = run(
        ["nmap", "-sV", "-Pn", "-n", "-p", &port, "127.0.0.1"].map(String::from).to_vec(),
        None,
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().find(|l| l.starts_with(&format!("{port}/tcp"))).unwrap_or_default();
    assert!(line.contains("ssl/http") || line.contains("https"), "{out}");
    assert!(line.contains("Apache"), "{out}");
    drop(pot.finish().await);
}

#[test]
fn config_check_names_tls_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let udp = tls(service("U", "echo", &["udp:0"]), dir.path());
    let errs = apiary_pot::check_services(&[udp]);
    assert!(errs.iter().any(|e| e.to_string().contains("tls needs TCP")), "{errs:?}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let mut bad = tls(service("B", "echo", &["tcp:0"]), dir.path());
    bad.options.insert("tls_cert".into(), junk.display().to_string().into());
    bad.options.insert("tls_key".into(), junk.display().to_string().into());
    let errs = apiary_pot::check_services(&[bad]);
    assert!(errs.iter().any(|e| e.to_string().contains("junk.pem")), "{errs:?}");
    // A good pair generated on first use passes.
    let ok = tls(service("O", "echo", &["tcp:0"]), dir.path());
    assert!(apiary_pot::check_services(&[ok]).is_empty());
}
