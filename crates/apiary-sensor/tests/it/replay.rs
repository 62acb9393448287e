//! Golden replays: every PokieStream state transition and timeout, payload filters, IPv4 and
//! IPv6, link types, garbage, eviction and determinism.

use apiary_event::{FlowState, encode};
use apiary_sensor::config::NameFilterConfig;
use apiary_sensor::decode::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use apiary_sensor::synth::Synth;
use apiary_sensor::{ReplayOptions, SensorConfig, replay};

use crate::support::{brief, briefs, run, sa, synth};

const C: &str = "10.0.0.1:40000";
const S: &str = "10.0.0.2:80";

#[test]
fn tcp_handshake_data_fin_is_new_established_close_with_summary() {
    let mut s = synth();
    s.tcp_session(sa(C), sa(S), b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", 1000);
    let (ev, stats) = run(&SensorConfig::default(), &s);
    assert_eq!(
        briefs(&ev),
        [
            "+0.000000 NEW 10.0.0.1:40000 > 10.0.0.2:80 p6",
            "+0.001000 ESTABLISHED 10.0.0.2:80 > 10.0.0.1:40000 p6",
            "+0.005000 CLOSE 10.0.0.1:40000 > 10.0.0.2:80 p6 h=ShADdF",
        ]
    );
    let close = ev[2].flow.as_deref().unwrap();
    assert_eq!((close.orig_packets, close.resp_packets), (Some(4), Some(2)));
    assert_eq!(close.orig_bytes, Some(40 + 40 + 58 + 40));
    assert_eq!(close.duration_us, Some(5000));
    assert!(close.community_id.as_deref().unwrap().starts_with("1:"));
    // One session id for all three; the rest of the teardown is silent.
    assert!(ev.iter().all(|e| e.session == ev[0].session));
    assert_eq!(stats.track.tcp_untracked, 2);
    assert_eq!(stats.flows_open, 0);
}

#[test]
fn tcp_rst_from_initiator_after_establishment_is_abort() {
    let mut s = synth();
    s.tcp(sa(C), sa(S), SYN, 1, b"");
    s.advance_micros(10);
    s.tcp(sa(S), sa(C), SYN | ACK, 1, b"");
    s.advance_micros(10);
    s.tcp(sa(C), sa(S), RST, 2, b"");
    let (ev, _) = run(&SensorConfig::default(), &s);
    assert_eq!(
        briefs(&ev),
        [
            "+0.000000 NEW 10.0.0.1:40000 > 10.0.0.2:80 p6",
            "+0.000010 ESTABLISHED 10.0.0.2:80 > 10.0.0.1:40000 p6",
            "+0.000020 ABORT 10.0.0.1:40000 > 10.0.0.2:80 p6 h=ShR",
        ]
    );
}

#[test]
fn refused_connection_is_established_then_expired_like_pokiestream() {
    let mut s = synth();
    s.tcp(sa(C), sa(S), SYN, 1, b"");
    s.advance_micros(100);
    s.tcp(sa(S), sa(C), RST | ACK, 0, b"");
    let (ev, _) = run(&SensorConfig::default(), &s);
    // Rule 3 (responder's first packet) wins over rule 5 (RST): EXPIRED 60 s later.
    // The EXPIRED record uses the canonical string order of (ip, port).
    assert_eq!(
        briefs(&ev),
        [
            "+0.000000 NEW 10.0.0.1:40000 > 10.0.0.2:80 p6",
            "+0.000100 ESTABLISHED 10.0.0.2:80 > 10.0.0.1:40000 p6",
            "+60.000100 EXPIRED 10.0.0.1:40000 > 10.0.0.2:80 p6 h=Sr",
        ]
    );
}

#[test]
fn busy_session_expires_sixty_seconds_after_establishment_and_later_fin_is_silent() {
    let mut s = synth();
    s.tcp(sa(C), sa(S), SYN, 1, b"");
    s.advance_secs(1);
    s.tcp(sa(S), sa(C), SYN | ACK, 1, b"");
    for _ in 0..10 {
        s.advance_secs(10);
        s.tcp(sa(C), sa(S), ACK | PSH, 2, b"x");
    }
    s.tcp(sa(C), sa(S), FIN | ACK, 3, b"");
    let (ev, stats) = run(&SensorConfig::default(), &s);
    assert_eq!(
        briefs(&ev),
        [
            "+0.000000 NEW 10.0.0.1:40000 > 10.0.0.2:80 p6",
            "+1.000000 ESTABLISHED 10.0.0.2:80 > 10.0.0.1:40000 p6",
            "+61.000000 EXPIRED 10.0.0.1:40000 > 10.0.0.2:80 p6 h=ShD",
        ]
    );
    assert_eq!(stats.track.flows_expired, 1);
}

#[test]
fn idle_tcp_timeout_option_lets_data_extend_the_session() {
    let mut s = synth();
    s.tcp(sa(C), sa(S), SYN, 1, b"");
    s.advance_secs(1);
    s.tcp(sa(S), sa(C), SYN | ACK, 1, b"");
    for _ in 0..10 {
        s.advance_secs(10);
        s.tcp(sa(C), sa(S), ACK | PSH, 2, b"x");
    }
    s.tcp(sa(C), sa(S), FIN | ACK, 3, b"");
    let mut cfg = SensorConfig::default();
    cfg.tracking.tcp_idle = true;
    cfg.tracking.tcp_timeout_secs = 30;
    let (ev, _) = run(&cfg, &s);
    assert_eq!(
        ev.last().map(brief).unwrap(),
        "+101.000000 CLOSE 10.0.0.1:40000 > 10.0.0.2:80 p6 h=ShDF"
    );
}

#[test]
fn retransmitted_syn_is_ignored_and_midstream_traffic_is_never_reported() {
    let mut s = synth();
    s.tcp(sa(C), sa(S), SYN, 1, b"");
    s.advance_micros(5);
    s.tcp(sa(C), sa(S), SYN, 1, b"");
    s.tcp(sa("10.9.9.9:5555"), sa(S), ACK | PSH, 9, b"midstream");
    s.tcp(sa("10.9.9.9:5555"), sa(S), FIN | ACK, 9, b"");
    let (ev, stats) = run(&SensorConfig::default(), &s);
    assert_eq!(
        briefs(&ev),
        [
            "+0.000000 NEW 10.0.0.1:40000 > 10.0.0.2:80 p6",
            "+60.000000 EXPIRED 10.0.0.1:40000 > 10.0.0.2:80 p6 h=S"
        ]
    );
    assert_eq!(stats.track.tcp_untracked, 2);
}

#[test]
fn first_fin_from_responder_closes_and_fin_rst_counts_as_close() {
    let mut s = synth();
    s.tcp(sa(C), sa(S), SYN, 1, b"");
    s.tcp(sa(S), sa(C), SYN | ACK, 1, b"");
    s.tcp(sa(S), sa(C), FIN | ACK, 2, b"");
    s.tcp(sa("10.0.0.3:1"), sa(S), SYN, 1, b"");
    s.tcp(sa(S), sa("10.0.0.3:1"), SYN | ACK, 1, b"");
    s.tcp(sa("10.0.0.3:1"), sa(S), FIN | RST, 2, b"");
    let (ev, _) = run(&SensorConfig::default(), &s);
    let states: Vec<_> = ev.iter().map(|e| e.flow.as_ref().unwrap().state.unwrap()).collect();
    use FlowState::*;
    assert_eq!(states, [New, Established, Close, New, Established, Close]);
    assert_eq!(ev[2].src_ip, Some("10.0.0.2".parse().unwrap()));
}

#[test]
fn port_filter_drops_responder_packets_so_sessions_never_establish() {
    let mut s = synth();
    s.tcp_session(sa(C), sa(S), b"", b"", 10);
    let mut cfg = SensorConfig::default();
    cfg.filter.port = Some(vec![80]);
    let (ev, stats) = run(&cfg, &s);
    assert_eq!(
        briefs(&ev),
        [
            "+0.000000 NEW 10.0.0.1:40000 > 10.0.0.2:80 p6",
            "+0.000030 CLOSE 10.0.0.1:40000 > 10.0.0.2:80 p6 h=SAF"
        ]
    );
    assert_eq!(stats.filtered, 2);
}

#[test]
fn udp_new_then_expired_after_120s_or_30s_for_port_53() {
    let mut s = synth();
    s.udp(sa("10.0.0.1:5000"), sa("10.0.0.2:9999"), b"a");
    s.udp(sa("10.0.0.1:5001"), sa("10.0.0.2:53"), b"b");
    let (ev, _) = run(&SensorConfig::default(), &s);
    assert_eq!(
        briefs(&ev),
        [
            "+0.000000 NEW 10.0.0.1:5000 > 10.0.0.2:9999 p17",
            "+0.000000 NEW 10.0.0.1:5001 > 10.0.0.2:53 p17",
            "+30.000000 EXPIRED 10.0.0.1:5001 > 10.0.0.2:53 p17 h=D",
            "+120.000000 EXPIRED 10.0.0.1:5000 > 10.0.0.2:9999 p17 h=D",
        ]
    );
}

#[test]
fn udp_flow_with_a_second_packet_still_expires_when_idle() {
    // Deliberate difference from PokieStream, whose second packet made the flow immortal.
    let mut s = synth();
    for _ in 0..3 {
        s.udp(sa("10.0.0.1:5000"), sa("10.0.0.2:9999"), b"a");
        s.advance_secs(100);
    }
    let mut cfg = SensorConfig::default();
    cfg.tracking.udp_timeout_secs = 50;
    let (ev, _) = run(&cfg, &s);
    assert_eq!(
        briefs(&ev),
        [
            "+0.000000 NEW 10.0.0.1:5000 > 10.0.0.2:9999 p17",
            "+50.000000 EXPIRED 10.0.0.1:5000 > 10.0.0.2:9999 p17 h=D",
            "+100.000000 NEW 10.0.0.1:5000 > 10.0.0.2:9999 p17",
            "+150.000000 EXPIRED 10.0.0.1:5000 > 10.0.0.2:9999 p17 h=D",
            "+200.000000 NEW 10.0.0.1:5000 > 10.0.0.2:9999 p17",
            "+250.000000 EXPIRED 10.0.0.1:5000 > 10.0.0.2:9999 p17 h=D",
        ]
    );
    let mut s = synth();
    for _ in 0..3 {
        s.udp(sa("10.0.0.1:5000"), sa("10.0.0.2:9999"), b"a");
        s.advance_secs(10);
    }
    let (ev, _) = run(&cfg, &s);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1].flow.as_ref().unwrap().orig_packets, Some(3));
    assert_eq!(brief(&ev[1]), "+70.000000 EXPIRED 10.0.0.1:5000 > 10.0.0.2:9999 p17 h=D");
}

#[test]
fn udp_query_and_response_are_two_directional_sessions() {
    let mut s = synth();
    let q = apiary_sensor::extract::dns::build_query(1, "example.com");
    s.udp(sa("10.0.0.1:5000"), sa("10.0.0.2:53"), &q);
    s.udp(sa("10.0.0.2:53"), sa("10.0.0.1:5000"), &q);
    let (ev, _) = run(&SensorConfig::default(), &s);
    assert_eq!(ev.len(), 4);
    assert_ne!(ev[0].session, ev[1].session);
    assert_eq!(brief(&ev[3]), "+120.000000 EXPIRED 10.0.0.2:53 > 10.0.0.1:5000 p17 h=D");
}

#[test]
fn icmp_records_for_v4_and_v6_echo_only() {
    let mut s = synth();
    s.echo("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), false);
    s.echo("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap(), true);
    s.icmp_raw("10.0.0.9".parse().unwrap(), "10.0.0.1".parse().unwrap(), 3, 3);
    s.echo("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap(), false);
    s.icmp_raw("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap(), 135, 0);
    let (ev, stats) = run(&SensorConfig::default(), &s);
    assert_eq!(
        briefs(&ev),
        [
            "+0.000000 ICMP 10.0.0.1 > 10.0.0.2 p1",
            "+0.000000 ICMP 10.0.0.2 > 10.0.0.1 p1",
            "+0.000000 ICMP 10.0.0.9 > 10.0.0.1 p1",
            "+0.000000 ICMP 2001:db8::1 > 2001:db8::2 p58",
        ]
    );
    let (a, b) = (ev[0].flow.as_ref().unwrap(), ev[1].flow.as_ref().unwrap());
    assert_eq!((a.icmp_type, b.icmp_type), (Some(8), Some(0)));
    assert_eq!(a.community_id, b.community_id);
    assert!(ev.iter().all(|e| e.session.is_none() && e.src_port.is_none()));
    assert_eq!(stats.track.icmpv6_ignored, 1);
    // The packet_log view has None ports, state and session, and PokieStream's names.
    let v = encode::packet_log::to_value(&ev[3]).unwrap();
    assert_eq!(v["protocol_name"], "ICMPv6");
    assert!(v["state"].is_null() && v["session_id"].is_null() && v["src_port"].is_null());
}

#[test]
fn ipv6_tcp_session_and_extension_header_protocol_num() {
    let mut s = synth();
    s.tcp_session(sa("[2001:db8::1]:40000"), sa("[2001:db8::2]:22"), b"SSH-2.0-x\r\n", b"", 10);
    // A UDP datagram behind a hop-by-hop header: PokieStream reports the first next header (0).
    let mut f = Synth::udp_frame(sa("[2001:db8::1]:7000"), sa("[2001:db8::2]:7001"), b"hi");
    let plen = u16::from_be_bytes([f[18], f[19]]) + 8;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    f[20] = 0;
    f.splice(54..54, [17, 0, 1, 4, 0, 0, 0, 0]);
    s.raw(f);
    let (ev, _) = run(&SensorConfig::default(), &s);
    assert_eq!(
        briefs(&ev),
        [
            "+0.000000 NEW [2001:db8::1]:40000 > [2001:db8::2]:22 p6",
            "+0.000010 ESTABLISHED [2001:db8::2]:22 > [2001:db8::1]:40000 p6",
            "+0.000040 CLOSE [2001:db8::1]:40000 > [2001:db8::2]:22 p6 h=ShADF",
            "+0.000060 NEW [2001:db8::1]:7000 > [2001:db8::2]:7001 p0",
            "+120.000060 EXPIRED [2001:db8::1]:7000 > [2001:db8::2]:7001 p17 h=D",
        ]
    );
}

fn dns_cfg(patterns: &[&str], drop_unmatched: bool) -> SensorConfig {
    let mut cfg = SensorConfig::default();
    cfg.filter.payload.dns = NameFilterConfig {
        enabled: true,
        ports: vec![53],
        patterns: patterns.iter().map(|p| p.to_string()).collect(),
    };
    cfg.filter.payload.drop_unmatched = drop_unmatched;
    cfg
}

#[test]
fn dns_payload_filter_over_udp() {
    let mut s = synth();
    for (i, name) in ["a.MyDomain.com.", "mydomain.com", "other.org"].iter().enumerate() {
        let q = apiary_sensor::extract::dns::build_query(1, name);
        s.udp(sa(&format!("10.0.0.1:{}", 5000 + i)), sa("10.0.0.2:53"), &q);
    }
    s.udp(sa("10.0.0.1:6000"), sa("10.0.0.2:53"), b"not dns");
    let (ev, _) = run(&dns_cfg(&["*.mydomain.com"], false), &s);
    let news: Vec<_> = briefs(&ev).into_iter().filter(|b| b.contains("NEW")).collect();
    assert_eq!(
        news,
        [
            "+0.000000 NEW 10.0.0.1:5000 > 10.0.0.2:53 p17 dns=a.MyDomain.com",
            "+0.000000 NEW 10.0.0.1:5001 > 10.0.0.2:53 p17",
            "+0.000000 NEW 10.0.0.1:5002 > 10.0.0.2:53 p17",
            "+0.000000 NEW 10.0.0.1:6000 > 10.0.0.2:53 p17",
        ]
    );
    // Empty match list: every name matches. drop_unmatched: only matching flows are logged.
    let (ev, _) = run(&dns_cfg(&[], false), &s);
    assert_eq!(ev.iter().filter(|e| !e.flow.as_ref().unwrap().payload.is_empty()).count(), 3);
    let (ev, stats) = run(&dns_cfg(&["*.mydomain.com"], true), &s);
    assert_eq!(ev.len(), 2, "{:?}", briefs(&ev));
    assert_eq!(stats.track.payload_suppressed, 3);
    let pl = encode::packet_log::to_value(&ev[0]).unwrap();
    assert_eq!(pl["payload"], serde_json::json!({"dns": "a.MyDomain.com"}));
}

#[test]
fn dns_payload_filter_over_tcp_split_length_prefix() {
    let q = apiary_sensor::extract::dns::build_query(9, "tcp.example.net");
    let mut msg = (q.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(&q);
    let (c, srv) = (sa("10.0.0.1:41000"), sa("10.0.0.2:53"));
    let mut s = synth();
    s.tcp(c, srv, SYN, 100, b"");
    s.tcp(srv, c, SYN | ACK, 500, b"");
    s.tcp(c, srv, ACK, 101, b"");
    s.tcp(c, srv, ACK | PSH, 101, &msg[..5]);
    s.tcp(c, srv, ACK | PSH, 106, &msg[5..]);
    s.tcp(c, srv, FIN | ACK, 101 + msg.len() as u32, b"");
    let (ev, _) = run(&dns_cfg(&["*.example.net"], false), &s);
    assert_eq!(
        briefs(&ev),
        [
            "+0.000000 NEW 10.0.0.1:41000 > 10.0.0.2:53 p6 dns=tcp.example.net",
            "+0.000000 ESTABLISHED 10.0.0.2:53 > 10.0.0.1:41000 p6",
            "+0.000000 CLOSE 10.0.0.1:41000 > 10.0.0.2:53 p6 h=ShADF",
        ]
    );
}

#[test]
fn tls_sni_from_client_hello_split_over_segments_with_retransmission() {
    let hello = apiary_sensor::extract::tls::build_client_hello("Login.Bank.example", 1500);
    let (c, srv) = (sa("10.0.0.1:42000"), sa("10.0.0.2:443"));
    let mut s = synth();
    s.tcp(c, srv, SYN, 0, b"");
    s.tcp(srv, c, SYN | ACK, 0, b"");
    let (a, rest) = hello.split_at(700);
    let (b, d) = rest.split_at(700);
    s.tcp(c, srv, ACK | PSH, 1, a);
    s.tcp(c, srv, ACK | PSH, 1, a); // retransmission
    s.tcp(c, srv, ACK | PSH, 701, b);
    s.tcp(c, srv, ACK | PSH, 1401, d);
    s.tcp(c, srv, RST, 1401 + d.len() as u32, b"");
    let mut cfg = SensorConfig::default();
    cfg.filter.payload.tls = NameFilterConfig {
        enabled: true,
        ports: vec![443],
        patterns: vec!["*.bank.example".into()],
    };
    let (ev, _) = run(&cfg, &s);
    assert_eq!(
        briefs(&ev),
        [
            "+0.000000 NEW 10.0.0.1:42000 > 10.0.0.2:443 p6 sni=Login.Bank.example",
            "+0.000000 ESTABLISHED 10.0.0.2:443 > 10.0.0.1:42000 p6",
            "+0.000000 ABORT 10.0.0.1:42000 > 10.0.0.2:443 p6 h=ShDR",
        ]
    );
    // A gap in the stream cannot be reassembled: the flow is logged without a name.
    let mut g = synth();
    g.tcp(c, srv, SYN, 0, b"");
    g.tcp(c, srv, ACK | PSH, 1, a);
    g.tcp(c, srv, ACK | PSH, 1401, d);
    let (ev, stats) = run(&cfg, &g);
    assert_eq!(brief(&ev[0]), "+0.000000 NEW 10.0.0.1:42000 > 10.0.0.2:443 p6");
    assert_eq!(stats.track.reassembly_abandoned, 1);
}

#[test]
fn http_host_filter_and_drop_unmatched_for_tcp() {
    let mut s = synth();
    s.tcp_session(
        sa("10.0.0.1:43000"),
        sa("10.0.0.2:8080"),
        b"GET / HTTP/1.1\r\nHost: Admin.Example.com:8080\r\n\r\n",
        b"",
        10,
    );
    s.tcp_session(
        sa("10.0.0.1:43001"),
        sa("10.0.0.2:8080"),
        b"GET / HTTP/1.1\r\nHost: www.other.org\r\n\r\n",
        b"",
        10,
    );
    // A scan: SYN only, never any payload.
    s.tcp(sa("10.0.0.1:43002"), sa("10.0.0.2:8080"), SYN, 0, b"");
    let mut cfg = SensorConfig::default();
    cfg.filter.payload.http =
        NameFilterConfig { enabled: true, ports: vec![8080], patterns: vec!["admin.*".into()] };
    let (ev, _) = run(&cfg, &s);
    let with_host: Vec<_> = briefs(&ev).into_iter().filter(|b| b.contains("host=")).collect();
    assert_eq!(
        with_host,
        ["+0.000000 NEW 10.0.0.1:43000 > 10.0.0.2:8080 p6 host=Admin.Example.com"]
    );
    assert_eq!(ev.len(), 3 + 3 + 2);
    cfg.filter.payload.drop_unmatched = true;
    let (ev, stats) = run(&cfg, &s);
    assert_eq!(ev.len(), 3, "{:?}", briefs(&ev));
    assert!(ev.iter().all(|e| e.src_port == Some(43000) || e.dst_port == Some(43000)));
    assert_eq!(stats.track.payload_suppressed, 2);
}

#[test]
fn truncated_and_garbage_packets_are_counted_never_fatal() {
    let mut s = synth();
    let good = Synth::tcp_frame(sa(C), sa(S), SYN, 1, 0, b"");
    for n in [0, 5, 14, 20, 33, 40, 53] {
        s.raw(good[..n].to_vec());
    }
    s.raw(vec![0xff; 64]);
    s.raw({
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        arp
    });
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x41;
    s.raw(bad_ihl);
    s.raw(good);
    let (ev, stats) = run(&SensorConfig::default(), &s);
    assert_eq!(ev.len(), 2, "{:?}", briefs(&ev));
    assert_eq!(stats.packets, 11);
    assert_eq!(stats.not_ip, 2);
    assert_eq!(stats.truncated + stats.malformed, 8);
}

#[test]
fn truncated_file_keeps_packets_before_the_damage() {
    let mut s = synth();
    s.tcp_session(sa(C), sa(S), b"x", b"y", 10);
    let file = s.to_pcap();
    let cut = &file[..file.len() - 7];
    let mut out = Vec::new();
    let stats = replay(&SensorConfig::default(), cut, &mut out, &ReplayOptions::default()).unwrap();
    // Eight packets, the last one cut: seven replayed, the session's three records kept.
    assert_eq!(stats.packets, 7);
    assert_eq!(out.len(), 3);
    assert!(
        replay(
            &SensorConfig::default(),
            &b"garbage!"[..],
            &mut Vec::new(),
            &ReplayOptions::default()
        )
        .is_err()
    );
}

#[test]
fn syn_flood_from_random_sources_is_bounded_by_eviction() {
    let mut s = synth();
    let mut x: u32 = 12345;
    for _ in 0..5000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let src = std::net::SocketAddr::from((x.to_be_bytes(), (x % 60000) as u16 + 1024));
        s.tcp(src, sa(S), SYN, x, b"");
        s.advance_micros(1);
    }
    let mut cfg = SensorConfig::default();
    cfg.tracking.max_flows = 1000;
    cfg.tracking.expire_at_end = false;
    let (ev, stats) = run(&cfg, &s);
    assert_eq!(stats.track.flows_evicted, 4000);
    assert_eq!(stats.flows_open, 1000);
    let evicted: Vec<_> = ev
        .iter()
        .filter(|e| e.flow.as_ref().unwrap().reason.as_deref() == Some("evicted"))
        .collect();
    assert_eq!(evicted.len(), 4000);
    // The oldest half-open flows go first.
    assert_eq!(evicted[0].session, ev[0].session);
}

#[test]
fn replay_is_byte_for_byte_deterministic_and_pcapng_equals_pcap() {
    let s = apiary_sensor::synth::mixed_traffic(3000);
    let cfg = dns_cfg(&[], false);
    let encode_all = |bytes: &[u8]| {
        let mut ev = Vec::new();
        replay(&cfg, bytes, &mut ev, &ReplayOptions::default()).unwrap();
        let mut out = Vec::new();
        for e in &ev {
            encode::json_line(e, &mut out);
        }
        out
    };
    let a = encode_all(&s.to_pcap());
    let b = encode_all(&s.to_pcap());
    let c = encode_all(&s.to_pcapng());
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_eq!(a, c);
    // Every id is distinct.
    let mut ids: Vec<_> = a
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap()["id"].clone().to_string())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[test]
fn golden_native_json_of_one_session() {
    let mut s = synth();
    s.tcp_session(sa(C), sa(S), b"hi", b"", 250);
    let (ev, _) = run(&SensorConfig::default(), &s);
    let mut out = Vec::new();
    for e in &ev {
        encode::json_line(e, &mut out);
    }
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tcp_session.jsonl");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &out).unwrap();
    }
    let want = std::fs::read(&golden).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(want).unwrap());
}

#[test]
fn vlan_qinq_sll_sll2_and_raw_ip_link_types() {
    use apiary_event::Timestamp;
    use apiary_sensor::capture::pcap::PcapWriter;
    use apiary_sensor::decode::LinkType;
    let eth = Synth::udp_frame(sa("10.1.0.1:1000"), sa("10.1.0.2:2000"), b"v");
    let ip = eth[14..].to_vec();
    let mut qinq = eth[..12].to_vec();
    qinq.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20]);
    qinq.extend_from_slice(&eth[12..]);
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&ip);
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    sll2.extend_from_slice(&ip);
    for (link, frame) in [
        (LinkType::Ethernet, qinq),
        (LinkType::LinuxSll, sll),
        (LinkType::LinuxSll2, sll2),
        (LinkType::RawIp, ip.clone()),
    ] {
        let mut w = PcapWriter::new(Vec::new(), link).unwrap();
        w.write_packet(Timestamp::from_secs_micros(crate::support::T0, 0), &frame).unwrap();
        let file = w.finish().unwrap();
        let mut ev = Vec::new();
        replay(&SensorConfig::default(), file.as_slice(), &mut ev, &ReplayOptions::default())
            .unwrap();
        assert_eq!(brief(&ev[0]), "+0.000000 NEW 10.1.0.1:1000 > 10.1.0.2:2000 p17", "{link:?}");
    }
}
