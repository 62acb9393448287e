//! The records of the packet-plugin bench and the `lua_bulk` example: one client's TCP `NEW`
//! records, each with its own port and time, in batches of 1024 like the sensor's.

use apiary_event::{FlowState, Timestamp, Transport};
use apiary_script::Record;

/// `n` records in batches of 1024.
pub(crate) fn batches(n: usize) -> Vec<Vec<Record>> {
    let base = Record {
        src_ip: Some("10.0.0.1".parse().unwrap()),
        dst_ip: Some("10.0.0.2".parse().unwrap()),
        src_port: Some(40000),
        dst_port: Some(80),
        protocol_num: 6,
        transport: Some(Transport::Tcp),
        state: Some(FlowState::New),
        time: Timestamp::parse("2025-08-20T10:00:00.000001").unwrap(),
        session_id: Some("0198c6f0-1234-7abc-8def-0123456789ab".parse().unwrap()),
        payload: Default::default(),
    };
    (0..n)
        .map(|i| Record {
            src_port: Some(i as u16),
            // Distinct times, as in a capture: each record's timestamp is its own.
            time: Timestamp::from_micros(base.time.as_micros() + i as i64 * 7),
            ..base.clone()
        })
        .collect::<Vec<_>>()
        .chunks(1024)
        .map(<[Record]>::to_vec)
        .collect()
}
