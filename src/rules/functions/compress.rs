//! Compression: `gzip` (gzip format), `zip` (raw deflate), `zip_compress`
//! (zlib format) and their inverses. Decompressed output is capped at 16 MiB.

use std::io::{Read, Write};

use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
use flate2::write::{DeflateEncoder, ZlibEncoder};
use flate2::{Compression, GzBuilder};

use super::{arg_bin, bin_out, err, FnDef, FnError, MAX_OUTPUT};
use crate::rules::value::Value;

pub(super) const FUNCTIONS: &[FnDef] = &[
    FnDef {
        name: "gzip",
        min_args: 1,
        max_args: Some(1),
        f: gzip,
    },
    FnDef {
        name: "gunzip",
        min_args: 1,
        max_args: Some(1),
        f: gunzip,
    },
    FnDef {
        name: "zip",
        min_args: 1,
        max_args: Some(1),
        f: zip,
    },
    FnDef {
        name: "unzip",
        min_args: 1,
        max_args: Some(1),
        f: unzip,
    },
    FnDef {
        name: "zip_compress",
        min_args: 1,
        max_args: Some(1),
        f: zip_compress,
    },
    FnDef {
        name: "zip_uncompress",
        min_args: 1,
        max_args: Some(1),
        f: zip_uncompress,
    },
];

fn compressed(function: &'static str, r: std::io::Result<Vec<u8>>) -> Result<Value, FnError> {
    r.map(|b| Value::Bytes(b.into()))
        .map_err(|e| err(function, e.to_string()))
}

fn gzip(args: &[Value]) -> Result<Value, FnError> {
    let data = arg_bin("gzip", args, 0)?;
    // OS 3 (Unix), as zlib writes it on Linux; no name, no mtime.
    let mut enc = GzBuilder::new()
        .operating_system(3)
        .write(Vec::new(), Compression::default());
    compressed("gzip", enc.write_all(data).and_then(|_| enc.finish()))
}

fn zip(args: &[Value]) -> Result<Value, FnError> {
    let data = arg_bin("zip", args, 0)?;
    let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
    compressed("zip", enc.write_all(data).and_then(|_| enc.finish()))
}

fn zip_compress(args: &[Value]) -> Result<Value, FnError> {
    let data = arg_bin("zip_compress", args, 0)?;
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
    compressed("zip_compress", enc.write_all(data).and_then(|_| enc.finish()))
}

/// Read a decoder to its end, at most `MAX_OUTPUT` bytes.
fn inflate(function: &'static str, reader: impl Read) -> Result<Value, FnError> {
    let mut out = Vec::new();
    reader
        .take(MAX_OUTPUT as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| err(function, format!("invalid compressed data: {e}")))?;
    if out.len() > MAX_OUTPUT {
        return Err(err(function, "decompressed data exceeds 16 MiB"));
    }
    Ok(bin_out(out))
}

fn gunzip(args: &[Value]) -> Result<Value, FnError> {
    let data = arg_bin("gunzip", args, 0)?;
    inflate("gunzip", MultiGzDecoder::new(data))
}

fn unzip(args: &[Value]) -> Result<Value, FnError> {
    let data = arg_bin("unzip", args, 0)?;
    inflate("unzip", DeflateDecoder::new(data))
}

fn zip_uncompress(args: &[Value]) -> Result<Value, FnError> {
    let data = arg_bin("zip_uncompress", args, 0)?;
    inflate("zip_uncompress", ZlibDecoder::new(data))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn hex_of(v: Value) -> String {
        ok("bin2hexstr", vec![v]).to_string()
    }
    fn unhex(h: &str) -> Value {
        ok("hexstr2bin", vec![s(h)])
    }
    fn samples() -> Vec<Vec<u8>> {
        let mut noisy = Vec::new();
        let mut x: u32 = 12345;
        for _ in 0..5000 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            noisy.push((x >> 16) as u8);
        }
        vec![Vec::new(), b"hello".to_vec(), vec![0u8; 100_000], noisy]
    }

    #[test]
    fn t_gzip() {
        assert_eq!(
            hex_of(ok("gzip", vec![s("hello")])),
            "1F8B0800000000000003CB48CDC9C9070086A6103605000000"
        );
        // The documented example was made on macOS (OS byte 0x13): it still decodes.
        assert_eq!(
            ok(
                "gunzip",
                vec![unhex("1F8B0800000000000013CB48CDC9C9070086A6103605000000")]
            ),
            s("hello")
        );
        for data in samples() {
            assert_eq!(ok("gunzip", vec![ok("gzip", vec![b(&data)])]), b(&data));
        }
        fails("gzip", vec![i(1)]);
        fails("gunzip", vec![s("not gzip")]);
        fails("gunzip", vec![Value::Null]);
    }

    #[test]
    fn t_zip() {
        assert_eq!(hex_of(ok("zip", vec![s("hello")])), "CB48CDC9C90700");
        assert_eq!(ok("unzip", vec![unhex("CB48CDC9C90700")]), s("hello"));
        for data in samples() {
            assert_eq!(ok("unzip", vec![ok("zip", vec![b(&data)])]), b(&data));
        }
        fails("zip", vec![json("[]")]);
        fails("unzip", vec![b(&[0xff, 0xff, 0xff])]);
        fails("unzip", vec![i(0)]);
    }

    #[test]
    fn t_zip_compress() {
        assert_eq!(
            hex_of(ok("zip_compress", vec![s("hello")])),
            "789CCB48CDC9C90700062C0215"
        );
        assert_eq!(
            ok("zip_uncompress", vec![unhex("789CCB48CDC9C90700062C0215")]),
            s("hello")
        );
        for data in samples() {
            assert_eq!(ok("zip_uncompress", vec![ok("zip_compress", vec![b(&data)])]), b(&data));
        }
        fails("zip_compress", vec![Value::Null]);
        fails("zip_uncompress", vec![s("hello")]);
        fails("zip_uncompress", vec![unhex("789CCB48CDC9C90700062C0216")]);
    }

    #[test]
    fn decompression_is_capped() {
        let big = vec![0u8; MAX_OUTPUT + 1];
        let bomb = ok("gzip", vec![b(&big)]);
        let e = call("gunzip", vec![bomb]).unwrap_err();
        assert!(e.message.contains("16 MiB"), "{e}");
        let exact = ok("zip", vec![b(&big[..MAX_OUTPUT])]);
        assert!(matches!(ok("unzip", vec![exact]), Value::Str(b) if b.len() == MAX_OUTPUT));
    }
}
