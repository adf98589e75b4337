//! The generator's PUBLISH template and the header every payload carries.
//!
//! The header is 24 bytes: magic u32 | run id u32 | send time ns u64 | publisher u32 | seq u32
//! (big-endian). It travels in one of two forms:
//!
//! - **binary** (the default): the payload starts with the header, padded with `a..z`;
//! - **JSON** (`--json`, for the rule engine): `{"temp":35,"lg":"<48 hex digits>","pad":"aaa"}`,
//!   the header as 48 lower-case hex digits at a fixed offset, padded to the requested size,
//!   so a rule can read `payload.temp` and the generator can still patch time and sequence
//!   in place.
//!
//! A [`Template`] is one PUBLISH encoded once; [`Template::append`] copies it and patches
//! packet id, send time and sequence, with no allocation. [`Header::parse`] recognises
//! both forms on the subscriber side.

use bytes::{Bytes, BytesMut};
use junction::mqtt::codec::{self, Packet, Protocol, Publish, QoS};

pub const MAGIC: u32 = 0x4a4c_4721; // "JLG!"
/// Bytes of the binary header.
pub const HEADER: usize = 24;

/// JSON form: everything before the hex header.
const JSON_HEAD: &[u8] = br#"{"temp":35,"lg":""#;
/// JSON form: between the hex header and the padding.
const JSON_MID: &[u8] = br#"","pad":""#;
const JSON_TAIL: &[u8] = br#""}"#;
/// The key that precedes the hex header (the subscriber looks for it).
const JSON_KEY: &[u8] = br#""lg":""#;
const HEX_LEN: usize = 2 * HEADER;
/// Smallest JSON payload (no padding).
pub const JSON_MIN: usize = JSON_HEAD.len() + HEX_LEN + JSON_MID.len() + JSON_TAIL.len();

/// Payload encoding of the generated messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Binary,
    Json,
}

impl Form {
    /// The payload size actually sent for a requested `len`.
    pub fn payload_len(self, len: usize) -> usize {
        match self {
            Form::Binary => len.max(HEADER),
            Form::Json => len.max(JSON_MIN),
        }
    }
}

/// A PUBLISH encoded once; `append` patches pkid, timestamp and sequence in a copy.
pub struct Template {
    pub frame: Vec<u8>,
    payload_off: usize,
    pub pkid_off: Option<usize>,
    form: Form,
}

fn header_bytes(run: u32, publisher: u32) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    h[4..8].copy_from_slice(&run.to_be_bytes());
    h[16..20].copy_from_slice(&publisher.to_be_bytes());
    h
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[inline]
fn put_hex(dst: &mut [u8], src: &[u8]) {
    for (i, b) in src.iter().enumerate() {
        dst[2 * i] = HEX[(b >> 4) as usize];
        dst[2 * i + 1] = HEX[(b & 15) as usize];
    }
}

#[inline]
fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl Template {
    pub fn new(
        topic: &str,
        qos: QoS,
        payload_len: usize,
        form: Form,
        run: u32,
        publisher: u32,
    ) -> Result<Template, String> {
        let header = header_bytes(run, publisher);
        let len = form.payload_len(payload_len);
        let payload = match form {
            Form::Binary => {
                let mut p = vec![0u8; len];
                p[..HEADER].copy_from_slice(&header);
                for (i, b) in p[HEADER..].iter_mut().enumerate() {
                    *b = b'a' + (i % 26) as u8;
                }
                p
            }
            Form::Json => {
                let mut p = Vec::with_capacity(len);
                p.extend_from_slice(JSON_HEAD);
                p.resize(JSON_HEAD.len() + HEX_LEN, 0);
                put_hex(&mut p[JSON_HEAD.len()..], &header);
                p.extend_from_slice(JSON_MID);
                p.resize(len - JSON_TAIL.len(), b'a');
                p.extend_from_slice(JSON_TAIL);
                p
            }
        };
        debug_assert_eq!(payload.len(), len);
        let p = Publish {
            qos,
            topic: topic.into(),
            pkid: if qos == QoS::AtMostOnce { 0 } else { 0x0101 },
            payload: Bytes::from(payload),
            ..Default::default()
        };
        let mut out = BytesMut::new();
        codec::encode(&Packet::Publish(p), Protocol::V4, &mut out).map_err(|e| e.to_string())?;
        let frame = out.to_vec();
        let payload_off = frame.len() - len;
        let pkid_off = if qos == QoS::AtMostOnce {
            None
        } else {
            let off = payload_off - 2;
            if frame[off..off + 2] != [1, 1] {
                return Err("unexpected PUBLISH layout from the codec".into());
            }
            Some(off)
        };
        if Header::parse(&frame[payload_off..]).is_none_or(|h| h.run != run || h.publisher != publisher) {
            return Err("unexpected PUBLISH layout from the codec".into());
        }
        Ok(Template {
            frame,
            payload_off,
            pkid_off,
            form,
        })
    }

    /// Appends a copy of the PUBLISH with this packet id (QoS 1), send time and sequence.
    #[inline]
    pub fn append(&self, out: &mut Vec<u8>, pkid: u16, ts: u64, seq: u32) {
        let start = out.len();
        out.extend_from_slice(&self.frame);
        let f = &mut out[start..];
        if let Some(o) = self.pkid_off {
            f[o..o + 2].copy_from_slice(&pkid.to_be_bytes());
        }
        let p = self.payload_off;
        match self.form {
            Form::Binary => {
                f[p + 8..p + 16].copy_from_slice(&ts.to_be_bytes());
                f[p + 20..p + 24].copy_from_slice(&seq.to_be_bytes());
            }
            Form::Json => {
                let h = p + JSON_HEAD.len();
                put_hex(&mut f[h + 16..h + 32], &ts.to_be_bytes());
                put_hex(&mut f[h + 40..h + 48], &seq.to_be_bytes());
            }
        }
    }
}

/// A decoded payload header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub run: u32,
    pub ts: u64,
    pub publisher: u32,
    pub seq: u32,
}

impl Header {
    /// The header of a generator payload in either form; `None` for anything else.
    #[inline]
    pub fn parse(pl: &[u8]) -> Option<Header> {
        if pl.len() >= HEADER && pl[0..4] == MAGIC.to_be_bytes() {
            return Some(Header::from_bytes(pl[..HEADER].try_into().ok()?));
        }
        if pl.first() != Some(&b'{') {
            return None;
        }
        // JSON: the key is near the start (after `{"temp":NN,`); look a little further in
        // case the value before it is longer.
        let window = &pl[..pl.len().min(64)];
        let at = window.windows(JSON_KEY.len()).position(|w| w == JSON_KEY)? + JSON_KEY.len();
        let hex = pl.get(at..at + HEX_LEN)?;
        if pl.get(at + HEX_LEN) != Some(&b'"') {
            return None;
        }
        let mut h = [0u8; HEADER];
        for (i, b) in h.iter_mut().enumerate() {
            *b = (hex_val(hex[2 * i])? << 4) | hex_val(hex[2 * i + 1])?;
        }
        if h[0..4] != MAGIC.to_be_bytes() {
            return None;
        }
        Some(Header::from_bytes(h))
    }

    fn from_bytes(h: [u8; HEADER]) -> Header {
        let u32_at = |o: usize| u32::from_be_bytes(h[o..o + 4].try_into().unwrap());
        Header {
            run: u32_at(4),
            ts: u64::from_be_bytes(h[8..16].try_into().unwrap()),
            publisher: u32_at(16),
            seq: u32_at(20),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a template, appends patched copies and decodes them back with the codec.
    fn round_trip(form: Form, qos: QoS, payload: usize) -> Vec<(u16, Bytes)> {
        let tpl = Template::new("sensors/7/temp", qos, payload, form, 0xabcd_0001, 7).unwrap();
        let mut out = Vec::new();
        tpl.append(&mut out, 0x1234, 0x0102_0304_0506_0708, 41);
        tpl.append(&mut out, 0xfffe, u64::MAX - 1, u32::MAX);
        let mut buf = BytesMut::from(&out[..]);
        let mut got = Vec::new();
        while let Some(p) = codec::decode(&mut buf, Some(Protocol::V4), 1 << 20).unwrap() {
            let Packet::Publish(p) = p else { panic!("not a PUBLISH") };
            assert_eq!(&*p.topic, "sensors/7/temp");
            assert_eq!(p.qos, qos);
            assert_eq!(p.payload.len(), form.payload_len(payload));
            got.push((p.pkid, p.payload));
        }
        assert!(buf.is_empty());
        assert_eq!(got.len(), 2);
        let h0 = Header::parse(&got[0].1).unwrap();
        assert_eq!(
            h0,
            Header {
                run: 0xabcd_0001,
                ts: 0x0102_0304_0506_0708,
                publisher: 7,
                seq: 41
            }
        );
        let h1 = Header::parse(&got[1].1).unwrap();
        assert_eq!((h1.ts, h1.seq, h1.publisher), (u64::MAX - 1, u32::MAX, 7));
        if qos == QoS::AtLeastOnce {
            assert_eq!((got[0].0, got[1].0), (0x1234, 0xfffe));
        }
        got
    }

    #[test]
    fn binary_round_trip() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let got = round_trip(Form::Binary, qos, 64);
            assert_eq!(&got[0].1[0..4], &MAGIC.to_be_bytes());
            assert_eq!(got[0].1[HEADER], b'a');
        }
        // Shorter than the header: the header still fits.
        round_trip(Form::Binary, QoS::AtMostOnce, 3);
    }

    #[test]
    fn json_round_trip_is_valid_json() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            for size in [0, JSON_MIN, JSON_MIN + 1, 100, 1000] {
                let got = round_trip(Form::Json, qos, size);
                for (_, pl) in &got {
                    assert_eq!(pl.len(), size.max(JSON_MIN));
                    let v: serde_json::Value = serde_json::from_slice(pl).expect("valid JSON");
                    assert_eq!(v["temp"], 35);
                    let lg = v["lg"].as_str().unwrap();
                    assert_eq!(lg.len(), 48);
                    assert!(lg.starts_with("4a4c4721abcd0001"), "{lg}");
                    assert!(v["pad"].as_str().unwrap().bytes().all(|b| b == b'a'));
                }
                let v: serde_json::Value = serde_json::from_slice(&got[0].1).unwrap();
                assert_eq!(v["lg"], "4a4c4721abcd000101020304050607080000000700000029");
            }
        }
    }

    #[test]
    fn foreign_payloads_are_not_headers() {
        assert_eq!(Header::parse(b""), None);
        assert_eq!(Header::parse(b"hello world, this is not a generator payload"), None);
        assert_eq!(Header::parse(br#"{"t":35}"#), None);
        // A republished rule output that has no `lg`.
        assert_eq!(Header::parse(br#"{"t": 35, "clientid": "lg1-p0"}"#), None);
        // Right key, wrong magic.
        let bad = format!(r#"{{"temp":35,"lg":"{}","pad":""}}"#, "0".repeat(48));
        assert_eq!(Header::parse(bad.as_bytes()), None);
        // Truncated hex.
        assert_eq!(Header::parse(br#"{"temp":35,"lg":"4a4c4721"}"#), None);
        // Another value for temp still parses (the key is searched for).
        let tpl = Template::new("t", QoS::AtMostOnce, 0, Form::Json, 5, 2).unwrap();
        let pl = &tpl.frame[tpl.frame.len() - JSON_MIN..];
        let other = String::from_utf8(pl.to_vec())
            .unwrap()
            .replace(r#""temp":35"#, r#""temp":-12.5"#);
        assert_eq!(
            Header::parse(other.as_bytes()).map(|h| (h.run, h.publisher)),
            Some((5, 2))
        );
    }
}
