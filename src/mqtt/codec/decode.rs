//! Decoding: splitting one frame off the input buffer (fixed header, frame
//! size limit, packet type and flag checks) and parsing every control packet
//! body for MQTT 3.1, 3.1.1 and 5.0.
//!
//! Also holds [`Reader`], the bounds-checked cursor every read goes through:
//! nothing here indexes, unwraps or does unchecked arithmetic, so any input
//! ends in a packet or a [`DecodeError`], never a panic. Topics, payloads and
//! binary fields are zero-copy slices of the frame.

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

use super::packet::*;
use super::properties::{self, MAX_VARINT};
use super::DecodeError::{self, Malformed, Protocol as ProtocolError};

pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const PUBREC: u8 = 5;
pub(crate) const PUBREL: u8 = 6;
pub(crate) const PUBCOMP: u8 = 7;
pub(crate) const SUBSCRIBE: u8 = 8;
pub(crate) const SUBACK: u8 = 9;
pub(crate) const UNSUBSCRIBE: u8 = 10;
pub(crate) const UNSUBACK: u8 = 11;
pub(crate) const PINGREQ: u8 = 12;
pub(crate) const PINGRESP: u8 = 13;
pub(crate) const DISCONNECT: u8 = 14;
pub(crate) const AUTH: u8 = 15;

const SHORT: DecodeError = Malformed("packet shorter than its fields");
const TRAILING: DecodeError = Malformed("unexpected bytes after the packet's fields");

/// Bounds-checked cursor over (part of) a frame.
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(SHORT);
        }
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(SHORT);
        }
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(SHORT);
        }
        Ok(self.buf.get_u32())
    }

    /// Variable Byte Integer: at most 4 bytes, minimally encoded.
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(Malformed("variable byte integer not minimally encoded"));
                }
                return Ok(value);
            }
        }
        Err(Malformed("variable byte integer longer than 4 bytes"))
    }

    /// The next `n` bytes, zero-copy.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.buf.len() {
            return Err(SHORT);
        }
        Ok(self.buf.split_to(n))
    }

    /// A reader over the next `n` bytes.
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader, DecodeError> {
        self.take(n).map(Reader::new)
    }

    /// Binary Data: 2-byte length, then the bytes (zero-copy).
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }

    /// UTF-8 Encoded String as a zero-copy [`ByteString`].
    pub(crate) fn bytestring(&mut self) -> Result<ByteString, DecodeError> {
        let b = self.binary()?;
        check_no_nul(&b)?;
        ByteString::try_from(b).map_err(|_| Malformed("invalid UTF-8 string"))
    }

    /// UTF-8 Encoded String copied into a `String`.
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let n = usize::from(self.u16()?);
        let raw = self.buf.get(..n).ok_or(SHORT)?;
        check_no_nul(raw)?;
        let s = std::str::from_utf8(raw)
            .map_err(|_| Malformed("invalid UTF-8 string"))?
            .to_owned();
        self.buf.advance(n);
        Ok(s)
    }

    /// Everything left, zero-copy.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(TRAILING)
        }
    }
}

fn check_no_nul(b: &[u8]) -> Result<(), DecodeError> {
    if b.contains(&0) {
        Err(Malformed("UTF-8 string contains U+0000"))
    } else {
        Ok(())
    }
}

/// Checks the packet type and the flags of the fixed header's first byte.
fn check_first_byte(kind: u8, flags: u8, protocol: Option<Protocol>) -> Result<(), DecodeError> {
    let expected = match kind {
        0 => return Err(Malformed("reserved packet type 0")),
        PUBLISH => return Ok(()), // flags checked with the body
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => 0b0010,
        _ => 0,
    };
    if flags != expected {
        return Err(Malformed("invalid fixed header flags"));
    }
    match protocol {
        None if kind != CONNECT => Err(ProtocolError("first packet must be CONNECT")),
        Some(Protocol::V3 | Protocol::V4) if kind == AUTH => Err(Malformed("reserved packet type 15")),
        _ => Ok(()),
    }
}

pub(crate) fn decode(
    buf: &mut BytesMut,
    protocol: Option<Protocol>,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let kind = first >> 4;
    let flags = first & 0x0F;
    check_first_byte(kind, flags, protocol)?;

    // Remaining length: at most 4 bytes, minimally encoded.
    let mut remaining: usize = 0;
    let mut header_len: usize = 1;
    loop {
        let Some(&b) = buf.get(header_len) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7F) << (7 * (header_len - 1));
        header_len += 1;
        if b & 0x80 == 0 {
            if b == 0 && header_len > 2 {
                return Err(Malformed("remaining length not minimally encoded"));
            }
            break;
        }
        if header_len == 5 {
            return Err(Malformed("remaining length longer than 4 bytes"));
        }
    }
    debug_assert!(remaining <= MAX_VARINT);
    let size = header_len + remaining;
    if size > max_packet_size {
        return Err(DecodeError::TooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    buf.advance(header_len);
    let mut r = Reader::new(buf.split_to(remaining).freeze());

    let packet = match (kind, protocol) {
        (CONNECT, _) => Packet::Connect(Box::new(connect(&mut r)?)),
        (_, None) => return Err(ProtocolError("first packet must be CONNECT")),
        (CONNACK, Some(v)) => Packet::ConnAck(connack(&mut r, v)?),
        (PUBLISH, Some(v)) => Packet::Publish(publish(&mut r, flags, v)?),
        (PUBACK, Some(v)) => Packet::PubAck(ack(&mut r, v)?),
        (PUBREC, Some(v)) => Packet::PubRec(ack(&mut r, v)?),
        (PUBREL, Some(v)) => Packet::PubRel(ack(&mut r, v)?),
        (PUBCOMP, Some(v)) => Packet::PubComp(ack(&mut r, v)?),
        (SUBSCRIBE, Some(v)) => Packet::Subscribe(subscribe(&mut r, v)?),
        (SUBACK, Some(v)) => Packet::SubAck(suback(&mut r, v)?),
        (UNSUBSCRIBE, Some(v)) => Packet::Unsubscribe(unsubscribe(&mut r, v)?),
        (UNSUBACK, Some(v)) => Packet::UnsubAck(unsuback(&mut r, v)?),
        (PINGREQ, Some(_)) => {
            r.finish()?;
            Packet::PingReq
        }
        (PINGRESP, Some(_)) => {
            r.finish()?;
            Packet::PingResp
        }
        (DISCONNECT, Some(v)) => Packet::Disconnect(disconnect(&mut r, v)?),
        (_, Some(_)) => Packet::Auth(auth(&mut r)?),
    };
    Ok(Some(packet))
}

fn is_v5(v: Protocol) -> bool {
    v == Protocol::V5
}

fn pkid(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(ProtocolError("packet identifier 0")),
        id => Ok(id),
    }
}

fn connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let v = match (&name[..], level) {
        (b"MQIsdp", 3) => Protocol::V3,
        (b"MQTT", 4) => Protocol::V4,
        (b"MQTT", 5) => Protocol::V5,
        _ => return Err(DecodeError::UnsupportedProtocol(level)),
    };
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(Malformed("CONNECT reserved flag set"));
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    let will_qos = QoS::from_u8(will_qos).ok_or(Malformed("will QoS 3"))?;
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(Malformed("will QoS or retain set without will flag"));
    }
    if has_password && !has_username && !is_v5(v) {
        return Err(Malformed("password without user name"));
    }
    let keep_alive = r.u16()?;
    let properties = if is_v5(v) {
        properties::read_connect(r)?
    } else {
        ConnectProperties::default()
    };
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = if is_v5(v) {
            properties::read_will(r)?
        } else {
            WillProperties::default()
        };
        let topic = r.bytestring()?;
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username { Some(r.string()?) } else { None };
    let password = if has_password { Some(r.binary()?) } else { None };
    r.finish()?;
    Ok(Connect {
        protocol: Some(v),
        keep_alive,
        client_id,
        clean_start,
        username,
        password,
        will,
        properties,
    })
}

/// 3.x CONNACK return code → MQTT 5 reason code.
fn connack_code_from_v3(code: u8) -> Result<u8, DecodeError> {
    Ok(match code {
        0 => reason::SUCCESS,
        1 => reason::UNSUPPORTED_PROTOCOL_VERSION,
        2 => reason::CLIENT_IDENTIFIER_NOT_VALID,
        3 => reason::SERVER_UNAVAILABLE,
        4 => reason::BAD_USER_NAME_OR_PASSWORD,
        5 => reason::NOT_AUTHORIZED,
        _ => return Err(Malformed("reserved CONNACK return code")),
    })
}

fn connack(r: &mut Reader, v: Protocol) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    // MQTT 3.1 has no session present flag: the whole byte is unused.
    let session_present = match v {
        Protocol::V3 => false,
        _ if flags & 0xFE != 0 => return Err(Malformed("CONNACK reserved flags set")),
        _ => flags & 0x01 != 0,
    };
    let code = r.u8()?;
    let (code, properties) = if is_v5(v) {
        let props = if r.is_empty() {
            ConnAckProperties::default()
        } else {
            properties::read_connack(r)?
        };
        (code, props)
    } else {
        (connack_code_from_v3(code)?, ConnAckProperties::default())
    };
    r.finish()?;
    Ok(ConnAck {
        session_present,
        code,
        properties,
    })
}

fn publish(r: &mut Reader, flags: u8, v: Protocol) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let retain = flags & 0x01 != 0;
    let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(Malformed("PUBLISH QoS 3"))?;
    if qos == QoS::AtMostOnce && dup {
        return Err(Malformed("DUP set on a QoS 0 PUBLISH"));
    }
    let topic = r.bytestring()?;
    let pkid = if qos == QoS::AtMostOnce { 0 } else { pkid(r)? };
    let properties = if is_v5(v) {
        properties::read_publish(r)?
    } else {
        PublishProperties::default()
    };
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(ProtocolError("empty topic name"));
    }
    if topic.as_bytes().iter().any(|&b| b == b'+' || b == b'#') {
        return Err(ProtocolError("wildcard in topic name"));
    }
    let payload = r.rest();
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        pkid,
        properties,
        payload,
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP.
fn ack(r: &mut Reader, v: Protocol) -> Result<PubAck, DecodeError> {
    let pkid = pkid(r)?;
    let mut ack = PubAck {
        pkid,
        ..PubAck::default()
    };
    if is_v5(v) && !r.is_empty() {
        ack.reason = r.u8()?;
        if !r.is_empty() {
            ack.properties = properties::read_ack(r)?;
        }
    }
    r.finish()?;
    Ok(ack)
}

fn subscribe(r: &mut Reader, v: Protocol) -> Result<Subscribe, DecodeError> {
    let pkid = pkid(r)?;
    let properties = if is_v5(v) {
        properties::read_subscribe(r)?
    } else {
        SubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = r.u8()?;
        let qos = QoS::from_u8(options & 0x03).ok_or(Malformed("subscription QoS 3"))?;
        let f = if is_v5(v) {
            if options & 0xC0 != 0 {
                return Err(Malformed("subscription options reserved bits set"));
            }
            let retain_handling = (options >> 4) & 0x03;
            if retain_handling == 3 {
                return Err(ProtocolError("retain handling 3"));
            }
            SubscribeFilter {
                filter,
                qos,
                no_local: options & 0x04 != 0,
                retain_as_published: options & 0x08 != 0,
                retain_handling,
            }
        } else {
            if options & 0xFC != 0 {
                return Err(Malformed("subscription options reserved bits set"));
            }
            SubscribeFilter {
                filter,
                qos,
                ..SubscribeFilter::default()
            }
        };
        filters.push(f);
    }
    if filters.is_empty() {
        return Err(ProtocolError("SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe {
        pkid,
        filters,
        properties,
    })
}

fn suback(r: &mut Reader, v: Protocol) -> Result<SubAck, DecodeError> {
    let pkid = pkid(r)?;
    let properties = if is_v5(v) {
        properties::read_ack(r)?
    } else {
        AckProperties::default()
    };
    let reasons = r.rest().to_vec();
    if reasons.is_empty() {
        return Err(ProtocolError("SUBACK without return codes"));
    }
    if !is_v5(v) && reasons.iter().any(|&c| !matches!(c, 0 | 1 | 2 | 0x80)) {
        return Err(Malformed("reserved SUBACK return code"));
    }
    Ok(SubAck {
        pkid,
        reasons,
        properties,
    })
}

fn unsubscribe(r: &mut Reader, v: Protocol) -> Result<Unsubscribe, DecodeError> {
    let pkid = pkid(r)?;
    let user_properties = if is_v5(v) {
        properties::read_unsubscribe(r)?
    } else {
        Vec::new()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(ProtocolError("UNSUBSCRIBE without topic filters"));
    }
    Ok(Unsubscribe {
        pkid,
        filters,
        user_properties,
    })
}

fn unsuback(r: &mut Reader, v: Protocol) -> Result<UnsubAck, DecodeError> {
    let pkid = pkid(r)?;
    if !is_v5(v) {
        r.finish()?;
        return Ok(UnsubAck {
            pkid,
            ..UnsubAck::default()
        });
    }
    let properties = properties::read_ack(r)?;
    let reasons = r.rest().to_vec();
    if reasons.is_empty() {
        return Err(ProtocolError("UNSUBACK without reason codes"));
    }
    Ok(UnsubAck {
        pkid,
        reasons,
        properties,
    })
}

fn disconnect(r: &mut Reader, v: Protocol) -> Result<Disconnect, DecodeError> {
    let mut d = Disconnect::default();
    if is_v5(v) && !r.is_empty() {
        d.reason = r.u8()?;
        if !r.is_empty() {
            d.properties = properties::read_disconnect(r)?;
        }
    }
    r.finish()?;
    Ok(d)
}

fn auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let mut a = Auth::default();
    if !r.is_empty() {
        a.reason = r.u8()?;
        if !r.is_empty() {
            a.properties = properties::read_auth(r)?;
        }
    }
    r.finish()?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::super::{decode, encode};
    use super::*;
    use DecodeError::{TooLarge, UnsupportedProtocol};

    const MAX: usize = 1 << 20;
    const ALL: [Protocol; 3] = [Protocol::V3, Protocol::V4, Protocol::V5];

    fn dec(bytes: &[u8], p: Option<Protocol>) -> Result<Option<Packet>, DecodeError> {
        let mut b = BytesMut::from(bytes);
        decode(&mut b, p, MAX)
    }

    fn v5(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
        dec(bytes, Some(Protocol::V5))
    }

    fn v4(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
        dec(bytes, Some(Protocol::V4))
    }

    fn connect_v4_bytes() -> Vec<u8> {
        // CONNECT, MQTT 3.1.1, clean session, keep alive 60, client id "c".
        vec![0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'c']
    }

    #[test]
    fn incomplete_frames_consume_nothing() {
        let mut frame = BytesMut::new();
        let p = Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: "a/b".into(),
            pkid: 7,
            payload: Bytes::from(vec![7u8; 300]),
            ..Publish::default()
        });
        encode(&p, Protocol::V5, &mut frame).unwrap();
        for n in 0..frame.len() {
            let mut part = BytesMut::from(&frame[..n]);
            assert_eq!(decode(&mut part, Some(Protocol::V5), MAX), Ok(None), "prefix {n}");
            assert_eq!(part.len(), n);
        }
        let mut whole = frame.clone();
        whole.extend_from_slice(&[0xC0]); // start of the next packet stays
        assert_eq!(decode(&mut whole, Some(Protocol::V5), MAX), Ok(Some(p)));
        assert_eq!(&whole[..], &[0xC0]);
    }

    #[test]
    fn remaining_length_rules() {
        // 5th length byte.
        assert_eq!(
            v4(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(Malformed("remaining length longer than 4 bytes"))
        );
        // Detected before the 5th byte arrives.
        assert!(matches!(v4(&[0x30, 0x80, 0x80, 0x80, 0x80]), Err(Malformed(_))));
        // Non-minimal encoding of 0.
        assert!(matches!(v4(&[0xC0, 0x80, 0x00]), Err(Malformed(_))));
        // Incomplete length.
        assert_eq!(v4(&[0x30, 0x80]), Ok(None));
        // Largest length decodes as a size: refused only by max_packet_size.
        let mut b = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
        assert_eq!(
            decode(&mut b, Some(Protocol::V4), usize::MAX),
            Ok(None),
            "needs 268435455 more bytes"
        );
    }

    #[test]
    fn too_large_before_the_frame_is_buffered() {
        // PUBLISH announcing 1000 bytes, only the header present.
        let mut b = BytesMut::from(&[0x30, 0xE8, 0x07][..]);
        assert_eq!(
            decode(&mut b, Some(Protocol::V4), 1002),
            Err(TooLarge { size: 1003, max: 1002 })
        );
        assert_eq!(b.len(), 3);
        let mut b = BytesMut::from(&[0x30, 0xE8, 0x07][..]);
        assert_eq!(decode(&mut b, Some(Protocol::V4), 1003), Ok(None));
        // max counts the fixed header: PINGREQ is 2 bytes.
        let mut b = BytesMut::from(&[0xC0, 0][..]);
        assert_eq!(decode(&mut b, Some(Protocol::V4), 1), Err(TooLarge { size: 2, max: 1 }));
    }

    #[test]
    fn reserved_flags() {
        for p in ALL {
            assert!(
                matches!(dec(&[0x41, 2, 0, 1], Some(p)), Err(Malformed(_))),
                "PUBACK flags"
            );
            assert!(
                matches!(dec(&[0x60, 2, 0, 1], Some(p)), Err(Malformed(_))),
                "PUBREL flags"
            );
            assert!(matches!(
                dec(&[0x80, 6, 0, 1, 0, 1, b'a', 0], Some(p)),
                Err(Malformed(_))
            ));
            assert!(matches!(dec(&[0xA0, 5, 0, 1, 0, 1, b'a'], Some(p)), Err(Malformed(_))));
            assert!(matches!(dec(&[0xC1, 0], Some(p)), Err(Malformed(_))));
            assert!(matches!(dec(&[0x00, 0], Some(p)), Err(Malformed(_))));
            assert!(matches!(dec(&[0x11, 0], Some(p)), Err(Malformed(_))));
            // PUBLISH QoS 3, and DUP on QoS 0.
            assert!(matches!(dec(&[0x36, 5, 0, 1, b'a', 0, 1], Some(p)), Err(Malformed(_))));
            assert!(matches!(dec(&[0x38, 3, 0, 1, b'a'], Some(p)), Err(Malformed(_))));
            assert!(matches!(dec(&[0x62, 2, 0, 1], Some(p)), Ok(Some(Packet::PubRel(_)))));
        }
        assert!(matches!(v4(&[0xF0, 0]), Err(Malformed(_))), "AUTH is not 3.1.1");
        assert_eq!(v5(&[0xF0, 0]), Ok(Some(Packet::Auth(Auth::default()))));
    }

    #[test]
    fn first_packet_must_be_connect() {
        assert_eq!(
            dec(&[0xC0, 0], None),
            Err(ProtocolError("first packet must be CONNECT"))
        );
        assert_eq!(
            dec(&[0x20, 2, 0, 0], None),
            Err(ProtocolError("first packet must be CONNECT"))
        );
        let Ok(Some(Packet::Connect(c))) = dec(&connect_v4_bytes(), None) else {
            panic!()
        };
        assert_eq!(c.protocol, Some(Protocol::V4));
        assert_eq!(c.client_id, "c");
        assert!(c.clean_start);
        assert_eq!(c.keep_alive, 60);
        // A CONNECT is still decodable once the protocol is known.
        assert!(matches!(
            dec(&connect_v4_bytes(), Some(Protocol::V5)),
            Ok(Some(Packet::Connect(_)))
        ));
    }

    #[test]
    fn connect_protocol_names_and_levels() {
        let mut v3 = vec![0x10, 15, 0, 6];
        v3.extend_from_slice(b"MQIsdp");
        v3.extend_from_slice(&[3, 0x02, 0, 10, 0, 1, b'c']);
        let Ok(Some(Packet::Connect(c))) = dec(&v3, None) else {
            panic!()
        };
        assert_eq!(c.protocol, Some(Protocol::V3));

        let mut level = connect_v4_bytes();
        level[8] = 6;
        assert_eq!(dec(&level, None), Err(UnsupportedProtocol(6)));
        level[8] = 3; // "MQTT" with level 3
        assert_eq!(dec(&level, None), Err(UnsupportedProtocol(3)));
        let mut name = connect_v4_bytes();
        name[4] = b'X';
        assert_eq!(dec(&name, None), Err(UnsupportedProtocol(4)));
        let v5 = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 0];
        let Ok(Some(Packet::Connect(c))) = dec(&v5, None) else {
            panic!()
        };
        assert_eq!(c.protocol, Some(Protocol::V5));
        assert_eq!(c.client_id, "");
    }

    #[test]
    fn connect_flag_rules() {
        let with_flags = |f: u8| {
            let mut b = connect_v4_bytes();
            b[9] = f;
            b
        };
        assert_eq!(
            dec(&with_flags(0x03), None),
            Err(Malformed("CONNECT reserved flag set"))
        );
        assert!(
            matches!(dec(&with_flags(0x08), None), Err(Malformed(_))),
            "will qos without will"
        );
        assert!(
            matches!(dec(&with_flags(0x20), None), Err(Malformed(_))),
            "will retain without will"
        );
        assert!(matches!(dec(&with_flags(0x1C), None), Err(Malformed(_))), "will qos 3");
        assert_eq!(
            dec(&with_flags(0x40), None),
            Err(Malformed("password without user name"))
        );
        // v5: password without user name is fine.
        let v5 = [
            0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x40, 0, 0, 0, 0, 0, 0, 2, b'p', b'w',
        ];
        let mut v5 = v5.to_vec();
        v5[1] = (v5.len() - 2) as u8;
        let Ok(Some(Packet::Connect(c))) = dec(&v5, None) else {
            panic!("{:?}", dec(&v5, None))
        };
        assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
        assert_eq!(c.username, None);
        // Trailing bytes after the payload.
        let mut t = connect_v4_bytes();
        t.push(0);
        t[1] += 1;
        assert_eq!(dec(&t, None), Err(TRAILING));
    }

    #[test]
    fn strings_must_be_utf8_without_nul() {
        // PUBLISH topic with NUL, then with invalid UTF-8.
        assert!(matches!(v4(&[0x30, 4, 0, 2, b'a', 0]), Err(Malformed(_))));
        assert!(matches!(v4(&[0x30, 4, 0, 2, 0xC3, 0x28]), Err(Malformed(_))));
        // SUBSCRIBE filter with invalid UTF-8.
        assert!(matches!(v4(&[0x82, 6, 0, 1, 0, 1, 0xFF, 0]), Err(Malformed(_))));
        // String length running past the frame.
        assert!(matches!(v4(&[0x30, 3, 0, 9, b'a']), Err(Malformed(_))));
    }

    #[test]
    fn publish_is_zero_copy_and_checks_pkid_and_topic() {
        let frame = [0x33, 9, 0, 3, b'a', b'/', b'b', 0, 5, b'h', b'i'];
        let mut b = BytesMut::from(&frame[..]);
        let base = b.as_ptr() as usize;
        let Ok(Some(Packet::Publish(p))) = decode(&mut b, Some(Protocol::V4), MAX) else {
            panic!()
        };
        assert_eq!((p.qos, p.retain, p.dup, p.pkid), (QoS::AtLeastOnce, true, false, 5));
        assert_eq!(&p.topic[..], "a/b");
        assert_eq!(&p.payload[..], b"hi");
        assert_eq!(p.topic.as_bytes().as_ptr() as usize, base + 4, "topic shares the frame");
        assert_eq!(p.payload.as_ptr() as usize, base + 9, "payload shares the frame");

        assert_eq!(
            v4(&[0x32, 5, 0, 1, b'a', 0, 0]),
            Err(ProtocolError("packet identifier 0"))
        );
        assert_eq!(v4(&[0x30, 2, 0, 0]), Err(ProtocolError("empty topic name")));
        assert_eq!(v5(&[0x30, 3, 0, 0, 0]), Err(ProtocolError("empty topic name")));
        // v5: empty topic with a topic alias.
        let Ok(Some(Packet::Publish(p))) = v5(&[0x30, 6, 0, 0, 3, 0x23, 0, 9]) else {
            panic!()
        };
        assert_eq!(p.properties.topic_alias, Some(9));
        // v5 property block longer than the packet.
        assert!(matches!(v5(&[0x30, 5, 0, 1, b'a', 9, 1]), Err(Malformed(_))));
        // v5 duplicate property.
        assert!(matches!(
            v5(&[0x30, 9, 0, 1, b'a', 4, 1, 0, 1, 1, b'x']),
            Err(ProtocolError(_))
        ));
        // Wildcards are for filters, not topic names.
        assert_eq!(
            v4(&[0x30, 4, 0, 2, b'a', b'#']),
            Err(ProtocolError("wildcard in topic name"))
        );
        assert_eq!(
            v5(&[0x30, 5, 0, 2, b'+', b'/', 0]),
            Err(ProtocolError("wildcard in topic name"))
        );
        // v5 Topic Alias 0.
        assert!(matches!(
            v5(&[0x30, 7, 0, 1, b'a', 3, 0x23, 0, 0]),
            Err(ProtocolError(_))
        ));
    }

    #[test]
    fn acks_short_forms() {
        let ok = |reason: u8| PubAck {
            pkid: 1,
            reason,
            properties: AckProperties::default(),
        };
        assert_eq!(v5(&[0x40, 2, 0, 1]), Ok(Some(Packet::PubAck(ok(0)))));
        assert_eq!(v5(&[0x50, 3, 0, 1, 0x10]), Ok(Some(Packet::PubRec(ok(0x10)))));
        assert_eq!(v5(&[0x62, 4, 0, 1, 0x92, 0]), Ok(Some(Packet::PubRel(ok(0x92)))));
        assert_eq!(v4(&[0x70, 2, 0, 1]), Ok(Some(Packet::PubComp(ok(0)))));
        assert_eq!(v4(&[0x70, 3, 0, 1, 0]), Err(TRAILING));
        assert_eq!(v4(&[0x40, 2, 0, 0]), Err(ProtocolError("packet identifier 0")));
        assert!(matches!(v4(&[0x40, 1, 0]), Err(Malformed(_))));
        // Encoding picks the shortest form.
        for (reason, len) in [(0u8, 4usize), (0x10, 5)] {
            let mut out = BytesMut::new();
            encode(&Packet::PubAck(ok(reason)), Protocol::V5, &mut out).unwrap();
            assert_eq!(out.len(), len);
        }
    }

    #[test]
    fn connack() {
        assert_eq!(
            v4(&[0x20, 2, 1, 0]),
            Ok(Some(Packet::ConnAck(ConnAck {
                session_present: true,
                ..ConnAck::default()
            })))
        );
        let Ok(Some(Packet::ConnAck(c))) = v4(&[0x20, 2, 0, 5]) else {
            panic!()
        };
        assert_eq!(c.code, reason::NOT_AUTHORIZED);
        assert!(matches!(v4(&[0x20, 2, 0, 6]), Err(Malformed(_))));
        assert!(matches!(v4(&[0x20, 2, 2, 0]), Err(Malformed(_))), "reserved flags");
        let Ok(Some(Packet::ConnAck(c))) = dec(&[0x20, 2, 1, 0], Some(Protocol::V3)) else {
            panic!()
        };
        assert!(!c.session_present, "3.1 has no session present flag");
        let Ok(Some(Packet::ConnAck(c))) = v5(&[0x20, 5, 0, 0x86, 2, 0x24, 1]) else {
            panic!()
        };
        assert_eq!((c.code, c.properties.maximum_qos), (0x86, Some(1)));
        // An AUTH property in CONNACK is fine, a Topic Alias is not.
        assert!(matches!(v5(&[0x20, 6, 0, 0, 3, 0x23, 0, 1]), Err(Malformed(_))));
    }

    #[test]
    fn subscribe_rules() {
        let Ok(Some(Packet::Subscribe(s))) = v4(&[0x82, 6, 0, 1, 0, 1, b'a', 2]) else {
            panic!()
        };
        assert_eq!(s.filters[0].qos, QoS::ExactlyOnce);
        assert_eq!(
            v4(&[0x82, 2, 0, 1]),
            Err(ProtocolError("SUBSCRIBE without topic filters"))
        );
        assert_eq!(
            v5(&[0x82, 3, 0, 1, 0]),
            Err(ProtocolError("SUBSCRIBE without topic filters"))
        );
        assert_eq!(
            v4(&[0x82, 6, 0, 0, 0, 1, b'a', 0]),
            Err(ProtocolError("packet identifier 0"))
        );
        assert!(
            matches!(v4(&[0x82, 6, 0, 1, 0, 1, b'a', 3]), Err(Malformed(_))),
            "QoS 3"
        );
        assert!(
            matches!(v4(&[0x82, 6, 0, 1, 0, 1, b'a', 0x04]), Err(Malformed(_))),
            "v4 no_local bit"
        );
        let Ok(Some(Packet::Subscribe(s))) = v5(&[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x2D]) else {
            panic!()
        };
        let f = &s.filters[0];
        assert_eq!(
            (f.qos, f.no_local, f.retain_as_published, f.retain_handling),
            (QoS::AtLeastOnce, true, true, 2)
        );
        assert_eq!(
            v5(&[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x30]),
            Err(ProtocolError("retain handling 3"))
        );
        assert!(matches!(v5(&[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x40]), Err(Malformed(_))));
        // Missing options byte.
        assert!(matches!(v4(&[0x82, 5, 0, 1, 0, 1, b'a']), Err(Malformed(_))));
    }

    #[test]
    fn suback_unsubscribe_unsuback() {
        let Ok(Some(Packet::SubAck(s))) = v4(&[0x90, 4, 0, 1, 0x80, 1]) else {
            panic!()
        };
        assert_eq!(s.reasons, vec![0x80, 1]);
        assert!(matches!(v4(&[0x90, 3, 0, 1, 0x87]), Err(Malformed(_))));
        assert!(matches!(v4(&[0x90, 2, 0, 1]), Err(ProtocolError(_))));
        let Ok(Some(Packet::SubAck(s))) = v5(&[0x90, 4, 0, 1, 0, 0x87]) else {
            panic!()
        };
        assert_eq!(s.reasons, vec![0x87]);
        assert_eq!(
            v4(&[0xA2, 2, 0, 1]),
            Err(ProtocolError("UNSUBSCRIBE without topic filters"))
        );
        let Ok(Some(Packet::Unsubscribe(u))) = v4(&[0xA2, 5, 0, 1, 0, 1, b'a']) else {
            panic!()
        };
        assert_eq!(u.filters, vec!["a".to_string()]);
        assert!(matches!(v4(&[0xA2, 5, 0, 0, 0, 1, b'a']), Err(ProtocolError(_))));
        assert_eq!(
            v4(&[0xB0, 2, 0, 9]),
            Ok(Some(Packet::UnsubAck(UnsubAck {
                pkid: 9,
                ..Default::default()
            })))
        );
        assert_eq!(v4(&[0xB0, 3, 0, 9, 0]), Err(TRAILING));
        let Ok(Some(Packet::UnsubAck(u))) = v5(&[0xB0, 5, 0, 9, 0, 0x11, 0]) else {
            panic!()
        };
        assert_eq!(u.reasons, vec![0x11, 0]);
    }

    #[test]
    fn ping_disconnect_auth() {
        for p in ALL {
            assert_eq!(dec(&[0xC0, 0], Some(p)), Ok(Some(Packet::PingReq)));
            assert_eq!(dec(&[0xD0, 0], Some(p)), Ok(Some(Packet::PingResp)));
            assert!(matches!(dec(&[0xC0, 1, 0], Some(p)), Err(Malformed(_))));
            assert_eq!(
                dec(&[0xE0, 0], Some(p)),
                Ok(Some(Packet::Disconnect(Disconnect::default())))
            );
        }
        assert_eq!(v4(&[0xE0, 1, 0x04]), Err(TRAILING));
        let Ok(Some(Packet::Disconnect(d))) = v5(&[0xE0, 1, 0x04]) else {
            panic!()
        };
        assert_eq!(d.reason, reason::DISCONNECT_WITH_WILL);
        let Ok(Some(Packet::Disconnect(d))) = v5(&[0xE0, 7, 0x8E, 5, 0x11, 0, 0, 0, 9]) else {
            panic!()
        };
        assert_eq!((d.reason, d.properties.session_expiry_interval), (0x8E, Some(9)));
        let Ok(Some(Packet::Auth(a))) = v5(&[0xF0, 6, 0x18, 4, 0x15, 0, 1, b'm']) else {
            panic!()
        };
        assert_eq!(
            (a.reason, a.properties.authentication_method.as_deref()),
            (0x18, Some("m"))
        );
    }

    #[test]
    fn error_reason_codes() {
        assert_eq!(Malformed("x").reason_code(), 0x81);
        assert_eq!(ProtocolError("x").reason_code(), 0x82);
        assert_eq!(TooLarge { size: 2, max: 1 }.reason_code(), 0x95);
        assert_eq!(UnsupportedProtocol(9).reason_code(), 0x84);
    }
}
