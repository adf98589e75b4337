//! MQTT wire codec: bytes <-> [`Packet`] for MQTT 3.1, 3.1.1 and 5.0.
//!
//! Pure code: no IO, no tokio, no broker state. The decoder never panics on
//! any input; every malformed frame becomes a [`DecodeError`] that carries the
//! MQTT 5 reason code the server must close the connection with.

//!
//! Files: `packet.rs` (the packet model), `decode.rs` (framing and packet
//! bodies), `encode.rs` (packet bodies and 3.x mappings), `properties.rs`
//! (MQTT 5 properties, both directions).

mod decode;
mod encode;
pub mod packet;
mod properties;
#[cfg(test)]
mod proptests;

pub use packet::*;

use bytes::BytesMut;

/// Why a frame could not be decoded. `reason_code()` gives the MQTT 5 code
/// (0x81 malformed, 0x82 protocol error, 0x95 packet too large, 0x84 unsupported version).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("unsupported protocol version {0}")]
    UnsupportedProtocol(u8),
}

impl DecodeError {
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::Malformed(_) => reason::MALFORMED_PACKET,
            DecodeError::Protocol(_) => reason::PROTOCOL_ERROR,
            DecodeError::TooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocol(_) => reason::UNSUPPORTED_PROTOCOL_VERSION,
        }
    }
}

/// Why a packet could not be encoded (a field too long for the wire format).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("{0} is too long for the wire format")]
    TooLong(&'static str),
}

/// Decode one packet from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame (nothing is
/// consumed). On success the frame's bytes are removed from `buf`; payloads and
/// topics share memory with it (no copy). `protocol` is `None` until CONNECT
/// has been read: then only CONNECT is acceptable (anything else is a
/// `Protocol` error) and its protocol name and level select the version, set
/// in `Connect::protocol`. A client codec passes `Some(protocol)` from the
/// start. With `Some(_)` a CONNECT is still decoded (with its own version);
/// refusing a second CONNECT is up to the caller. A frame whose size (fixed
/// header + remaining length) exceeds `max_packet_size` is refused with
/// `TooLarge` as soon as its fixed header is read, without buffering it.
/// After an error the connection must be closed: `buf` may have been consumed.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Option<Protocol>,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    decode::decode(buf, protocol, max_packet_size)
}

/// Encode `packet` for `protocol`, appending to `out`; returns the frame length.
///
/// For 3.x, MQTT 5-only fields are dropped and reason codes are mapped to 3.x
/// return codes. Packets with no 3.x form write nothing and return `Ok(0)`:
/// AUTH, and a DISCONNECT with a non-zero reason (a 3.x server just closes;
/// a reason 0 DISCONNECT is the client's and is written).
pub fn encode(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<usize, EncodeError> {
    encode::encode(packet, protocol, out)
}
