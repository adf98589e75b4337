//! Hash functions: lower-case hex digests of binaries.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::{arg, arg_bin, bad_arg, err, text_out, FnDef, FnError};
use crate::rules::value::Value;

pub(super) const FUNCTIONS: &[FnDef] = &[
    FnDef {
        name: "md5",
        min_args: 1,
        max_args: Some(1),
        f: md5,
    },
    FnDef {
        name: "sha",
        min_args: 1,
        max_args: Some(1),
        f: sha,
    },
    FnDef {
        name: "sha256",
        min_args: 1,
        max_args: Some(1),
        f: sha256,
    },
    FnDef {
        name: "hash",
        min_args: 2,
        max_args: Some(2),
        f: hash,
    },
];

fn digest<D: Digest>(data: &[u8]) -> Value {
    text_out(hex::encode(D::digest(data)))
}

fn md5(args: &[Value]) -> Result<Value, FnError> {
    Ok(digest::<Md5>(arg_bin("md5", args, 0)?))
}

/// SHA-1.
fn sha(args: &[Value]) -> Result<Value, FnError> {
    Ok(digest::<Sha1>(arg_bin("sha", args, 0)?))
}

fn sha256(args: &[Value]) -> Result<Value, FnError> {
    Ok(digest::<Sha256>(arg_bin("sha256", args, 0)?))
}

/// `hash(Algorithm, Data)`: md5, sha (sha1), sha224, sha256, sha384, sha512.
/// (EMQX also offers md4, sha3_*, shake*, blake2*: not here.)
fn hash(args: &[Value]) -> Result<Value, FnError> {
    let algo = arg_bin("hash", args, 0)?;
    let data: &[u8] = match arg("hash", args, 1)? {
        Value::Bool(true) => b"true",
        Value::Bool(false) => b"false",
        Value::Str(_) | Value::Bytes(_) => arg_bin("hash", args, 1)?,
        v => return Err(bad_arg("hash", 1, "a string", v)),
    };
    Ok(match algo {
        b"md5" => digest::<Md5>(data),
        b"sha" | b"sha1" => digest::<Sha1>(data),
        b"sha224" => digest::<Sha224>(data),
        b"sha256" => digest::<Sha256>(data),
        b"sha384" => digest::<Sha384>(data),
        b"sha512" => digest::<Sha512>(data),
        other => {
            return Err(err(
                "hash",
                format!("unknown hash algorithm '{}'", String::from_utf8_lossy(other)),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn t_md5() {
        assert_eq!(ok("md5", vec![s("hello")]), s("5d41402abc4b2a76b9719d911017c592"));
        assert_eq!(ok("md5", vec![s("")]), s("d41d8cd98f00b204e9800998ecf8427e"));
        assert_eq!(
            ok("md5", vec![b(&[0xff, 0])]),
            ok("hash", vec![s("md5"), b(&[0xff, 0])])
        );
        fails("md5", vec![i(1)]);
        fails("md5", vec![Value::Null]);
    }

    #[test]
    fn t_sha() {
        assert_eq!(
            ok("sha", vec![s("hello")]),
            s("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d")
        );
        assert_eq!(
            ok("hash", vec![s("sha1"), s("hello")]),
            s("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d")
        );
        fails("sha", vec![json("{}")]);
        fails("sha", vec![f(1.0)]);
    }

    #[test]
    fn t_sha256() {
        assert_eq!(
            ok("sha256", vec![s("hello")]),
            s("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
        // The suite's property: fixed digest lengths.
        for input in [&b""[..], b"a", &[0u8; 1000]] {
            let Value::Str(d) = ok("sha256", vec![b(input)]) else {
                panic!()
            };
            assert_eq!(d.len(), 64);
            let Value::Str(d) = ok("md5", vec![b(input)]) else {
                panic!()
            };
            assert_eq!(d.len(), 32);
            let Value::Str(d) = ok("sha", vec![b(input)]) else {
                panic!()
            };
            assert_eq!(d.len(), 40);
        }
        fails("sha256", vec![Value::Bool(true)]);
    }

    #[test]
    fn t_hash() {
        assert_eq!(ok("hash", vec![s("sha512"), s("")]).to_string().len(), 128);
        assert_eq!(ok("hash", vec![s("sha224"), Value::Bool(true)]).to_string().len(), 56);
        fails("hash", vec![s("unknown_algorithm"), s("a")]);
        fails("hash", vec![s("sha1"), Value::Null]);
    }
}
