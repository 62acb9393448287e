//! Live capture on `lo` and on a veth pair into a network namespace the test creates (root
//! only; skipped with a note otherwise).

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use apiary_event::{Event, FlowState};
use apiary_sensor::{RecordSink, SensorConfig, live, queue};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Captures on `iface` while `traffic` runs; returns the records.
fn capture(iface: &str, cfg: &SensorConfig, traffic: impl FnOnce()) -> Vec<Event> {
    let (tx, rx) = queue(1_000_000);
    let stop = Arc::new(AtomicBool::new(false));
    let handle = live(cfg, iface, Arc::from("test"), Arc::clone(&stop), move |_| {
        Box::new(tx.clone()) as Box<dyn RecordSink + Send>
    })
    .unwrap();
    traffic();
    std::thread::sleep(Duration::from_millis(300));
    handle.stop();
    let stats = handle.join().unwrap();
    assert!(stats.packets > 0);
    rx.try_iter().collect()
}

fn involving(ev: &[Event], port: u16) -> Vec<&Event> {
    ev.iter().filter(|e| e.src_port == Some(port) || e.dst_port == Some(port)).collect()
}

#[test]
fn live_capture_on_loopback_sees_udp_and_tcp_sessions() {
    if !is_root() {
        println!("skipped: live capture needs root");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = listener.local_addr().unwrap().port();
    let udp_rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp_rx.local_addr().unwrap().port();
    let mut cfg = SensorConfig::default();
    cfg.capture.block_timeout_ms = 10;
    let ev = capture("lo", &cfg, || {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            tx.send_to(b"hello", ("127.0.0.1", udp_port)).unwrap();
        }
        let c = TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
        let (s, _) = listener.accept().unwrap();
        drop(c);
        std::thread::sleep(Duration::from_millis(50));
        drop(s);
    });
    let udp = involving(&ev, udp_port);
    // Loopback shows each packet once (the sent copy is skipped): one NEW, then shutdown.
    let news =
        udp.iter().filter(|e| e.flow.as_ref().unwrap().state == Some(FlowState::New)).count();
    assert_eq!(news, 1, "{udp:?}");
    let tcp: Vec<_> =
        involving(&ev, tcp_port).iter().map(|e| e.flow.as_ref().unwrap().state.unwrap()).collect();
    assert_eq!(&tcp[..3], [FlowState::New, FlowState::Established, FlowState::Close], "{tcp:?}");
}

/// A veth pair with one end in a fresh namespace; removed on drop.
struct Netns {
    ns: String,
    host_if: String,
}

impl Netns {
    fn create() -> Option<Self> {
        let id = std::process::id() % 100_000;
        let ns = format!("apiary-sensor-{id}");
        let host_if = format!("asv{id}a");
        let peer = format!("asv{id}b");
        let me = Self { ns: ns.clone(), host_if: host_if.clone() };
        let ip = |args: &[&str]| {
            Command::new("ip").args(args).status().map(|s| s.success()).unwrap_or(false)
        };
        let ok = ip(&["netns", "add", &ns])
            && ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &peer])
            && ip(&["link", "set", &peer, "netns", &ns])
            && ip(&["addr", "add", "10.213.7.1/30", "dev", &host_if])
            && ip(&["link", "set", &host_if, "up"])
            && ip(&["-n", &ns, "addr", "add", "10.213.7.2/30", "dev", &peer])
            && ip(&["-n", &ns, "link", "set", &peer, "up"])
            && ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ok.then_some(me)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn live_capture_on_veth_into_a_namespace() {
    if !is_root() {
        println!("skipped: network namespaces need root");
        return;
    }
    let Some(net) = Netns::create() else {
        println!("skipped: could not create a network namespace and veth pair here");
        return;
    };
    let mut cfg = SensorConfig::default();
    cfg.capture.block_timeout_ms = 10;
    cfg.capture.workers = 2;
    let target: SocketAddr = "10.213.7.2:9".parse().unwrap();
    let ev = capture(&net.host_if, &cfg, || {
        let tx = UdpSocket::bind("10.213.7.1:0").unwrap();
        tx.send_to(b"probe", target).unwrap();
        // Nothing listens in the namespace: the kernel there answers RST.
        let _ =
            TcpStream::connect_timeout(&"10.213.7.2:7".parse().unwrap(), Duration::from_secs(2));
    });
    let udp: Vec<_> = ev.iter().filter(|e| e.dst_port == Some(9)).collect();
    assert_eq!(udp.len(), 2, "NEW and shutdown EXPIRED: {ev:?}");
    assert_eq!(udp[1].flow.as_ref().unwrap().reason.as_deref(), Some("shutdown"));
    let tcp: Vec<_> =
        involving(&ev, 7).iter().map(|e| e.flow.as_ref().unwrap().state.unwrap()).collect();
    // A refused connection, exactly as PokieStream reports it: NEW then ESTABLISHED.
    assert_eq!(&tcp[..2], [FlowState::New, FlowState::Established], "{tcp:?}");
}

#[test]
fn bpf_expression_filters_live_and_replayed_packets() {
    let mut cfg = SensorConfig::default();
    cfg.filter.scapy = "udp port 53".into();
    let mut s = crate::support::synth();
    s.udp(crate::support::sa("10.0.0.1:5000"), crate::support::sa("10.0.0.2:53"), b"q");
    s.udp(crate::support::sa("10.0.0.1:5000"), crate::support::sa("10.0.0.2:54"), b"q");
    let mut out = Vec::new();
    match apiary_sensor::replay(&cfg, s.to_pcap().as_slice(), &mut out, &Default::default()) {
        Ok(stats) => {
            assert_eq!(stats.bpf_rejected, 1);
            assert_eq!(out.iter().filter(|e| e.dst_port == Some(54)).count(), 0);
            assert_eq!(out.iter().filter(|e| e.dst_port == Some(53)).count(), 2);
        }
        Err(apiary_sensor::SensorError::Bpf(e)) => {
            println!("skipped: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    }
    cfg.filter.scapy = "port banana".into();
    let err =
        apiary_sensor::replay(&cfg, s.to_pcap().as_slice(), &mut Vec::new(), &Default::default())
            .unwrap_err();
    assert!(err.to_string().contains("invalid capture filter"), "{err}");
    if !is_root() {
        return;
    }
    cfg.filter.scapy = "udp and dst port 53535".into();
    cfg.capture.block_timeout_ms = 10;
    let ev = capture("lo", &cfg, || {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"a", "127.0.0.1:53535").unwrap();
        tx.send_to(b"b", "127.0.0.1:53536").unwrap();
    });
    assert!(ev.iter().all(|e| e.dst_port == Some(53535)), "{ev:?}");
    assert!(!ev.is_empty());
}
