//! Golden wire tests: every message of protocol v2 in the forms the reference documents, decoded
//! and (for what apiary writes) encoded byte for byte.
#![allow(clippy::unwrap_used)]

use apiary_proto::wire::{
    decode_core_message, decode_node_message, encode_core_message, encode_node_message,
};
use apiary_proto::{
    CoreMessage, DecodeError, InstallPot, NodeCommand, NodeCommandType, NodeEvent, NodeEventKind,
    NodeMessage, NodeRegistration, NodeStatus, NodeStatusUpdate, NodeType, PotEvent, PotStatus,
    PotStatusUpdate, RegistrationAck, UnitStyle,
};

fn node(line: &str) -> NodeMessage {
    decode_node_message(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}")).message
}

fn core_line(msg: &CoreMessage, style: UnitStyle) -> String {
    let mut out = Vec::new();
    encode_core_message(msg, style, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn registration_reference_example_with_totp() {
    let m = node(
        r#"{"version":2,"message":{"NodeRegistration":{"node_id":12345,"node_name":"edge-1","address":"0.0.0.0","port":8080,"node_type":"Full","totp_code":"123456"}}}"#,
    );
    assert_eq!(
        m,
        NodeMessage::NodeRegistration(NodeRegistration {
            node_id: 12345,
            node_name: "edge-1".into(),
            address: "0.0.0.0".into(),
            port: 8080,
            node_type: NodeType::Full,
            totp_code: Some("123456".into()),
        })
    );
}

#[test]
fn registration_totp_optional_and_unknown_fields_ignored() {
    for code in [r#""#, r#","totp_code":null"#, r#","totp_code":"""#] {
        let line = format!(
            r#"{{"version":2,"message":{{"NodeRegistration":{{"node_id":1,"node_name":"n","address":"a","port":1,"node_type":{{"Agent":{{}}}},"extra":[1,2]{code}}}}}}}"#
        );
        let NodeMessage::NodeRegistration(r) = node(&line) else { panic!() };
        assert_eq!(r.code(), None, "{line}");
        assert_eq!(r.node_type, NodeType::Agent);
    }
}

#[test]
fn registration_requires_id_and_name() {
    let zero = r#"{"version":2,"message":{"NodeRegistration":{"node_id":0,"node_name":"n","address":"a","port":1,"node_type":"Full"}}}"#;
    assert!(matches!(decode_node_message(zero.as_bytes()), Err(DecodeError::Invalid { .. })));
    let empty = r#"{"version":2,"message":{"NodeRegistration":{"node_id":3,"node_name":" ","address":"a","port":1,"node_type":"Full"}}}"#;
    assert!(matches!(decode_node_message(empty.as_bytes()), Err(DecodeError::Invalid { .. })));
}

#[test]
fn status_update_unit_forms() {
    for status in [r#""Running""#, r#"{"Running":{}}"#, r#"{"Running":null}"#] {
        let line = format!(
            r#"{{"version":2,"message":{{"NodeStatusUpdate":{{"node_id":12345,"status":{status}}}}}}}"#
        );
        assert_eq!(
            node(&line),
            NodeMessage::NodeStatusUpdate(NodeStatusUpdate {
                node_id: 12345,
                status: NodeStatus::Running
            })
        );
    }
    let odd = r#"{"version":2,"message":{"NodeStatusUpdate":{"node_id":1,"status":"Sleeping"}}}"#;
    assert_eq!(
        node(odd),
        NodeMessage::NodeStatusUpdate(NodeStatusUpdate {
            node_id: 1,
            status: NodeStatus::Other("Sleeping".into())
        })
    );
}

#[test]
fn node_event_both_shapes() {
    let cases = [
        (r#""Started""#, NodeEventKind::Started, None, None, false),
        (r#"{"Stopped":{}}"#, NodeEventKind::Stopped, None, None, false),
        (
            r#"{"Alarm":{"description":"disk full"}}"#,
            NodeEventKind::Alarm,
            None,
            Some("disk full"),
            false,
        ),
        (r#"{"Error":{"message":"boom"}}"#, NodeEventKind::Error, Some("boom"), None, false),
        (
            r#"{"type":"Started","message":"node up"}"#,
            NodeEventKind::Started,
            Some("node up"),
            None,
            true,
        ),
        (
            r#"{"type":"Error","message":"Unknown command","description":"x"}"#,
            NodeEventKind::Error,
            Some("Unknown command"),
            Some("x"),
            true,
        ),
    ];
    for (body, kind, message, description, flat) in cases {
        let line = format!(r#"{{"version":2,"message":{{"NodeEvent":{body}}}}}"#);
        let inbound = decode_node_message(line.as_bytes()).unwrap();
        let NodeMessage::NodeEvent(e) = &inbound.message else { panic!() };
        assert_eq!(e.kind, kind, "{body}");
        assert_eq!(e.message.as_deref(), message, "{body}");
        assert_eq!(e.description.as_deref(), description, "{body}");
        assert_eq!(e.flat, flat, "{body}");
        let want = if flat { UnitStyle::EmptyObject } else { UnitStyle::BareString };
        assert_eq!(inbound.style_hint, Some(want));
        // What apiary writes decodes to the same event.
        let mut out = Vec::new();
        encode_node_message(&inbound.message, UnitStyle::EmptyObject, &mut out);
        let again = decode_node_message(&out).unwrap().message;
        if !flat && kind != NodeEventKind::Alarm && kind != NodeEventKind::Error {
            assert_eq!(again, inbound.message);
        }
        let NodeMessage::NodeEvent(e2) = again else { panic!() };
        assert_eq!(e2.kind, e.kind);
    }
}

#[test]
fn node_drop_every_form() {
    for m in [r#""NodeDrop""#, r#"{"NodeDrop":{}}"#, r#"{"NodeDrop":null}"#, r#"{"NodeDrop":true}"#]
    {
        let line = format!(r#"{{"version":2,"message":{m}}}"#);
        assert_eq!(node(&line), NodeMessage::NodeDrop, "{m}");
    }
    let bad = r#"{"version":2,"message":{"NodeDrop":5}}"#;
    assert!(decode_node_message(bad.as_bytes()).is_err());
}

#[test]
fn pot_status_update_reference_example_and_carrier() {
    let m = node(
        r#"{"version":2,"message":{"PotStatusUpdate":{"node_id":12345,"pot_id":"cowrie-01","pot_type":"cowrie","status":"Running","message":"started"}}}"#,
    );
    assert_eq!(
        m,
        NodeMessage::PotStatusUpdate(PotStatusUpdate {
            node_id: 12345,
            pot_id: "cowrie-01".into(),
            pot_type: "cowrie".into(),
            status: PotStatus::Running,
            message: Some("started".into()),
        })
    );
    let carrier = node(
        r#"{"version":2,"message":{"PotStatusUpdate":{"node_id":1,"pot_id":"c","pot_type":"","status":"","message":"x"}}}"#,
    );
    let NodeMessage::PotStatusUpdate(p) = carrier else { panic!() };
    assert!(p.is_event_carrier());
    let null_status = node(
        r#"{"version":2,"message":{"PotStatusUpdate":{"node_id":1,"pot_id":"c","pot_type":"cowrie","status":null,"message":null}}}"#,
    );
    let NodeMessage::PotStatusUpdate(p) = null_status else { panic!() };
    assert!(p.is_event_carrier());
}

/// A compact `PotEvent` line is parsed straight from its bytes; the same line spaced out takes
/// the general path through a `Value` tree. Both must give the same message, and a line the
/// direct parse refuses (a repeated key) still decodes as the general path reads it.
#[test]
fn pot_event_fast_path_matches_general_path() {
    let compact = r#"{"version":2,"message":{"PotEvent":{"node_id":7,"pot_id":"cowrie-01","pot_type":"cowrie","event_type":"cowrie.login.failed","timestamp":"2026-01-15T10:30:00Z","data":{"username":"root","password":"pw1","src_ip":"198.51.0.1","src_port":1025,"dst_port":22,"session":"s7x1"}}}}"#;
    let spaced = compact.replace("\"message\":{", "\"message\": {");
    let fast = decode_node_message(compact.as_bytes()).unwrap();
    let general = decode_node_message(spaced.as_bytes()).unwrap();
    assert_eq!(fast.message, general.message);
    assert_eq!(fast.version, general.version);
    let NodeMessage::PotEvent(p) = &fast.message else { panic!() };
    assert_eq!(p.field("src_ip").unwrap(), "198.51.0.1");
    let repeated = r#"{"version":2,"message":{"PotEvent":{"pot_id":"a","pot_id":"b"}}}"#;
    let NodeMessage::PotEvent(p) = node(repeated) else { panic!() };
    assert_eq!(p.pot_id, "b");
}

#[test]
fn pot_event_both_shapes_and_times() {
    let docs = node(
        r#"{"version":2,"message":{"PotEvent":{"node_id":12345,"pot_id":"cowrie-01","pot_type":"cowrie","event_type":"cowrie.login.failed","timestamp":"2024-01-15T10:30:00Z","data":{"username":"root","password":"x","src_ip":"1.2.3.4"}}}}"#,
    );
    let NodeMessage::PotEvent(p) = docs else { panic!() };
    assert_eq!(p.name(), Some("cowrie.login.failed"));
    assert_eq!(p.timestamp.unwrap().timestamp().as_secs(), 1_705_314_600);
    let go = node(
        r#"{"version":2,"message":{"PotEvent":{"node_id":1,"pot_id":"c","event":"cowrie.session.connect","message":"New connection","metadata":{"src_ip":"1.2.3.4"},"timestamp":1705314600}}}"#,
    );
    let NodeMessage::PotEvent(g) = go else { panic!() };
    assert_eq!(g.name(), Some("cowrie.session.connect"));
    assert_eq!(g.timestamp.unwrap().timestamp().as_secs(), 1_705_314_600);
    assert_eq!(g.field("src_ip").unwrap(), "1.2.3.4");
    // Round trip through apiary's encoder.
    for p in [p, g] {
        let msg = NodeMessage::PotEvent(p);
        let mut out = Vec::new();
        encode_node_message(&msg, UnitStyle::EmptyObject, &mut out);
        assert_eq!(decode_node_message(&out).unwrap().message, msg);
    }
    let bad_time = r#"{"version":2,"message":{"PotEvent":{"pot_id":"c","timestamp":"yesterday"}}}"#;
    assert!(matches!(decode_node_message(bad_time.as_bytes()), Err(DecodeError::Invalid { .. })));
    let empty = node(r#"{"version":2,"message":{"PotEvent":{}}}"#);
    assert_eq!(empty, NodeMessage::PotEvent(PotEvent::default()));
}

#[test]
fn registration_ack_golden() {
    let ack = CoreMessage::RegistrationAck(RegistrationAck {
        node_id: 7,
        accepted: true,
        message: Some("Registration successful".into()),
        totp_key: None,
    });
    assert_eq!(
        core_line(&ack, UnitStyle::EmptyObject),
        "{\"version\":2,\"message\":{\"RegistrationAck\":{\"accepted\":true,\"message\":\"Registration successful\",\"node_id\":7}}}\n"
    );
    let issued = CoreMessage::RegistrationAck(RegistrationAck {
        node_id: 7,
        accepted: true,
        message: Some("enrolled".into()),
        totp_key: Some("GEZDGNBV".into()),
    });
    let line = core_line(&issued, UnitStyle::BareString);
    assert!(line.contains("\"totp_key\":\"GEZDGNBV\""), "{line}");
    assert_eq!(decode_core_message(line.as_bytes()).unwrap().message, issued);
    // The docs' example omits node_id; apiary's node side still reads it.
    let docs = r#"{"version":2,"message":{"RegistrationAck":{"accepted":true,"message":"ok","totp_key":null}}}"#;
    let CoreMessage::RegistrationAck(a) = decode_core_message(docs.as_bytes()).unwrap().message
    else {
        panic!()
    };
    assert!(a.accepted);
    assert_eq!(a.node_id, 0);
}

#[test]
fn every_command_golden_in_both_styles() {
    let install = NodeCommandType::InstallPot(InstallPot {
        pot_id: "cowrie-01".into(),
        honeypot_type: "cowrie".into(),
        git_url: None,
        git_branch: Some("main".into()),
        config: Some([("ssh_port".to_string(), "2222".to_string())].into()),
        auto_start: true,
    });
    let cases: Vec<(NodeCommandType, &str, &str)> = vec![
        (NodeCommandType::Restart, r#"{"Restart":{}}"#, r#""Restart""#),
        (NodeCommandType::UpdateConfig, r#"{"UpdateConfig":{}}"#, r#""UpdateConfig""#),
        (NodeCommandType::GetInstalledPots, r#"{"GetInstalledPots":{}}"#, r#""GetInstalledPots""#),
        (NodeCommandType::DeployPot("cowrie-01".into()), r#"{"DeployPot":"cowrie-01"}"#, ""),
        (NodeCommandType::StopPot("cowrie-01".into()), r#"{"StopPot":"cowrie-01"}"#, ""),
        (NodeCommandType::RestartPot("cowrie-01".into()), r#"{"RestartPot":"cowrie-01"}"#, ""),
        (NodeCommandType::RemovePot("cowrie-01".into()), r#"{"RemovePot":"cowrie-01"}"#, ""),
        (NodeCommandType::GetPotStatus("cowrie-01".into()), r#"{"GetPotStatus":"cowrie-01"}"#, ""),
        (NodeCommandType::GetPotInfo("cowrie-01".into()), r#"{"GetPotInfo":"cowrie-01"}"#, ""),
        (NodeCommandType::GetPotLogs("cowrie-01".into()), r#"{"GetPotLogs":"cowrie-01"}"#, ""),
        (
            NodeCommandType::GetPotMetrics("cowrie-01".into()),
            r#"{"GetPotMetrics":"cowrie-01"}"#,
            "",
        ),
        (
            install,
            r#"{"InstallPot":{"auto_start":true,"config":{"ssh_port":"2222"},"git_branch":"main","git_url":null,"honeypot_type":"cowrie","pot_id":"cowrie-01"}}"#,
            "",
        ),
    ];
    for (cmd, object_form, bare_form) in cases {
        let msg = CoreMessage::NodeCommand(NodeCommand { node_id: 42, command: cmd.clone() });
        let obj = core_line(&msg, UnitStyle::EmptyObject);
        assert_eq!(
            obj,
            format!(
                "{{\"version\":2,\"message\":{{\"NodeCommand\":{{\"command\":{object_form},\"node_id\":42}}}}}}\n"
            )
        );
        let bare = core_line(&msg, UnitStyle::BareString);
        let want = if bare_form.is_empty() { object_form } else { bare_form };
        assert!(bare.contains(&format!("\"command\":{want}")), "{bare}");
        for line in [obj, bare] {
            assert_eq!(decode_core_message(line.as_bytes()).unwrap().message, msg);
        }
        // The storage form (serde) round-trips too.
        let stored = serde_json::to_string(&cmd).unwrap();
        assert_eq!(stored, object_form);
        assert_eq!(serde_json::from_str::<NodeCommandType>(&stored).unwrap(), cmd);
    }
}

#[test]
fn malformed_and_unknown_are_typed_errors() {
    type Check = fn(&DecodeError) -> bool;
    let cases: [(&str, Check); 6] = [
        ("{not json", |e| matches!(e, DecodeError::Json(_))),
        ("[1,2]", |e| matches!(e, DecodeError::Envelope(_))),
        (r#"{"version":2}"#, |e| matches!(e, DecodeError::Envelope(_))),
        (
            r#"{"version":2,"message":{"Teleport":{}}}"#,
            |e| matches!(e, DecodeError::UnknownMessage(n) if n == "Teleport"),
        ),
        (r#"{"version":2,"message":{"A":1,"B":2}}"#, |e| matches!(e, DecodeError::Envelope(_))),
        (r#"{"version":2,"message":{"NodeStatusUpdate":{"node_id":"x"}}}"#, |e| {
            matches!(e, DecodeError::Invalid { .. })
        }),
    ];
    for (line, ok) in cases {
        let err = decode_node_message(line.as_bytes()).unwrap_err();
        assert!(ok(&err), "{line}: {err:?}");
    }
}

#[test]
fn other_versions_still_parse() {
    let inbound = decode_node_message(br#"{"version":3,"message":"NodeDrop"}"#).unwrap();
    assert_eq!(inbound.version, Some(3));
    assert_eq!(inbound.style_hint, Some(UnitStyle::BareString));
    let missing = decode_node_message(br#"{"message":{"NodeDrop":{}}}"#).unwrap();
    assert_eq!(missing.version, None);
    assert_eq!(missing.style_hint, Some(UnitStyle::EmptyObject));
}

#[test]
fn apiary_event_extension_round_trips() {
    let mut e = apiary_event::Event::new(apiary_event::Kind::AUTH_ATTEMPT, "n1".into());
    e.src_ip = Some("10.1.2.3".parse().unwrap());
    let msg = NodeMessage::ApiaryEvent(Box::new(e));
    let mut out = Vec::new();
    encode_node_message(&msg, UnitStyle::EmptyObject, &mut out);
    assert_eq!(decode_node_message(&out).unwrap().message, msg);
}

#[test]
fn node_event_flat_encoding() {
    let e = NodeEvent {
        kind: NodeEventKind::Error,
        message: Some("m".into()),
        description: None,
        flat: true,
    };
    let mut out = Vec::new();
    encode_node_message(&NodeMessage::NodeEvent(e), UnitStyle::EmptyObject, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"version\":2,\"message\":{\"NodeEvent\":{\"message\":\"m\",\"type\":\"Error\"}}}\n"
    );
}

#[test]
fn apiary_sync_and_ack_golden() {
    let sync = node(r#"{"version":2,"message":{"ApiarySync":{"seq":7}}}"#);
    assert_eq!(sync, NodeMessage::ApiarySync(apiary_proto::ApiarySync { seq: 7 }));
    let mut out = Vec::new();
    encode_node_message(&sync, UnitStyle::EmptyObject, &mut out);
    assert_eq!(out, b"{\"version\":2,\"message\":{\"ApiarySync\":{\"seq\":7}}}\n");
    let ack = CoreMessage::ApiaryAck(apiary_proto::ApiaryAck { seq: 7, ok: true });
    let line = core_line(&ack, UnitStyle::EmptyObject);
    assert_eq!(line, "{\"version\":2,\"message\":{\"ApiaryAck\":{\"ok\":true,\"seq\":7}}}\n");
    assert_eq!(decode_core_message(line.as_bytes()).unwrap().message, ack);
    assert!(decode_node_message(br#"{"version":2,"message":{"ApiarySync":{}}}"#).is_err());
}

#[test]
fn apiary_event_fast_path_matches_the_general_path() {
    let mut e = apiary_event::Event::new(apiary_event::Kind::new("auth.attempt"), "n1".into());
    e.src_ip = Some("192.0.2.9".parse().unwrap());
    e.message = Some("}} tricky \"quotes\" }}".into());
    let mut fast = Vec::new();
    apiary_proto::wire::encode_apiary_event(&e, &mut fast);
    let mut general = Vec::new();
    encode_node_message(
        &NodeMessage::ApiaryEvent(Box::new(e.clone())),
        UnitStyle::EmptyObject,
        &mut general,
    );
    let want = NodeMessage::ApiaryEvent(Box::new(e));
    assert_eq!(decode_node_message(&fast).unwrap().message, want);
    assert_eq!(decode_node_message(&general).unwrap().message, want);
    // The prefix followed by something that is not exactly one event falls back and fails.
    let forged = br#"{"version":2,"message":{"ApiaryEvent":{"id":1}},"x":{"y":1}}"#;
    assert!(decode_node_message(forged).is_err());
}
