//! `apiary sensor` as a PokieStream user runs it: a `config.yaml` and a pcap replay, and the same
//! settings in apiary's TOML with a logger.

use std::net::SocketAddr;

use apiary_event::Timestamp;
use apiary_sensor::synth::Synth;

use crate::apiary;

fn capture(dir: &std::path::Path) -> std::path::PathBuf {
    let mut s = Synth::new(Timestamp::from_micros(1_700_000_000_000_000));
    let client: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    let server: SocketAddr = "198.51.100.1:80".parse().unwrap();
    s.tcp(client, server, 0x02, 1, b""); // SYN
    s.advance_micros(100);
    s.tcp(server, client, 0x12, 9, b""); // SYN-ACK
    s.advance_micros(100);
    s.tcp(client, server, 0x01, 2, b""); // FIN
    let path = dir.join("cap.pcap");
    std::fs::write(&path, s.to_pcap()).unwrap();
    path
}

#[test]
fn replays_a_pcap_with_a_pokiestream_config_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = capture(dir.path());
    std::fs::write(
        dir.path().join("config.yml"),
        "config:\n  iface: lo\n  queue_size: 100\n  filter:\n    strict: false\n",
    )
    .unwrap();
    let out = apiary()
        .args(["sensor", "--format", "packet_log", "-r"])
        .arg(&pcap)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let states: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["state"].to_string())
        .collect();
    assert_eq!(states, ["\"NEW\"", "\"ESTABLISHED\"", "\"CLOSE\""], "{text}");
}

#[test]
fn a_bad_pokiestream_config_prints_its_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "config:\n  filter:\n    port: [70000]\n").unwrap();
    let out = apiary()
        .args(["sensor", "-c", "bad.yaml", "-r", "none.pcap"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("bad.yaml: Validation Errors:"), "{text}");
}

#[test]
fn toml_sensor_section_sends_records_to_the_loggers() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = capture(dir.path());
    std::fs::write(
        dir.path().join("apiary.toml"),
        "node = \"s1\"\ndata_dir = \"data\"\n[sensor]\nqueue_size = 1000\n\
         [[logger]]\ntype = \"jsonl\"\n",
    )
    .unwrap();
    let out = apiary()
        .args(["sensor", "-c", "apiary.toml", "-r"])
        .arg(&pcap)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(dir.path().join("data/events.jsonl")).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
        .collect();
    assert_eq!(kinds, ["\"flow.new\"", "\"flow.established\"", "\"flow.close\""], "{text}");
    assert!(text.contains("\"node\":\"s1\""));
    assert!(text.contains("\"time\":\"2023-11-14T22:13:20.000000Z\""), "packet time: {text}");
}
