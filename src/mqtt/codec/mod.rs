//! MQTT wire codec: bytes <-> [`Packet`] for MQTT 3.1, 3.1.1 and 5.0.
//!
//! Pure code: no IO, no tokio, no broker state. The decoder never panics on
//! any input; every malformed frame becomes a [`DecodeError`] that carries the
//! MQTT 5 reason code the server must close the connection with.

pub mod packet;

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
/// has been read: then only CONNECT (or, for a client codec, CONNACK) is
/// acceptable and its protocol level selects the version. A frame whose
/// remaining length exceeds `max_packet_size` is refused with `TooLarge` as
/// soon as its fixed header is read, without buffering it.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Option<Protocol>,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, protocol, max_packet_size);
    todo!("codec helper")
}

/// Encode `packet` for `protocol`, appending to `out`; returns the frame length.
pub fn encode(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<usize, EncodeError> {
    let _ = (packet, protocol, out);
    todo!("codec helper")
}
