#![no_main]
//! Fuzzes the MQTT decoder: arbitrary bytes are decoded before CONNECT
//! (protocol `None`) and for each protocol version, with no size limit and a
//! small one; every packet that decodes is encoded again. Nothing may panic.
//!
//! Run from the repository root: `cargo +nightly fuzz run decode --fuzz-dir tests/fuzz`.

use bytes::BytesMut;
use junction::mqtt::codec::{decode, encode, Packet, Protocol};
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], protocol: Option<Protocol>, max: usize) {
    let mut buf = BytesMut::from(data);
    let mut protocol = protocol;
    while let Ok(Some(packet)) = decode(&mut buf, protocol, max) {
        if let Packet::Connect(c) = &packet {
            protocol = c.protocol;
        }
        if let Some(v) = protocol {
            let mut out = BytesMut::new();
            let _ = encode(&packet, v, &mut out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for protocol in [None, Some(Protocol::V3), Some(Protocol::V4), Some(Protocol::V5)] {
        run(data, protocol, usize::MAX);
        run(data, protocol, 64);
    }
});
