//! Fidelity: real clients (curl, swaks, dig, sipsak, tftp-hpa, NTPsec's ntpdig, telnet driven
//! by pexpect) complete their normal exchanges, and `nmap -sV` names the imitated products.
//! A missing client skips its test with a note, unless `APIARY_REQUIRE_SERVICES=1`.

use std::process::{Command, Output};
use std::time::Duration;

use apiary_event::{Event, Kind, Transport};
use apiary_pot::Limits;

use crate::support::{TestPot, service, start};

/// Whether `tool` is installed; absent tools skip the test (or fail it in CI).
#[allow(clippy::print_stderr)]
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("APIARY_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "{tool} is required (APIARY_REQUIRE_SERVICES=1)"
        );
        eprintln!("skipping: {tool} not installed");
    }
    found
}

async fn run(cmd: &str, args: Vec<String>) -> Output {
    let cmd = cmd.to_owned();
    tokio::task::spawn_blocking(move || Command::new(&cmd).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn generous() -> Limits {
    Limits {
        new_connections_per_sec: 10_000.0,
        new_connections_burst: 10_000.0,
        max_connections_per_ip: 1000,
        udp_replies_per_sec: 1000.0,
        udp_replies_burst: 1000.0,
        ..Limits::default()
    }
}

fn count(events: &[Event], kind: &Kind) -> usize {
    events.iter().filter(|e| &e.kind == kind).count()
}

async fn settle(pot: &TestPot) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = pot;
}

#[tokio::test]
async fn curl_gets_pages_posts_a_login_and_reads_elasticsearch() {
    if !have("curl") {
        return;
    }
    let pot = start(
        &[service("HTTP", "web", &["tcp:0"]), service("ES", "elasticsearch", &["tcp:0"])],
        generous(),
        "127.0.0.1",
    );
    let web = format!("http://{}", pot.handle.addr("HTTP", Transport::Tcp).unwrap());
    let o = run("curl", args(&["-s", "-i", &format!("{web}/robots.txt")])).await;
    let t = text(&o);
    assert!(o.status.success() && t.starts_with("HTTP/1.1 200 OK"), "{t}");
    assert!(t.contains("Server: Apache/2.4.10 (Debian)"));
    let login = format!("{web}/wp-login.php");
    let o = run("curl", args(&["-s", "-d", "log=admin&pwd=letmein", &login])).await;
    assert!(text(&o).contains("The password you entered for the username"));
    let o =
        run("curl", args(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("{web}/x")]))
            .await;
    assert_eq!(text(&o), "404");
    let es = format!("http://{}/", pot.handle.addr("ES", Transport::Tcp).unwrap());
    let o = run("curl", args(&["-s", &es])).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"]["number"], "1.4.1");
    settle(&pot).await;
    let events = pot.finish().await;
    assert_eq!(count(&events, &Kind::HTTP_REQUEST), 4);
    assert_eq!(count(&events, &Kind::AUTH_ATTEMPT), 1);
}

#[tokio::test]
async fn swaks_delivers_a_message_and_its_auth_is_captured() {
    if !have("swaks") {
        return;
    }
    let pot = start(&[service("SMTP", "smtp", &["tcp:0"])], generous(), "127.0.0.1");
    let port = pot.handle.addr("SMTP", Transport::Tcp).unwrap().port().to_string();
    let base = [
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--to",
        "victim@example.org",
        "--from",
        "spam@example.net",
    ];
    let o = run("swaks", args(&base)).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("250 OK id="));
    let mut with_auth = args(&base);
    with_auth.extend(args(&[
        "--auth",
        "LOGIN",
        "--auth-user",
        "admin",
        "--auth-password",
        "hunter2",
    ]));
    let o = run("swaks", with_auth).await;
    assert!(text(&o).contains("535 Incorrect authentication data"), "{}", text(&o));
    settle(&pot).await;
    let events = pot.finish().await;
    assert_eq!(count(&events, &Kind::new("smtp.message")), 1);
    let auth = events.iter().find(|e| e.kind == Kind::AUTH_ATTEMPT).unwrap().auth.clone().unwrap();
    assert_eq!(
        (auth.username.as_deref(), auth.password.as_deref()),
        (Some("admin"), Some("hunter2"))
    );
}

#[tokio::test]
async fn dig_resolves_over_udp_and_tcp() {
    if !have("dig") {
        return;
    }
    let pot = start(&[service("DNS", "dns", &["udp:0", "tcp:0"])], generous(), "127.0.0.1");
    let udp = pot.handle.addr("DNS", Transport::Udp).unwrap().port().to_string();
    let tcp = pot.handle.addr("DNS", Transport::Tcp).unwrap().port().to_string();
    let o = run(
        "dig",
        args(&["@127.0.0.1", "-p", &udp, "+tries=1", "+time=2", "+short", "www.example.com", "A"]),
    )
    .await;
    let ip: std::net::Ipv4Addr = text(&o).trim().parse().unwrap();
    let o = run(
        "dig",
        args(&[
            "@127.0.0.1",
            "-p",
            &tcp,
            "+tcp",
            "+tries=1",
            "+time=2",
            "+short",
            "www.example.com",
            "A",
        ]),
    )
    .await;
    assert_eq!(text(&o).trim().parse::<std::net::Ipv4Addr>().unwrap(), ip, "answers are stable");
    // ANY over UDP (dig asks ANY over TCP unless told +notcp): the RFC 8482 answer, one
    // small HINFO, no larger than dig's query with its EDNS cookie.
    let o = run(
        "dig",
        args(&["@127.0.0.1", "-p", &udp, "+notcp", "+tries=1", "+time=2", "example.com", "ANY"]),
    )
    .await;
    let t = text(&o);
    assert!(
        t.contains("status: NOERROR") && t.contains("ANSWER: 1,") && t.contains("RFC8482"),
        "{t}"
    );
    assert!(t.contains("(UDP)") && t.contains("MSG SIZE  rcvd: 50"), "{t}");
    let o = run(
        "dig",
        args(&["@127.0.0.1", "-p", &tcp, "+tcp", "+tries=1", "+time=2", "example.com", "ANY"]),
    )
    .await;
    let t = text(&o);
    assert!(t.contains("ANSWER: 1,") && t.contains("RFC8482") && t.contains("(TCP)"), "{t}");
    let o = run(
        "dig",
        args(&[
            "@127.0.0.1",
            "-p",
            &udp,
            "+tries=1",
            "+time=2",
            "+short",
            "version.bind",
            "TXT",
            "CH",
        ]),
    )
    .await;
    assert_eq!(text(&o).trim(), "\"8.2.2-P5\"");
    let events = pot.finish().await;
    let any_udp = events.iter().filter(|e| {
        e.transport == Some(Transport::Udp) && e.dns.as_ref().is_some_and(|d| d.qtype == "ANY")
    });
    assert_eq!(any_udp.count(), 1, "the UDP ANY query is recorded");
}

#[tokio::test]
async fn plain_dig_any_works_when_udp_and_tcp_share_the_port() {
    if !have("dig") {
        return;
    }
    // As deployed (DNS on udp:53 and tcp:53), a plain `dig ANY`, which dig sends over TCP,
    // reaches the same port number. Find a number free on both transports.
    let port = loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            break p;
        }
    };
    let ports = [format!("udp:{port}"), format!("tcp:{port}")];
    let pot = start(&[service("DNS", "dns", &[&ports[0], &ports[1]])], generous(), "127.0.0.1");
    let p = port.to_string();
    let o =
        run("dig", args(&["@127.0.0.1", "-p", &p, "+tries=1", "+time=2", "example.com", "ANY"]))
            .await;
    let t = text(&o);
    assert!(t.contains("status: NOERROR") && t.contains("RFC8482"), "{t}");
    let o = run("dig", args(&["@127.0.0.1", "-p", &p, "+tries=1", "+time=2", "example.com", "MX"]))
        .await;
    let t = text(&o);
    assert!(t.contains("MX\t10 mail.example.com.") && t.contains("(UDP)"), "{t}");
    pot.finish().await;
}

#[tokio::test]
async fn sipsak_gets_200_for_options() {
    if !have("sipsak") {
        return;
    }
    let pot = start(&[service("SIP", "sip", &["udp:0"])], generous(), "127.0.0.1");
    let port = pot.handle.addr("SIP", Transport::Udp).unwrap().port();
    let o = run("sipsak", args(&["-vv", "-s", &format!("sip:100@127.0.0.1:{port}")])).await;
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("200 OK"), "{t}");
    let events = pot.finish().await;
    assert_eq!(count(&events, &Kind::new("sip.request")), 1);
}

#[tokio::test]
async fn tftp_hpa_gets_a_decoy_and_puts_a_file() {
    if !have("tftp") {
        return;
    }
    let pot = start(&[service("TFTP", "tftp", &["udp:0"])], generous(), "127.0.0.1");
    let port = pot.handle.addr("TFTP", Transport::Udp).unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("creds.txt");
    let o = run(
        "tftp",
        args(&[
            "-m",
            "netascii",
            "127.0.0.1",
            &port,
            "-c",
            "get",
            "creds.txt",
            got.to_str().unwrap(),
        ]),
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read_to_string(&got).unwrap().contains("aws_access_key_id"));
    let up = dir.path().join("payload.sh");
    std::fs::write(&up, "#!/bin/sh\n".repeat(300)).unwrap();
    let o = run(
        "tftp",
        args(&["-m", "octet", "127.0.0.1", &port, "-c", "put", up.to_str().unwrap(), "payload.sh"]),
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    for _ in 0..100 {
        if count(&pot.events.snapshot(), &Kind::FILE_UPLOAD) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = pot.finish().await;
    let d = events.iter().find(|e| e.kind == Kind::FILE_UPLOAD).unwrap().download.clone().unwrap();
    assert_eq!(d.size, Some(3000));
}

#[tokio::test]
async fn ntpdig_sets_nothing_but_reads_the_time() {
    let script = std::path::Path::new("/usr/bin/ntpdig");
    if !have("ntpdig") || !script.exists() {
        return;
    }
    let pot = start(&[service("NTP", "ntp", &["udp:0"])], generous(), "127.0.0.1");
    let port = pot.handle.addr("NTP", Transport::Udp).unwrap().port();
    // ntpdig has no port option: load its code and call its query function with one.
    let py = format!(
        "src = open('/usr/bin/ntpdig').read().split(\"if __name__ == '__main__':\")[0]\n\
         exec(src)\n\
         af, debug, gap, authkey, keyid, passwd = socket.AF_INET, 0, 0.05, None, None, None\n\
         log, credentials, server = (lambda m: None), None, '127.0.0.1'\n\
         af = socket.AF_INET\n\
         pkts = queryhost('127.0.0.1', False, timeout=3, port={port})\n\
         print(len(pkts), pkts[0].stratum if pkts else -1)\n"
    );
    let o = run("/usr/bin/python3", args(&["-c", &py])).await;
    assert_eq!(text(&o).trim(), "1 2", "{}", text(&o));
    pot.finish().await;
}

#[tokio::test]
async fn telnet_client_logs_in_and_runs_commands() {
    let ok = have("telnet")
        && Command::new("/usr/bin/python3")
            .args(["-c", "import pexpect"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("APIARY_REQUIRE_SERVICES").as_deref() != Ok("1"), "python3-pexpect");
        return;
    }
    let pot = start(&[service("Telnet", "telnet", &["tcp:0"])], generous(), "127.0.0.1");
    let port = pot.handle.addr("Telnet", Transport::Tcp).unwrap().port();
    let py = format!(
        "import pexpect\n\
         c = pexpect.spawn('telnet 127.0.0.1 {port}', timeout=10)\n\
         c.expect('login: ')\n\
         c.sendline('root')\n\
         c.expect('Password: ')\n\
         c.sendline('admin')\n\
         c.expect('# ')\n\
         c.sendline('cat /etc/os-release; busybox ECCHI')\n\
         c.expect('ECCHI: applet not found')\n\
         c.expect('# ')\n\
         c.sendline('exit')\n\
         c.expect(pexpect.EOF)\n\
         print('done')\n"
    );
    let o = run("/usr/bin/python3", args(&["-c", &py])).await;
    assert!(text(&o).trim_end().ends_with("done"), "{}", text(&o));
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    assert!(events.iter().any(|e| e.auth.as_ref().is_some_and(|a| a.success)));
}

#[tokio::test]
async fn nmap_identifies_the_imitated_products() {
    if !have("nmap") {
        return;
    }
    let pot = start(
        &[
            service("HTTP", "web", &["tcp:0"]),
            service("SMTP", "smtp", &["tcp:0"]),
            service("ES", "elasticsearch", &["tcp:0"]),
            service("Telnet", "telnet", &["tcp:0"]),
        ],
        generous(),
        "127.0.0.1",
    );
    let port = |n: &str| pot.handle.addr(n, Transport::Tcp).unwrap().port();
    let ports = format!("{},{},{},{}", port("HTTP"), port("SMTP"), port("ES"), port("Telnet"));
    let o = run(
        "nmap",
        args(&[
            "-sV",
            "-Pn",
            "-n",
            "--version-intensity",
            "5",
            "-p",
            &ports,
            "127.0.0.1",
            "-oG",
            "-",
        ]),
    )
    .await;
    let t = text(&o);
    let line = |p: u16| {
        let at = t.find(&format!("{p}/open/tcp//")).unwrap_or_else(|| panic!("port {p}: {t}"));
        t.get(at..).unwrap().split("/, ").next().unwrap().to_owned()
    };
    assert!(line(port("HTTP")).contains("Apache httpd 2.4.10"), "{t}");
    assert!(line(port("SMTP")).contains("Exim smtpd 4.80"), "{t}");
    assert!(line(port("ES")).contains("Elasticsearch"), "{t}");
    assert!(line(port("Telnet")).contains("telnetd"), "{t}");
    pot.finish().await;
}
