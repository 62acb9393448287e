//! Fuzz target: the HoneyBee v2 framing decoder and message decoder on arbitrary node bytes.
#![no_main]

use apiary_proto::frame::{BytesMut, Frame, FrameDecoder};
use apiary_proto::wire::{UnitStyle, decode_core_message, decode_node_message, encode_node_message};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Feed the bytes in uneven chunks, as TCP would, with a small cap so the cap path is hit.
    let mut dec = FrameDecoder::new(4096);
    let mut buf = BytesMut::new();
    let chunk = usize::from(data.first().copied().unwrap_or(7)).max(1);
    let mut consumed = 0usize;
    'outer: for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(Frame::Value(v))) => {
                    assert!(v.len() <= 4096);
                    consumed += v.len();
                    if let Ok(inbound) = decode_node_message(&v) {
                        // Whatever decodes must encode and decode again.
                        let mut out = Vec::new();
                        encode_node_message(&inbound.message, UnitStyle::EmptyObject, &mut out);
                        assert!(decode_node_message(&out).is_ok());
                    }
                    let _ = decode_core_message(&v);
                }
                Ok(Some(Frame::Garbage { len })) => consumed += len,
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
    assert!(consumed <= data.len());
});
