//! PokieStream plugins written exactly to its documented API run unchanged (the examples of
//! its plugin how-to), through `apiary_sensor::run` on a replayed capture.

use std::sync::{Arc, Mutex};

use apiary_sensor::{RunOptions, SensorConfig, Source, run};

use crate::support::{sa, synth};

fn run_plugin(file: &str, code: &str, pass_config: bool, dns: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join(file);
    std::fs::write(&plugin, code).unwrap();
    let mut s = synth();
    s.tcp_session(sa("10.0.0.1:40000"), sa("10.0.0.2:80"), b"x", b"y", 10);
    s.udp(
        sa("10.0.0.1:5353"),
        sa("10.0.0.2:53"),
        &apiary_sensor::extract::dns::build_query(1, "example.com"),
    );
    s.echo("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), false);
    let pcap = dir.path().join("t.pcap");
    std::fs::write(&pcap, s.to_pcap()).unwrap();
    let yaml = format!(
        "config:\n  iface: lo\n  plugin:\n    path: {}\n    pass_config: {pass_config}\n  filter:\n    payload:\n      dns:\n        enabled: {dns}\n        ports: [53]\n",
        plugin.display()
    );
    let loaded = SensorConfig::from_pokiestream_yaml(&yaml).unwrap();
    let (output, buf) = apiary_script::Output::buffer();
    let mut opts = RunOptions::new(Source::File(pcap));
    opts.plugin_config = loaded.plugin_view.clone();
    opts.plugin_output = output;
    let sink: Arc<Mutex<Vec<u8>>> = Arc::default();
    struct W(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let stats = run(&loaded.sensor, opts, Box::new(W(sink))).unwrap();
    assert_eq!(stats.records, 6);
    String::from_utf8(buf.lock().unwrap().clone()).unwrap()
}

fn python_available() -> bool {
    std::process::Command::new("python3").arg("-c").arg("pass").status().is_ok_and(|s| s.success())
}

#[test]
fn python_receiver_that_prints_the_log() {
    if !python_available() {
        println!("skipped: python3 not installed");
        return;
    }
    let out = run_plugin(
        "myplugin.py",
        "\nasync def receiver(packet_log):\n    print(packet_log)\n\n",
        false,
        false,
    );
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(out.contains("'state': 'NEW'") && out.contains("'protocol_name': 'TCP'"), "{out}");
    assert!(out.contains("'src_port': None") && out.contains("'payload': None"), "{out}");
}

#[test]
fn python_dns_payload_example() {
    if !python_available() {
        println!("skipped: python3 not installed");
        return;
    }
    let code = "\nasync def receiver(packet_log):\n\n    # Print the payload data\n    print(packet_log[\"payload\"])\n    # Will print out: {'dns': 'example.com'}\n";
    let out = run_plugin("dnsplugin.py", code, false, true);
    assert!(out.lines().any(|l| l == "{'dns': 'example.com'}"), "{out}");
}

#[test]
fn python_pass_config_reads_config_filter_strict() {
    if !python_available() {
        println!("skipped: python3 not installed");
        return;
    }
    let code = "async def receiver(packet_log, config):\n    print(config.filter.strict)\n";
    let out = run_plugin("cfg.py", code, true, false);
    assert!(out.lines().all(|l| l == "False") && out.lines().count() == 6, "{out}");
}

#[test]
fn lua_receiver_with_nil_checks_and_pass_config() {
    let code = r#"
function receiver(packet_log)
    local parts = {}
    if packet_log.timestamp then
        table.insert(parts, "["..packet_log.timestamp.."]")
    end
    if packet_log.src_port then
        table.insert(parts, packet_log.src_ip..":"..packet_log.src_port)
    end
    print(table.concat(parts, " "))
end
"#;
    let out = run_plugin("myplugin.lua", code, false, false);
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(
        out.lines().next().unwrap().starts_with("[2023-11-14T22:13:20.000000] 10.0.0.1:40000"),
        "{out}"
    );
    let cfg = "function receiver(packet_log, config)\n    print(config.filter.strict)\nend\n";
    let out = run_plugin("cfg.lua", cfg, true, false);
    assert!(out.lines().all(|l| l == "false") && out.lines().count() == 6, "{out}");
}
