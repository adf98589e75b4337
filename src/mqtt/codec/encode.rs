//! Encoding: every control packet for MQTT 3.1, 3.1.1 and 5.0.
//!
//! Each packet body is emitted through a [`Sink`] twice: once into a
//! [`Counter`] to learn the remaining length (and to refuse over-long fields),
//! then straight into the output buffer after one `reserve`, so encoding does
//! not allocate beyond growing `out`. For 3.x the MQTT 5 reason codes of the
//! packet model are mapped to 3.x return codes and MQTT 5-only fields
//! (properties, reason codes of acks) are dropped.

use bytes::{BufMut, BytesMut};

use super::packet::*;
use super::properties::{self, put_props, MAX_VARINT};
use super::EncodeError;

/// Where encoded bytes go: the output buffer, or a [`Counter`] that only measures.
pub(crate) trait Sink {
    fn byte(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn slice(&mut self, v: &[u8]);
}

/// A sink that counts bytes.
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn byte(&mut self, _: u8) {
        self.0 = self.0.saturating_add(1);
    }
    fn u16(&mut self, _: u16) {
        self.0 = self.0.saturating_add(2);
    }
    fn u32(&mut self, _: u32) {
        self.0 = self.0.saturating_add(4);
    }
    fn slice(&mut self, v: &[u8]) {
        self.0 = self.0.saturating_add(v.len());
    }
}

impl Sink for BytesMut {
    fn byte(&mut self, v: u8) {
        self.put_u8(v);
    }
    fn u16(&mut self, v: u16) {
        self.put_u16(v);
    }
    fn u32(&mut self, v: u32) {
        self.put_u32(v);
    }
    fn slice(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
}

/// Writes a Variable Byte Integer; `v` must be at most [`MAX_VARINT`].
pub(crate) fn put_varint<S: Sink>(s: &mut S, mut v: usize) {
    loop {
        let mut b = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            b |= 0x80;
        }
        s.byte(b);
        if v == 0 {
            break;
        }
    }
}

fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Binary Data: 2-byte length + bytes.
pub(crate) fn put_bin<S: Sink>(s: &mut S, v: &[u8], what: &'static str) -> Result<(), EncodeError> {
    let len = u16::try_from(v.len()).map_err(|_| EncodeError::TooLong(what))?;
    s.u16(len);
    s.slice(v);
    Ok(())
}

/// UTF-8 Encoded String: 2-byte length + bytes.
pub(crate) fn put_str<S: Sink>(s: &mut S, v: &str, what: &'static str) -> Result<(), EncodeError> {
    put_bin(s, v.as_bytes(), what)
}

pub(crate) fn encode(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<usize, EncodeError> {
    let Some(first) = first_byte(packet, protocol) else {
        return Ok(0);
    };
    let mut counter = Counter(0);
    body(packet, protocol, &mut counter)?;
    let remaining = counter.0;
    if remaining > MAX_VARINT {
        return Err(EncodeError::TooLong("packet"));
    }
    let total = 1 + varint_len(remaining) + remaining;
    out.reserve(total);
    out.put_u8(first);
    put_varint(out, remaining);
    body(packet, protocol, out)?;
    Ok(total)
}

/// The fixed header's first byte, or `None` when the packet has no 3.x form.
fn first_byte(packet: &Packet, protocol: Protocol) -> Option<u8> {
    let v5 = protocol == Protocol::V5;
    Some(match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => {
            // DUP is meaningless (and refused by decoders) on QoS 0.
            let dup = p.dup && p.qos != QoS::AtMostOnce;
            0x30 | u8::from(dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        // 3.x: only a client's (normal) DISCONNECT exists; a server closes silently.
        Packet::Disconnect(d) if !v5 && d.reason != reason::NORMAL_DISCONNECTION => return None,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) if !v5 => return None,
        Packet::Auth(_) => 0xF0,
    })
}

/// MQTT 5 CONNACK reason code → 3.x return code.
fn connack_code_v3(code: u8) -> u8 {
    match code {
        reason::SUCCESS => 0,
        reason::UNSUPPORTED_PROTOCOL_VERSION => 1,
        reason::CLIENT_IDENTIFIER_NOT_VALID => 2,
        reason::BAD_USER_NAME_OR_PASSWORD => 4,
        reason::NOT_AUTHORIZED | reason::BAD_AUTHENTICATION_METHOD => 5,
        _ => 3,
    }
}

/// MQTT 5 SUBACK reason code → 3.x return code (granted QoS or 0x80 failure).
fn suback_code_v3(code: u8) -> u8 {
    match code {
        0..=2 => code,
        _ => 0x80,
    }
}

fn body<S: Sink>(packet: &Packet, v: Protocol, s: &mut S) -> Result<(), EncodeError> {
    let v5 = v == Protocol::V5;
    match packet {
        Packet::Connect(c) => connect(c, v, s),
        Packet::ConnAck(c) => {
            s.byte(if v == Protocol::V3 {
                0
            } else {
                u8::from(c.session_present)
            });
            if v5 {
                s.byte(c.code);
                put_props(s, &c.properties)
            } else {
                s.byte(connack_code_v3(c.code));
                Ok(())
            }
        }
        Packet::Publish(p) => {
            put_str(s, &p.topic, "topic")?;
            if p.qos != QoS::AtMostOnce {
                s.u16(p.pkid);
            }
            if v5 {
                put_props(s, &p.properties)?;
            }
            s.slice(&p.payload);
            Ok(())
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            s.u16(a.pkid);
            if v5 {
                let no_props = properties::ack_is_empty(&a.properties);
                if a.reason != reason::SUCCESS || !no_props {
                    s.byte(a.reason);
                }
                if !no_props {
                    put_props(s, &a.properties)?;
                }
            }
            Ok(())
        }
        Packet::Subscribe(sub) => {
            s.u16(sub.pkid);
            if v5 {
                put_props(s, &sub.properties)?;
            }
            for f in &sub.filters {
                put_str(s, &f.filter, "topic filter")?;
                let mut options = f.qos as u8;
                if v5 {
                    options |= u8::from(f.no_local) << 2
                        | u8::from(f.retain_as_published) << 3
                        | (f.retain_handling & 0x03) << 4;
                }
                s.byte(options);
            }
            Ok(())
        }
        Packet::SubAck(a) => {
            s.u16(a.pkid);
            if v5 {
                put_props(s, &a.properties)?;
                s.slice(&a.reasons);
            } else {
                for &code in &a.reasons {
                    s.byte(suback_code_v3(code));
                }
            }
            Ok(())
        }
        Packet::Unsubscribe(u) => {
            s.u16(u.pkid);
            if v5 {
                put_props(s, u.user_properties.as_slice())?;
            }
            for f in &u.filters {
                put_str(s, f, "topic filter")?;
            }
            Ok(())
        }
        Packet::UnsubAck(a) => {
            s.u16(a.pkid);
            if v5 {
                put_props(s, &a.properties)?;
                s.slice(&a.reasons);
            }
            Ok(())
        }
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => {
            if v5 {
                let no_props = properties::disconnect_is_empty(&d.properties);
                if d.reason != reason::NORMAL_DISCONNECTION || !no_props {
                    s.byte(d.reason);
                }
                if !no_props {
                    put_props(s, &d.properties)?;
                }
            }
            Ok(())
        }
        Packet::Auth(a) => {
            // The short form (remaining length 0) only exists for Success without properties.
            if v5 && (a.reason != reason::SUCCESS || !properties::auth_is_empty(&a.properties)) {
                s.byte(a.reason);
                put_props(s, &a.properties)?;
            }
            Ok(())
        }
    }
}

fn connect<S: Sink>(c: &Connect, v: Protocol, s: &mut S) -> Result<(), EncodeError> {
    let v5 = v == Protocol::V5;
    let name: &[u8] = if v == Protocol::V3 { b"MQIsdp" } else { b"MQTT" };
    put_bin(s, name, "protocol name")?;
    s.byte(v.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3 | u8::from(w.retain) << 5;
    }
    flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
    s.byte(flags);
    s.u16(c.keep_alive);
    if v5 {
        put_props(s, &c.properties)?;
    }
    put_str(s, &c.client_id, "client identifier")?;
    if let Some(w) = &c.will {
        if v5 {
            put_props(s, &w.properties)?;
        }
        put_str(s, &w.topic, "will topic")?;
        put_bin(s, &w.payload, "will payload")?;
    }
    if let Some(u) = &c.username {
        put_str(s, u, "user name")?;
    }
    if let Some(p) = &c.password {
        put_bin(s, p, "password")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn enc(p: &Packet, v: Protocol) -> Result<Vec<u8>, EncodeError> {
        let mut out = BytesMut::new();
        let n = encode(p, v, &mut out)?;
        assert_eq!(n, out.len());
        Ok(out.to_vec())
    }

    #[test]
    fn varint_boundaries() {
        for (v, bytes) in [
            (0usize, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            assert_eq!(&out[..], bytes, "{v}");
            assert_eq!(varint_len(v), bytes.len());
        }
    }

    #[test]
    fn publish_bytes() {
        let p = Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            retain: true,
            dup: true,
            topic: "a/b".into(),
            pkid: 5,
            payload: Bytes::from_static(b"hi"),
            ..Publish::default()
        });
        assert_eq!(
            enc(&p, Protocol::V4).unwrap(),
            [0x3B, 9, 0, 3, b'a', b'/', b'b', 0, 5, b'h', b'i']
        );
        assert_eq!(
            enc(&p, Protocol::V5).unwrap(),
            [0x3B, 10, 0, 3, b'a', b'/', b'b', 0, 5, 0, b'h', b'i']
        );
        // QoS 0: no packet identifier, DUP cleared.
        let q0 = Packet::Publish(Publish {
            topic: "t".into(),
            dup: true,
            ..Publish::default()
        });
        assert_eq!(enc(&q0, Protocol::V4).unwrap(), [0x30, 3, 0, 1, b't']);
    }

    #[test]
    fn connect_bytes() {
        let c = Connect {
            client_id: "c".into(),
            clean_start: true,
            keep_alive: 60,
            username: Some("u".into()),
            password: Some(Bytes::from_static(b"p")),
            will: Some(LastWill {
                topic: "w".into(),
                qos: QoS::AtLeastOnce,
                retain: true,
                ..LastWill::default()
            }),
            ..Connect::default()
        };
        let b = enc(&Packet::Connect(Box::new(c.clone())), Protocol::V3).unwrap();
        assert_eq!(&b[2..10], &[0, 6, b'M', b'Q', b'I', b's', b'd', b'p']);
        assert_eq!(b[10], 3);
        assert_eq!(b[11], 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02);
        let b = enc(&Packet::Connect(Box::new(c)), Protocol::V5).unwrap();
        assert_eq!(&b[2..9], &[0, 4, b'M', b'Q', b'T', b'T', 5]);
    }

    #[test]
    fn connack_v3_codes() {
        let code = |c: u8| {
            let p = Packet::ConnAck(ConnAck {
                code: c,
                session_present: true,
                ..ConnAck::default()
            });
            (enc(&p, Protocol::V4).unwrap(), enc(&p, Protocol::V3).unwrap())
        };
        assert_eq!(code(0), (vec![0x20, 2, 1, 0], vec![0x20, 2, 0, 0]));
        for (v5, v3) in [
            (0x84u8, 1u8),
            (0x85, 2),
            (0x86, 4),
            (0x87, 5),
            (0x8C, 5),
            (0x88, 3),
            (0x89, 3),
            (0x80, 3),
        ] {
            assert_eq!(code(v5).0[3], v3, "{v5:#x}");
        }
    }

    #[test]
    fn suback_unsuback_v3() {
        let s = Packet::SubAck(SubAck {
            pkid: 1,
            reasons: vec![0, 2, 0x87, 0x80],
            ..SubAck::default()
        });
        assert_eq!(enc(&s, Protocol::V4).unwrap(), [0x90, 6, 0, 1, 0, 2, 0x80, 0x80]);
        let u = Packet::UnsubAck(UnsubAck {
            pkid: 1,
            reasons: vec![0x11],
            ..UnsubAck::default()
        });
        assert_eq!(enc(&u, Protocol::V4).unwrap(), [0xB0, 2, 0, 1]);
        assert_eq!(enc(&u, Protocol::V5).unwrap(), [0xB0, 4, 0, 1, 0, 0x11]);
    }

    #[test]
    fn v3_acks_drop_reason_and_properties() {
        let a = PubAck {
            pkid: 3,
            reason: 0x10,
            properties: AckProperties {
                reason_string: Some("r".into()),
                ..AckProperties::default()
            },
        };
        assert_eq!(enc(&Packet::PubRel(a.clone()), Protocol::V4).unwrap(), [0x62, 2, 0, 3]);
        assert_eq!(
            enc(&Packet::PubRel(a), Protocol::V5).unwrap(),
            [0x62, 8, 0, 3, 0x10, 4, 0x1F, 0, 1, b'r']
        );
    }

    #[test]
    fn disconnect_and_auth_forms() {
        let normal = Packet::Disconnect(Disconnect::default());
        let taken = Packet::Disconnect(Disconnect {
            reason: 0x8E,
            ..Disconnect::default()
        });
        assert_eq!(enc(&normal, Protocol::V5).unwrap(), [0xE0, 0]);
        assert_eq!(enc(&taken, Protocol::V5).unwrap(), [0xE0, 1, 0x8E]);
        assert_eq!(
            enc(&normal, Protocol::V4).unwrap(),
            [0xE0, 0],
            "client's 3.x DISCONNECT"
        );
        assert_eq!(
            enc(&taken, Protocol::V4).unwrap(),
            [0u8; 0],
            "3.x server closes silently"
        );
        let auth = Packet::Auth(Auth {
            reason: 0x18,
            ..Auth::default()
        });
        assert_eq!(enc(&auth, Protocol::V3).unwrap(), [0u8; 0]);
        assert_eq!(enc(&auth, Protocol::V5).unwrap(), [0xF0, 2, 0x18, 0]);
        assert_eq!(enc(&Packet::Auth(Auth::default()), Protocol::V5).unwrap(), [0xF0, 0]);
    }

    #[test]
    fn too_long_fields() {
        let long = "x".repeat(65_536);
        let p = Packet::Publish(Publish {
            topic: long.clone().into(),
            ..Publish::default()
        });
        assert_eq!(enc(&p, Protocol::V4), Err(EncodeError::TooLong("topic")));
        let c = Connect {
            client_id: long.clone(),
            ..Connect::default()
        };
        assert_eq!(
            enc(&Packet::Connect(Box::new(c)), Protocol::V4),
            Err(EncodeError::TooLong("client identifier"))
        );
        let u = Packet::Unsubscribe(Unsubscribe {
            pkid: 1,
            filters: vec!["a".into()],
            user_properties: vec![("k".into(), long)],
        });
        assert_eq!(enc(&u, Protocol::V5), Err(EncodeError::TooLong("user property value")));
        // 65535 bytes is fine.
        let ok = Packet::Publish(Publish {
            topic: "y".repeat(65_535).into(),
            ..Publish::default()
        });
        assert_eq!(enc(&ok, Protocol::V4).unwrap().len(), 1 + 3 + 2 + 65_535);
    }

    #[test]
    fn packet_over_max_remaining_length() {
        let p = Packet::Publish(Publish {
            topic: "t".into(),
            payload: Bytes::from(vec![0u8; MAX_VARINT]),
            ..Publish::default()
        });
        let mut out = BytesMut::new();
        assert_eq!(encode(&p, Protocol::V4, &mut out), Err(EncodeError::TooLong("packet")));
        assert!(out.is_empty());
    }
}
