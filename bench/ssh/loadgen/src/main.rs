//! SSH benchmark driver.
//!
//! - `serve DIR ACCEPT DELAY_MS`: an apiary pot with one SSH service on 127.0.0.1 (host key
//!   ed25519 kept in DIR, every event written as a JSON line to `DIR/events.jsonl`, as Cowrie
//!   writes its JSON log, TTY logs in `DIR/tty`); prints the port, runs until SIGTERM.
//! - `rate ADDR SECS CONCURRENCY`: full handshakes (key exchange, one wrong password,
//!   disconnect) per second against any SSH server.
//! - `hold ADDR N [KEY]`: opens N interactive sessions as root (password `123456`, or the
//!   OpenSSH private key KEY for a real sshd; then pty, shell, first prompt read, `uname -a`
//!   typed and its prompt read), prints `ready`, keeps them until stdin closes.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used, missing_docs)]

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::PublicKeyOrCertificate;

struct Accept;

impl client::Handler for Accept {
    type Error = russh::Error;
    async fn check_server_key(&mut self, _: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// One algorithm set every server under test implements (Twisted/Cowrie has neither
/// chacha20-poly1305 nor the ETM MACs; sshd 9.2 has no mlkem768x25519, which russh would pick
/// first against apiary), so each race runs the same key exchange, host key, cipher and MAC:
/// curve25519-sha256, ssh-ed25519, aes128-ctr, hmac-sha2-256.
fn client_config() -> Arc<client::Config> {
    use russh::{cipher, kex, mac};
    Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(120)),
        // As Go's x/crypto/ssh (most brute-force bots) does by default: without it, Nagle's
        // algorithm against a server's delayed ACKs adds tens of milliseconds per handshake.
        nodelay: true,
        preferred: russh::Preferred {
            kex: vec![
                kex::CURVE25519,
                kex::EXTENSION_SUPPORT_AS_CLIENT,
                kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
            ]
            .into(),
            key: vec![russh::keys::Algorithm::Ed25519].into(),
            cipher: vec![cipher::AES_128_CTR].into(),
            mac: vec![mac::HMAC_SHA256].into(),
            ..russh::Preferred::DEFAULT
        },
        ..Default::default()
    })
}

/// A JSONL log, as a file sink would write it, so logging costs what it costs in a real pot.
struct Jsonl(Mutex<BufWriter<File>>);

impl apiary_event::Emit for Jsonl {
    fn emit(&self, event: apiary_event::Event) {
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        if let Ok(mut f) = self.0.lock() {
            let _ = f.write_all(&line);
        }
    }
}

fn serve(dir: &str, accept: &str, delay_ms: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // TTY logs on, as Cowrie's are by default: their cost is part of a session's.
        let opts = format!(
            "host_key_dir = \"{dir}\"\nhost_keys = [\"ed25519\"]\naccept = \"{accept}\"\n\
             auth_delay = \"{delay_ms}ms\"\nmax_auth_attempts = 6\nttylog_dir = \"{dir}/tty\"\n"
        );
        let svc = apiary_pot::ServiceConfig {
            name: "SSH".into(),
            plugin: "ssh".into(),
            ports: vec!["tcp:0".parse().unwrap()],
            bind: None,
            enabled: true,
            description: None,
            options: toml::from_str(&opts).unwrap(),
        };
        let limits = apiary_pot::Limits {
            max_connections: 20_000,
            max_connections_per_ip: 20_000,
            new_connections_per_sec: 1_000_000.0,
            new_connections_burst: 1_000_000.0,
            ..Default::default()
        };
        let config = apiary_pot::PotConfig {
            name: "bench".into(),
            bind: vec!["127.0.0.1".parse().unwrap()],
            ignore: Vec::new(),
            user: None,
            limits,
            profiles: Vec::new(),
            real_ports: false,
        };
        let log = File::create(format!("{dir}/events.jsonl")).unwrap();
        let sink = Arc::new(Jsonl(Mutex::new(BufWriter::with_capacity(64 * 1024, log))));
        let pot = apiary_pot::Pot::bind("bench", &config, &[svc], sink.clone()).unwrap();
        let handle = pot.start().unwrap();
        println!("{}", handle.addr("SSH", apiary_event::Transport::Tcp).unwrap().port());
        // run.sh stops the server with SIGTERM: the log's tail is flushed first.
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        term.recv().await;
        if let Ok(mut f) = sink.0.lock() {
            let _ = f.flush();
        }
        std::process::exit(0);
    });
}

async fn one_failed_login(addr: &str, config: Arc<client::Config>) -> Result<(), russh::Error> {
    let mut h = client::connect(config, addr, Accept).await?;
    let r = h.authenticate_password("root", "wrong-password-123").await?;
    if r.success() {
        return Err(russh::Error::NotAuthenticated);
    }
    h.disconnect(russh::Disconnect::ByApplication, "", "en").await?;
    Ok(())
}

fn rate(addr: String, secs: u64, conc: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let config = client_config();
        let end = Instant::now() + Duration::from_secs(secs);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let (ok, failed, config, addr) =
                (ok.clone(), failed.clone(), config.clone(), addr.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    match tokio::time::timeout(
                        Duration::from_secs(30),
                        one_failed_login(&addr, config.clone()),
                    )
                    .await
                    {
                        Ok(Ok(())) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let n = ok.load(Ordering::Relaxed);
        println!(
            "{:.1} handshakes/s ({n} in {elapsed:.1} s, {} failed, concurrency {conc})",
            n as f64 / elapsed,
            failed.load(Ordering::Relaxed)
        );
    });
}

/// Reads until output ends with a shell prompt.
async fn prompt(ch: &mut russh::Channel<client::Msg>) -> Result<(), russh::Error> {
    loop {
        match ch.wait().await {
            Some(russh::ChannelMsg::Data { data })
                if data.ends_with(b"# ") || data.ends_with(b"$ ") =>
            {
                return Ok(());
            }
            Some(_) => {}
            None => return Err(russh::Error::Disconnect),
        }
    }
}

async fn open_session(
    addr: &str,
    config: Arc<client::Config>,
    key: Option<Arc<russh::keys::PrivateKey>>,
) -> Result<(client::Handle<Accept>, russh::Channel<client::Msg>), russh::Error> {
    let mut h = client::connect(config, addr, Accept).await?;
    let auth = match key {
        Some(k) => {
            let k = russh::keys::PrivateKeyWithHashAlg::new(k, None);
            h.authenticate_publickey("root", k).await?
        }
        None => h.authenticate_password("root", "123456").await?,
    };
    if !auth.success() {
        return Err(russh::Error::NotAuthenticated);
    }
    let mut ch = h.channel_open_session().await?;
    ch.request_pty(false, "xterm", 80, 24, 0, 0, &[]).await?;
    ch.request_shell(true).await?;
    // The first prompt: the session is set up on the server. Then one command typed, as a bot
    // would (`uname -a`), and its prompt: the shell has really run something.
    prompt(&mut ch).await?;
    ch.data(&b"uname -a\r"[..]).await?;
    prompt(&mut ch).await?;
    Ok((h, ch))
}

fn hold(addr: String, n: usize, key: Option<String>) {
    let key = key.map(|k| Arc::new(russh::keys::load_secret_key(k, None).unwrap()));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let config = client_config();
        let mut held = Vec::new();
        let mut failed = 0;
        // Opened in batches so the server's accept backlog is not the limit.
        for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
            let mut batch = Vec::new();
            for _ in chunk {
                let (addr, config, key) = (addr.clone(), config.clone(), key.clone());
                batch.push(tokio::spawn(async move { open_session(&addr, config, key).await }));
            }
            for b in batch {
                match b.await {
                    Ok(Ok(s)) => held.push(s),
                    _ => failed += 1,
                }
            }
        }
        println!("ready {} sessions ({failed} failed)", held.len());
        let mut line = String::new();
        let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
        drop(held);
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(1).as_str() {
        "serve" => serve(&arg(2), &arg(3), arg(4).parse().unwrap_or(0)),
        "rate" => rate(arg(2), arg(3).parse().unwrap_or(10), arg(4).parse().unwrap_or(32)),
        "hold" => hold(arg(2), arg(3).parse().unwrap_or(1000), args.get(4).cloned()),
        _ => eprintln!(
            "usage: apiary-ssh-bench serve DIR ACCEPT DELAY_MS | rate ADDR SECS CONC | hold ADDR N [KEY]"
        ),
    }
}
