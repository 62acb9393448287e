//! Live burst on loopback: captures on `lo` while sending N UDP datagrams, each from a new
//! source port (a new flow), within about one second; prints how many NEW records came out.
//! `burst [N]` (root).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use apiary_event::FlowState;
use apiary_sensor::{RecordSink, SensorConfig, live, queue};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let target = UdpSocket::bind("127.0.0.1:0")?;
    let port = target.local_addr()?.port();
    let mut cfg = SensorConfig::default();
    cfg.capture.block_timeout_ms = 10;
    cfg.filter.port = Some(vec![port]);
    let (tx, rx) = queue(cfg.effective_queue_size().max(n * 2));
    let drops = tx.drop_counter();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = live(&cfg, "lo", Arc::from("bench"), Arc::clone(&stop), move |_| {
        Box::new(tx.clone()) as Box<dyn RecordSink + Send>
    })?;
    // Drain the target socket so the kernel does not answer with ICMP errors we do not need.
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while target.recv(&mut buf).is_ok() {}
    });
    let start = Instant::now();
    let per_ms = n.div_ceil(1000);
    let mut sent = 0;
    let mut sockets = Vec::with_capacity(per_ms);
    while sent < n {
        sockets.clear();
        for _ in 0..per_ms.min(n - sent) {
            // A distinct loopback source address per flow: ephemeral ports are reused quickly,
            // which would turn "new" flows into packets of flows already tracked.
            let src = std::net::Ipv4Addr::new(127, 1, (sent / 250) as u8, (sent % 250 + 1) as u8);
            let s = UdpSocket::bind((src, 0))?;
            s.send_to(b"burst", ("127.0.0.1", port))?;
            sockets.push(s);
            sent += 1;
        }
        // Pace to about one second in total.
        let due = Duration::from_micros((sent as u64 * 1_000_000) / n as u64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = start.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    handle.stop();
    let stats = handle.join()?;
    let news = rx
        .try_iter()
        .filter(|e| e.flow.as_ref().is_some_and(|f| f.state == Some(FlowState::New)))
        .count();
    println!(
        "sent {sent} new UDP flows in {:.3} s; NEW records: {news} ({:.1} %); kernel drops {}, queue drops {}; packets seen {}, filtered {}, records {}",
        elapsed.as_secs_f64(),
        news as f64 * 100.0 / sent as f64,
        stats.kernel_drops,
        drops.load(std::sync::atomic::Ordering::Relaxed),
        stats.packets,
        stats.filtered,
        stats.records
    );
    Ok(())
}
