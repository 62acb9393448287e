//! PokieStream compatibility: its `config.yaml` with every documented key is accepted, and
//! records in the `packet_log` view carry exactly its ten keys.

use apiary_event::encode::packet_log;
use apiary_sensor::SensorConfig;

use crate::support::{run, sa, synth};

#[test]
fn config_yaml_with_every_documented_key_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("myplugin.py");
    std::fs::write(&plugin, "async def receiver(packet_log):\n    print(packet_log)\n").unwrap();
    let yaml = format!(
        r#"
config:
  iface: " eth0 "
  queue_size: 5000
  plugin:
    path: "{}"
    pass_config: true
  filter:
    strict: false
    protocol:
      - tcp
      - udp
      - icmp
      - ip
      - arp
      - all
    source:
      - 192.168.1.0/24
      - 10.0.0.1
    destination:
      - 2001:db8::/32
    port:
      - 22
      - 53
      - 443
    payload:
      dns:
        enabled: true
        ports:
          - 53
        match:
          - "*.example.com"
          - example.org
    scapy: "tcp and (port 80 or port 443)"
  NOT_RECOMMENDED:
    bypass_polling_delay: false
  my_custom_key:
    token: abc
"#,
        plugin.display()
    );
    let path = dir.path().join("config.yml");
    std::fs::write(&path, yaml).unwrap();
    let loaded = SensorConfig::load_pokiestream(&path).unwrap();
    let c = &loaded.sensor;
    assert_eq!(c.iface.as_deref(), Some("eth0"));
    assert_eq!(c.queue_size, 5000);
    assert!(c.plugin.pass_config);
    assert_eq!(c.filter.protocol.as_ref().unwrap().len(), 6);
    assert_eq!(c.filter.port, Some(vec![22, 53, 443]));
    assert!(c.filter.payload.dns.enabled);
    assert_eq!(c.filter.payload.dns.patterns, ["*.example.com", "example.org"]);
    assert_eq!(c.filter.scapy, "tcp and (port 80 or port 443)");
    assert!(!c.not_recommended.bypass_polling_delay);
    // Plugins with pass_config see the merged config, custom keys included.
    assert_eq!(loaded.plugin_view["filter"]["strict"], false);
    assert_eq!(loaded.plugin_view["my_custom_key"]["token"], "abc");
    // The shipped example (no queue_size) loads with the default.
    let example = "config:\n  iface: eth0\n  filter:\n    payload:\n      dns:\n        enabled: true\n        ports: [53]\n        match: ['*.mydomain.com']\n    scapy: \"tcp and (port 80 or port 443)\"\n";
    assert_eq!(SensorConfig::from_pokiestream_yaml(example).unwrap().sensor.queue_size, 10_000);
    // A plugin path that does not exist is a validation error, PokieStream style.
    let bad = "config:\n  iface: eth0\n  plugin:\n    path: /nonexistent/p.py\n";
    let err = SensorConfig::from_pokiestream_yaml(bad).unwrap_err().to_string();
    assert!(err.starts_with("Validation Errors:") && err.contains("plugin.path"), "{err}");
}

#[test]
fn toml_section_round_trips_and_rejects_unknown_keys() {
    let toml_text = r#"
iface = "lo"
queue_size = 20000
[filter]
strict = true
source = ["10.0.0.0/8"]
destination = ["10.0.0.0/8"]
[filter.payload.tls]
enabled = true
ports = [443]
match = ["*.example"]
[tracking]
tcp_timeout_secs = 30
max_flows = 5000
[capture]
workers = 2
"#;
    let c: SensorConfig = toml::from_str(toml_text).unwrap();
    c.check().unwrap();
    assert_eq!(c.tracking.max_flows, 5000);
    assert!(toml::from_str::<SensorConfig>("[tracking]\ntcp_timeout = 3\n").is_err());
    let bad: SensorConfig = toml::from_str("[filter]\nprotocol = [\"sctp\"]\n").unwrap();
    assert!(bad.check().is_err());
}

#[test]
fn every_record_has_exactly_the_ten_packet_log_keys() {
    let mut s = synth();
    s.tcp_session(sa("10.0.0.1:1"), sa("10.0.0.2:2"), b"a", b"b", 5);
    s.udp(sa("10.0.0.1:3"), sa("10.0.0.2:4"), b"c");
    s.echo("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), false);
    let (ev, _) = run(&SensorConfig::default(), &s);
    assert_eq!(ev.len(), 6);
    for e in &ev {
        let v = packet_log::to_value(e).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = packet_log::KEYS.to_vec();
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want);
        let ts = v["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), 26, "{ts}");
        assert!(!ts.ends_with('Z'));
        let mut line = Vec::new();
        packet_log::json_line(e, &mut line);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&line).unwrap(), v);
    }
}
