//! HTTP sinks against a local axum server that checks each service's documented request
//! format (Splunk HEC, Elasticsearch `_bulk`, Sumo Logic, HoneyDB, Slack, Discord, Telegram,
//! a webhook, X with OAuth 1.0a) and an SMTP reader for e-mail.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiary_sinks::sinks::chat::{OAuth1, percent_encode};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use crate::common::*;

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

#[derive(Clone, Default)]
struct App {
    seen: Seen,
    es_ids: Arc<Mutex<BTreeMap<String, Value>>>,
    port: u16,
}

fn bad(why: &str) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, why.to_owned())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

async fn hec(State(app): State<App>, h: HeaderMap, body: Bytes) -> (StatusCode, String) {
    if header(&h, "authorization") != "Splunk tok" {
        return (StatusCode::UNAUTHORIZED, r#"{"text":"Invalid token","code":4}"#.into());
    }
    for v in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
        let Ok(v) = v else { return bad("not concatenated JSON") };
        let ok = v["time"].is_f64()
            && v["host"].is_string()
            && v["source"] == "apiary"
            && v["sourcetype"] == "_json"
            && v["index"] == "main"
            && v["event"].is_object();
        if !ok {
            return bad("bad HEC envelope");
        }
        app.seen.lock().unwrap().push(("hec".into(), v));
    }
    (StatusCode::OK, r#"{"text":"Success","code":0}"#.into())
}

async fn bulk(State(app): State<App>, h: HeaderMap, body: Bytes) -> (StatusCode, String) {
    if header(&h, "content-type") != "application/x-ndjson" {
        return bad("content-type");
    }
    if header(&h, "authorization") != "Basic ZWxhc3RpYzpwdw==" {
        return (StatusCode::UNAUTHORIZED, "auth".into());
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    if !text.ends_with('\n') {
        return bad("bulk body must end with a newline");
    }
    let lines: Vec<&str> = text.lines().collect();
    if !lines.len().is_multiple_of(2) {
        return bad("odd line count");
    }
    let mut items = Vec::new();
    let mut errors = false;
    let mut ids = app.es_ids.lock().unwrap();
    for pair in lines.chunks(2) {
        let action: Value = serde_json::from_str(pair[0]).unwrap_or_default();
        let doc: Value = serde_json::from_str(pair[1]).unwrap_or_default();
        let (Some(index), Some(id)) =
            (action["create"]["_index"].as_str(), action["create"]["_id"].as_str())
        else {
            return bad("action must be create with _index and _id");
        };
        if index != "honey" || !doc.is_object() {
            return bad("index or doc");
        }
        if ids.contains_key(id) {
            errors = true;
            items.push(json!({"create": {"_id": id, "status": 409, "error": {"type": "version_conflict_engine_exception"}}}));
        } else {
            ids.insert(id.to_owned(), doc);
            items.push(json!({"create": {"_id": id, "status": 201}}));
        }
    }
    (StatusCode::OK, json!({"took": 1, "errors": errors, "items": items}).to_string())
}

async fn sumo(State(app): State<App>, h: HeaderMap, body: Bytes) -> (StatusCode, String) {
    if header(&h, "x-sumo-host") != "edge" || header(&h, "x-sumo-category") != "honeypot/apiary" {
        return bad("sumo headers");
    }
    for line in String::from_utf8_lossy(&body).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { return bad("line") };
        app.seen.lock().unwrap().push(("sumo".into(), v));
    }
    (StatusCode::OK, String::new())
}

async fn honeydb_hmac(h: HeaderMap) -> (StatusCode, String) {
    if header(&h, "x-honeydb-apiid") != "id" || header(&h, "x-honeydb-apikey") != "key" {
        return (StatusCode::OK, r#"{"status":"Invalid credentials"}"#.into());
    }
    (StatusCode::OK, r#"{"status":"Success","hmac_hash":"hh","hmac_message":"mm"}"#.into())
}

async fn honeydb_post(State(app): State<App>, body: Bytes) -> (StatusCode, String) {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    for k in [
        "date",
        "time",
        "date_time",
        "millisecond",
        "session",
        "protocol",
        "event",
        "local_host",
        "local_port",
        "service",
        "remote_host",
        "remote_port",
        "data",
        "bytes",
        "data_hash",
        "hmac_hash",
        "hmac_message",
        "node",
    ] {
        if v.get(k).is_none() {
            return (StatusCode::OK, format!(r#"{{"status":"missing {k}"}}"#));
        }
    }
    if v["hmac_hash"] != "hh" {
        return (StatusCode::OK, r#"{"status":"bad hmac"}"#.into());
    }
    app.seen.lock().unwrap().push(("honeydb".into(), v));
    (StatusCode::OK, r#"{"status":"Success"}"#.into())
}

async fn chat(
    State(app): State<App>,
    Path(which): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let ok = match which.as_str() {
        "slack" => v["text"].is_string() && v.as_object().is_some_and(|o| o.len() == 1),
        "discord" => v["content"].as_str().is_some_and(|s| s.chars().count() <= 2000),
        "hook" => {
            header(&h, "x-token") == "t"
                && ["alert", "digest", "test"].contains(&v["kind"].as_str().unwrap_or_default())
                && v["text"].is_string()
        }
        _ => false,
    };
    if !ok {
        return bad("bad chat body");
    }
    app.seen.lock().unwrap().push((which, v));
    (StatusCode::OK, "ok".into())
}

async fn telegram(
    State(app): State<App>,
    Path(bot): Path<String>,
    body: Bytes,
) -> (StatusCode, String) {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    if bot != "botT0KEN" || v["chat_id"] != "-100" || !v["text"].is_string() {
        return bad("telegram");
    }
    app.seen.lock().unwrap().push(("telegram".into(), v));
    (StatusCode::OK, r#"{"ok":true}"#.into())
}

/// Checks the OAuth 1.0a header the way X does: recompute the signature from the secrets.
async fn tweet(State(app): State<App>, h: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let auth = header(&h, "authorization");
    let Some(params) = auth.strip_prefix("OAuth ") else {
        return (StatusCode::UNAUTHORIZED, "no oauth".into());
    };
    let mut p = BTreeMap::new();
    for kv in params.split(", ") {
        let Some((k, v)) = kv.split_once('=') else { return (StatusCode::UNAUTHORIZED, kv.into()) };
        let v = v.trim_matches('"');
        let decoded = percent_decode(v);
        p.insert(k.to_owned(), decoded);
    }
    let Some(sig) = p.remove("oauth_signature") else {
        return (StatusCode::UNAUTHORIZED, "no signature".into());
    };
    let o = OAuth1 {
        consumer_key: "ck".into(),
        consumer_secret: "cs".into(),
        token: "at".into(),
        token_secret: "as".into(),
    };
    let pairs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let url = format!("http://127.0.0.1:{}/2/tweets", app.port);
    if o.signature("POST", &url, &pairs) != sig
        || p["oauth_consumer_key"] != "ck"
        || p["oauth_token"] != "at"
    {
        return (StatusCode::UNAUTHORIZED, "bad signature".into());
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    if v["text"].as_str().is_none_or(|t| t.chars().count() > 280) {
        return bad("text");
    }
    app.seen.lock().unwrap().push(("tweet".into(), v));
    (StatusCode::CREATED, r#"{"data":{"id":"1"}}"#.into())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

async fn serve() -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = App { port, ..App::default() };
    let router = Router::new()
        .route("/services/collector/event", post(hec))
        .route("/_bulk", post(bulk))
        .route("/sumo", post(sumo))
        .route("/honeydb/hmac", get(honeydb_hmac))
        .route("/honeydb/collect", post(honeydb_post))
        .route("/chat/{which}", post(chat))
        .route("/tg/{bot}/sendMessage", post(telegram))
        .route("/2/tweets", post(tweet))
        .with_state(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    app
}

fn seen(app: &App, route: &str) -> Vec<Value> {
    app.seen.lock().unwrap().iter().filter(|(r, _)| r == route).map(|(_, v)| v.clone()).collect()
}

async fn run(cfg: &str, n: u32) -> apiary_sinks::StatsSnapshot {
    let cfg = logger(cfg);
    let dir = tempfile::tempdir().unwrap();
    let p = start(&cfg, dir.path());
    let em = p.emitter();
    for i in 0..n {
        em.emit(event(i));
    }
    p.shutdown(Duration::from_secs(20)).await[0].1
}

#[tokio::test]
async fn splunk_hec_sends_cim_envelopes() {
    let app = serve().await;
    let s = run(
        &format!("[[logger]]\ntype = \"splunk_hec\"\nurl = \"http://127.0.0.1:{}/services/collector/event\"\ntoken = \"tok\"\nindex = \"main\"\nformat = \"cim\"\n", app.port),
        300,
    )
    .await;
    assert_eq!(s.delivered, 300, "{s:?}");
    let got = seen(&app, "hec");
    assert_eq!(got.len(), 300);
    assert_eq!(got[5]["event"]["src_ip"], "203.0.113.7");
    assert_eq!(got[5]["event"]["dest_port"], 23);
    assert_eq!(got[5]["event"]["event"], "RX");
    // A wrong token fails `loggers test` with the server's message.
    let bad = logger(&format!(
        "[[logger]]\ntype = \"splunk_hec\"\nurl = \"http://127.0.0.1:{}/services/collector/event\"\ntoken = \"nope\"\n",
        app.port
    ));
    let r = apiary_sinks::test_sinks(
        &[bad],
        &[],
        std::path::Path::new("/tmp"),
        "n",
        Duration::from_secs(5),
    )
    .await;
    assert!(r[0].result.as_ref().unwrap_err().to_string().contains("401"), "{r:?}");
}

#[tokio::test]
async fn elasticsearch_bulk_creates_by_id_and_treats_conflicts_as_done() {
    let app = serve().await;
    let cfg = logger(&format!(
        "[[logger]]\ntype = \"elasticsearch\"\nurl = \"http://127.0.0.1:{}\"\nindex = \"honey\"\nusername = \"elastic\"\npassword = \"pw\"\nformat = \"ecs\"\n",
        app.port
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut spec = cfg.build(&[], dir.path()).unwrap();
    let batch: Vec<_> = (0..200).map(|i| Arc::new(event(i))).collect();
    spec.sink.send(&batch).await.unwrap();
    spec.sink.send(&batch).await.unwrap();
    let ids = app.es_ids.lock().unwrap();
    assert_eq!(ids.len(), 200);
    let doc = &ids[&batch[3].id.to_string()];
    assert_eq!(doc["source"]["ip"], "203.0.113.7");
    assert_eq!(doc["event"]["id"], batch[3].id.to_string());
}

#[tokio::test]
async fn sumologic_and_honeydb() {
    let app = serve().await;
    let s = run(
        &format!("[[logger]]\ntype = \"sumologic\"\nurl = \"http://127.0.0.1:{}/sumo\"\ncustom_source_host = \"edge\"\ncustom_source_category = \"honeypot/apiary\"\n", app.port),
        100,
    )
    .await;
    assert_eq!(s.delivered, 100);
    assert_eq!(seen(&app, "sumo").len(), 100);
    let s = run(
        &format!("[[logger]]\ntype = \"honeydb\"\napi_id = \"id\"\napi_key = \"key\"\nhmac_url = \"http://127.0.0.1:{p}/honeydb/hmac\"\nurl = \"http://127.0.0.1:{p}/honeydb/collect\"\nnode = \"00:11:22:33:44:55\"\n", p = app.port),
        20,
    )
    .await;
    assert_eq!(s.delivered, 20, "{s:?}");
    let got = seen(&app, "honeydb");
    assert_eq!(got.len(), 20);
    assert_eq!(got[0]["event"], "RX");
    assert_eq!(got[0]["node"], "00:11:22:33:44:55");
}

#[tokio::test]
async fn chat_sinks_alert_once_then_send_one_digest() {
    let app = serve().await;
    let p = app.port;
    for (ty, keys, route) in [
        ("slack", format!("webhook_url = \"http://127.0.0.1:{p}/chat/slack\""), "slack"),
        ("discord", format!("webhook_url = \"http://127.0.0.1:{p}/chat/discord\""), "discord"),
        (
            "telegram",
            format!(
                "bot_token = \"T0KEN\"\nchat_id = \"-100\"\napi_url = \"http://127.0.0.1:{p}/tg\""
            ),
            "telegram",
        ),
        (
            "webhook",
            format!("url = \"http://127.0.0.1:{p}/chat/hook\"\nheaders = {{ X-Token = \"t\" }}"),
            "hook",
        ),
        (
            "twitter",
            format!(
                "consumerkey = \"ck\"\nconsumersecret = \"cs\"\noauthtoken = \"at\"\noauthsecret = \"as\"\nurl = \"http://127.0.0.1:{p}/2/tweets\""
            ),
            "tweet",
        ),
    ] {
        let cfg = logger(&format!("[[logger]]\ntype = \"{ty}\"\n{keys}\ndigest_window = \"1s\"\n"));
        let dir = tempfile::tempdir().unwrap();
        let pipe = start(&cfg, dir.path());
        let em = pipe.emitter();
        // 200 events from one source: one alert, the rest in a digest.
        for i in 0..200 {
            em.emit(event(i));
        }
        let mut got = Vec::new();
        for _ in 0..100 {
            got = seen(&app, route);
            if got.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let s = pipe.shutdown(Duration::from_secs(10)).await[0].1;
        assert_eq!(s.delivered, 200, "{ty}: {s:?}");
        assert_eq!(got.len(), 2, "{ty}: {got:?}");
        let text = |v: &Value| {
            v.get("text")
                .or_else(|| v.get("content"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        assert!(text(&got[0]).contains("Possible Telnet attack from 203.0.113.7"), "{ty}: {got:?}");
        assert!(text(&got[1]).contains("199 similar events"), "{ty}: {got:?}");
        if ty == "webhook" {
            assert_eq!(got[0]["kind"], "alert");
            assert_eq!(got[0]["event"]["src_ip"], "203.0.113.7");
            assert_eq!(got[1]["kind"], "digest");
        }
    }
}

#[test]
fn percent_decode_helper_inverts_encode() {
    assert_eq!(percent_decode(&percent_encode("a b+c/é")), "a b+c/é");
}

/// A minimal SMTP server that records one message per connection.
async fn smtp_reader() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let m = Arc::clone(&mails);
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            let m = Arc::clone(&m);
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                w.write_all(b"220 test ESMTP\r\n").await.unwrap();
                let mut envelope = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if line.starts_with("EHLO") {
                        b"250-test\r\n250 AUTH PLAIN\r\n"
                    } else if line.starts_with("MAIL FROM:<alerts@example.org>") {
                        b"250 ok\r\n"
                    } else if line.starts_with("RCPT TO:<") {
                        envelope.push_str(&line);
                        b"250 ok\r\n"
                    } else if line == "DATA" {
                        w.write_all(b"354 go\r\n").await.unwrap();
                        let mut data = envelope.clone();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            data.push('\n');
                            data.push_str(&l);
                        }
                        m.lock().unwrap().push(data);
                        b"250 queued\r\n"
                    } else if line == "QUIT" {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else {
                        b"500 what\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, mails)
}

#[tokio::test]
async fn email_alerts_and_digest_over_smtp() {
    let (port, mails) = smtp_reader().await;
    let cfg = logger(&format!(
        "[[logger]]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"alerts@example.org\"\nto = [\"soc@example.org\", \"oncall@example.org\"]\ndigest_window = \"1s\"\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let p = start(&cfg, dir.path());
    let em = p.emitter();
    for i in 0..50 {
        em.emit(event(i));
    }
    for _ in 0..100 {
        if mails.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.shutdown(Duration::from_secs(10)).await;
    let mails = mails.lock().unwrap();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(mails[0].contains("RCPT TO:<soc@example.org>RCPT TO:<oncall@example.org>"));
    assert!(
        mails[0].contains("Subject: [apiary] test-node: Possible Telnet attack"),
        "{}",
        mails[0]
    );
    assert!(mails[1].contains("49 similar events"), "{}", mails[1]);
}
