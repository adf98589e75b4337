//! Property tests: encode → decode round trips for every packet type and
//! every property, per protocol version (3.x strategies only generate what
//! 3.x can carry), and `decode` never panicking on random bytes, random
//! bodies behind valid fixed headers, or mutated valid frames.
//!
//! Case counts follow `PROPTEST_CASES` (default 256 per test), so a long
//! no-panic run is `PROPTEST_CASES=2000000 cargo test --release never_panic`.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::{BoxedStrategy, Union};

use super::*;
use Protocol::{V3, V4, V5};

const VERSIONS: [Protocol; 3] = [V3, V4, V5];

fn text() -> impl Strategy<Value = String> {
    vec(any::<char>().prop_filter("U+0000 is not allowed", |c| *c != '\0'), 0..8)
        .prop_map(|cs| cs.into_iter().collect())
}

fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn users() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((text(), text()), 0..3)
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    of(0u8..=1)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn sub_id() -> impl Strategy<Value = u32> {
    1u32..=268_435_455
}

fn pkid() -> impl Strategy<Value = u16> {
    1u16..
}

/// `s` for MQTT 5, the default value for 3.x.
fn v5_only<T, S>(v: Protocol, s: S) -> BoxedStrategy<T>
where
    T: Default + Clone + std::fmt::Debug + 'static,
    S: Strategy<Value = T> + 'static,
{
    if v == V5 {
        s.boxed()
    } else {
        Just(T::default()).boxed()
    }
}

fn connect_props() -> impl Strategy<Value = ConnectProperties> {
    (
        of(any::<u32>()),
        of(1u16..),
        of(1u32..),
        of(any::<u16>()),
        flag(),
        flag(),
        users(),
        of(text()),
        of(bin()),
    )
        .prop_map(|(sei, rm, mps, tam, rri, rpi, user, method, data)| ConnectProperties {
            session_expiry_interval: sei,
            receive_maximum: rm,
            maximum_packet_size: mps,
            topic_alias_maximum: tam,
            request_response_information: rri,
            request_problem_information: rpi,
            user_properties: user,
            // Authentication Data needs an Authentication Method.
            authentication_data: if method.is_some() { data } else { None },
            authentication_method: method,
        })
}

fn will_props() -> impl Strategy<Value = WillProperties> {
    (
        of(any::<u32>()),
        flag(),
        of(any::<u32>()),
        of(text()),
        of(text()),
        of(bin()),
        users(),
    )
        .prop_map(|(delay, pfi, mei, ct, rt, cd, user)| WillProperties {
            delay_interval: delay,
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user,
        })
}

fn connack_props() -> impl Strategy<Value = ConnAckProperties> {
    let a = (
        of(any::<u32>()),
        of(1u16..),
        flag(),
        flag(),
        of(1u32..),
        of(text()),
        of(any::<u16>()),
        of(text()),
    );
    let b = (
        users(),
        flag(),
        flag(),
        flag(),
        of(any::<u16>()),
        of(text()),
        of(text()),
        of(text()),
        of(bin()),
    );
    (a, b).prop_map(
        |((sei, rm, mq, ra, mps, aci, tam, rs), (user, wsa, sia, ssa, ska, ri, sr, am, ad))| ConnAckProperties {
            session_expiry_interval: sei,
            receive_maximum: rm,
            maximum_qos: mq,
            retain_available: ra,
            maximum_packet_size: mps,
            assigned_client_identifier: aci,
            topic_alias_maximum: tam,
            reason_string: rs,
            user_properties: user,
            wildcard_subscription_available: wsa,
            subscription_identifiers_available: sia,
            shared_subscription_available: ssa,
            server_keep_alive: ska,
            response_information: ri,
            server_reference: sr,
            authentication_method: am,
            authentication_data: ad,
        },
    )
}

fn publish_props() -> impl Strategy<Value = PublishProperties> {
    (
        flag(),
        of(any::<u32>()),
        of(1u16..),
        of(text()),
        of(bin()),
        users(),
        vec(sub_id(), 0..3),
        of(text()),
    )
        .prop_map(|(pfi, mei, alias, rt, cd, user, ids, ct)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: alias,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user,
            subscription_identifiers: ids,
            content_type: ct,
        })
}

fn ack_props() -> impl Strategy<Value = AckProperties> {
    (of(text()), users()).prop_map(|(rs, user)| AckProperties {
        reason_string: rs,
        user_properties: user,
    })
}

fn subscribe_props() -> impl Strategy<Value = SubscribeProperties> {
    (of(sub_id()), users()).prop_map(|(id, user)| SubscribeProperties {
        subscription_identifier: id,
        user_properties: user,
    })
}

fn disconnect_props() -> impl Strategy<Value = DisconnectProperties> {
    (of(any::<u32>()), of(text()), users(), of(text())).prop_map(|(sei, rs, user, sr)| DisconnectProperties {
        session_expiry_interval: sei,
        reason_string: rs,
        user_properties: user,
        server_reference: sr,
    })
}

fn auth_props() -> impl Strategy<Value = AuthProperties> {
    (of(text()), of(bin()), of(text()), users()).prop_map(|(am, ad, rs, user)| AuthProperties {
        authentication_method: am,
        authentication_data: ad,
        reason_string: rs,
        user_properties: user,
    })
}

fn will(v: Protocol) -> impl Strategy<Value = LastWill> {
    (text(), bin(), qos(), any::<bool>(), v5_only(v, will_props())).prop_map(
        |(topic, payload, qos, retain, properties)| LastWill {
            topic: ByteString::from(topic),
            payload,
            qos,
            retain,
            properties,
        },
    )
}

fn connect(v: Protocol) -> impl Strategy<Value = Packet> {
    (
        any::<u16>(),
        text(),
        any::<bool>(),
        of(text()),
        of(bin()),
        of(will(v)),
        v5_only(v, connect_props()),
    )
        .prop_map(
            move |(keep_alive, client_id, clean_start, username, password, will, properties)| {
                // 3.x: a password needs a user name.
                let username = match (&username, &password) {
                    (None, Some(_)) if v != V5 => Some("user".to_string()),
                    _ => username,
                };
                Packet::Connect(Box::new(Connect {
                    protocol: Some(v),
                    keep_alive,
                    client_id,
                    clean_start,
                    username,
                    password,
                    will,
                    properties,
                }))
            },
        )
}

fn connack(v: Protocol) -> impl Strategy<Value = Packet> {
    let code = if v == V5 {
        any::<u8>().boxed()
    } else {
        select(vec![0u8, 0x84, 0x85, 0x86, 0x87, 0x88]).boxed()
    };
    (any::<bool>(), code, v5_only(v, connack_props())).prop_map(move |(session_present, code, properties)| {
        Packet::ConnAck(ConnAck {
            session_present: session_present && v != V3,
            code,
            properties,
        })
    })
}

fn publish(v: Protocol) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        text(),
        pkid(),
        v5_only(v, publish_props()),
        bin(),
    )
        .prop_map(move |(qos, dup, retain, topic, pkid, properties, payload)| {
            let q0 = qos == QoS::AtMostOnce;
            // No wildcards in a topic name; an empty one needs a topic alias (MQTT 5 only).
            let topic = topic.replace(['+', '#'], "");
            let topic = if topic.is_empty() && properties.topic_alias.is_none() {
                "t".to_string()
            } else {
                topic
            };
            Packet::Publish(Publish {
                dup: dup && !q0,
                qos,
                retain,
                topic: topic.into(),
                pkid: if q0 { 0 } else { pkid },
                properties,
                payload,
            })
        })
}

fn puback(v: Protocol) -> impl Strategy<Value = Packet> {
    let reason = if v == V5 {
        any::<u8>().boxed()
    } else {
        Just(0u8).boxed()
    };
    (0..4u8, pkid(), reason, v5_only(v, ack_props())).prop_map(|(kind, pkid, reason, properties)| {
        let a = PubAck {
            pkid,
            reason,
            properties,
        };
        match kind {
            0 => Packet::PubAck(a),
            1 => Packet::PubRec(a),
            2 => Packet::PubRel(a),
            _ => Packet::PubComp(a),
        }
    })
}

fn subscribe(v: Protocol) -> impl Strategy<Value = Packet> {
    let filter = (text(), qos(), any::<bool>(), any::<bool>(), 0u8..=2).prop_map(move |(filter, qos, nl, rap, rh)| {
        if v == V5 {
            SubscribeFilter {
                filter,
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: rh,
            }
        } else {
            SubscribeFilter {
                filter,
                qos,
                ..SubscribeFilter::default()
            }
        }
    });
    (pkid(), vec(filter, 1..4), v5_only(v, subscribe_props())).prop_map(|(pkid, filters, properties)| {
        Packet::Subscribe(Subscribe {
            pkid,
            filters,
            properties,
        })
    })
}

fn suback(v: Protocol) -> impl Strategy<Value = Packet> {
    let code = if v == V5 {
        any::<u8>().boxed()
    } else {
        select(vec![0u8, 1, 2, 0x80]).boxed()
    };
    (pkid(), vec(code, 1..5), v5_only(v, ack_props())).prop_map(|(pkid, reasons, properties)| {
        Packet::SubAck(SubAck {
            pkid,
            reasons,
            properties,
        })
    })
}

fn unsubscribe(v: Protocol) -> impl Strategy<Value = Packet> {
    (pkid(), vec(text(), 1..4), v5_only(v, users())).prop_map(|(pkid, filters, user_properties)| {
        Packet::Unsubscribe(Unsubscribe {
            pkid,
            filters,
            user_properties,
        })
    })
}

fn unsuback(v: Protocol) -> impl Strategy<Value = Packet> {
    (pkid(), v5_only(v, vec(any::<u8>(), 1..5)), v5_only(v, ack_props())).prop_map(|(pkid, reasons, properties)| {
        Packet::UnsubAck(UnsubAck {
            pkid,
            reasons,
            properties,
        })
    })
}

fn disconnect(v: Protocol) -> impl Strategy<Value = Packet> {
    (v5_only(v, any::<u8>()), v5_only(v, disconnect_props()))
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
}

fn auth() -> impl Strategy<Value = Packet> {
    (any::<u8>(), auth_props()).prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Any packet representable in `v`.
fn packet(v: Protocol) -> BoxedStrategy<Packet> {
    let mut arms = vec![
        connect(v).boxed(),
        connack(v).boxed(),
        publish(v).boxed(),
        puback(v).boxed(),
        subscribe(v).boxed(),
        suback(v).boxed(),
        unsubscribe(v).boxed(),
        unsuback(v).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(v).boxed(),
    ];
    if v == V5 {
        arms.push(auth().boxed());
    }
    Union::new(arms).boxed()
}

fn versioned_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    select(VERSIONS.to_vec()).prop_flat_map(|v| (Just(v), packet(v)))
}

fn check_roundtrip(p: &Packet, v: Protocol) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    let n = encode(p, v, &mut buf).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    prop_assert_eq!(n, buf.len());
    prop_assert!(n >= 2);
    let frame = buf.clone().freeze();

    prop_assert_eq!(decode(&mut buf, Some(v), n), Ok(Some(p.clone())));
    prop_assert!(buf.is_empty());
    if let Packet::Connect(_) = p {
        let mut buf = BytesMut::from(&frame[..]);
        prop_assert_eq!(decode(&mut buf, None, usize::MAX), Ok(Some(p.clone())));
    }
    // Any strict prefix is incomplete and consumes nothing.
    for k in 0..frame.len() {
        let mut part = BytesMut::from(&frame[..k]);
        prop_assert_eq!(decode(&mut part, Some(v), usize::MAX), Ok(None));
        prop_assert_eq!(part.len(), k);
    }
    // One byte under the frame size is refused.
    let mut buf = BytesMut::from(&frame[..]);
    prop_assert_eq!(
        decode(&mut buf, Some(v), n - 1),
        Err(DecodeError::TooLarge { size: n, max: n - 1 })
    );
    Ok(())
}

/// Decodes everything in `bytes` until it needs more input or fails.
fn decode_all(bytes: &[u8], protocol: Option<Protocol>, max: usize) {
    let mut buf = BytesMut::from(bytes);
    let mut protocol = protocol;
    while let Ok(Some(p)) = decode(&mut buf, protocol, max) {
        if let Packet::Connect(c) = &p {
            protocol = c.protocol;
        }
        // Whatever decodes must encode again without panicking.
        if let Some(v) = protocol {
            let mut out = BytesMut::new();
            let _ = encode(&p, v, &mut out);
        }
    }
}

fn decode_everywhere(bytes: &[u8], max: usize) {
    decode_all(bytes, None, max);
    for v in VERSIONS {
        decode_all(bytes, Some(v), max);
    }
}

/// A valid first byte (any type, the flags it needs; any PUBLISH flags).
fn first_byte() -> impl Strategy<Value = u8> {
    (1u8..=15, 0u8..16).prop_map(|(kind, publish_flags)| match kind {
        3 => 0x30 | publish_flags,
        6 | 8 | 10 => kind << 4 | 0b0010,
        _ => kind << 4,
    })
}

fn max_size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(usize::MAX), 0usize..300]
}

proptest! {
    #[test]
    fn roundtrip_v3(p in packet(V3)) {
        check_roundtrip(&p, V3)?;
    }

    #[test]
    fn roundtrip_v4(p in packet(V4)) {
        check_roundtrip(&p, V4)?;
    }

    #[test]
    fn roundtrip_v5(p in packet(V5)) {
        check_roundtrip(&p, V5)?;
    }

    #[test]
    fn roundtrip_back_to_back((v, ps) in select(VERSIONS.to_vec()).prop_flat_map(|v| (Just(v), vec(packet(v), 1..6)))) {
        let mut buf = BytesMut::new();
        for p in &ps {
            encode(p, v, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        for p in &ps {
            prop_assert_eq!(decode(&mut buf, Some(v), usize::MAX), Ok(Some(p.clone())));
        }
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn never_panic_random_bytes(bytes in vec(any::<u8>(), 0..300), max in max_size()) {
        decode_everywhere(&bytes, max);
    }

    #[test]
    fn never_panic_random_body(first in first_byte(), body in vec(any::<u8>(), 0..200), max in max_size()) {
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[first]);
        encode::put_varint(&mut frame, body.len());
        frame.extend_from_slice(&body);
        decode_everywhere(&frame, max);
    }

    #[test]
    fn never_panic_random_connect_body(level in 0u8..8, mqisdp in any::<bool>(), body in vec(any::<u8>(), 0..200)) {
        let name: &[u8] = if mqisdp { b"\x00\x06MQIsdp" } else { b"\x00\x04MQTT" };
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0x10]);
        encode::put_varint(&mut frame, name.len() + 1 + body.len());
        frame.extend_from_slice(name);
        frame.extend_from_slice(&[level]);
        frame.extend_from_slice(&body);
        decode_everywhere(&frame, usize::MAX);
    }

    #[test]
    fn never_panic_mutated_frames(
        (v, p) in versioned_packet(),
        edits in vec((any::<Index>(), any::<u8>(), 0u8..4), 1..6),
        cut in any::<Index>(),
        max in max_size(),
    ) {
        let mut frame = BytesMut::new();
        encode(&p, v, &mut frame).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut bytes = frame.to_vec();
        for (at, value, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = value,
                1 => bytes[i] ^= 1 << (value % 8),
                2 => bytes.insert(i, value),
                _ => { bytes.remove(i); }
            }
        }
        decode_everywhere(&bytes, max);
        // A truncated mutated frame too.
        let keep = cut.index(bytes.len() + 1);
        decode_everywhere(&bytes[..keep], max);
    }
}
