//! The disk buffer of one action: an append-only log of outputs under
//! `<data_dir>/buffers/<connector>/<rule>.<action>/`, so that what a rule matched survives a
//! server outage longer than memory allows, a restart and a `kill -9`.
//!
//! **Layout.** Segment files `<first>.seg` (`first` = the lowest sequence number the
//! segment may hold, 20 digits), each a run of records `[len u32][crc32 u32][kind u8][body]`:
//! an *output* (`seq u64` + the output map) or an *ack* (`floor u64`: every output below
//! `floor` was delivered, failed or dropped). Outputs carry their sequence number, so the
//! writer may skip the ones already acknowledged when it writes (the usual case while the
//! server keeps up: a buffer costs little more than the ack records then).
//!
//! **Recovery.** [`DiskLog::open`] reads every segment: the floor is the highest ack (or the
//! first segment's `first`), the pending outputs are those at or above it. A torn record at
//! the end of the last segment (a crash in the middle of a write) is cut off.
//!
//! **Bounds.** Past `max_bytes` the oldest segment is deleted (drop oldest) and the caller
//! counts what it held. Segments whose outputs are all below the floor are deleted.
//!
//! The codec of an output map is here too: a tag byte per value, lengths as LEB128.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::rules::value::{Map, Value};

const KIND_OUTPUT: u8 = 1;
const KIND_ACK: u8 = 2;
/// A record larger than this is corrupt (a torn length).
const MAX_RECORD: usize = 256 << 20;
/// Nesting deeper than this in a stored output is corrupt.
const MAX_DEPTH: usize = 256;

/// One segment file.
#[derive(Debug, Clone)]
struct Segment {
    first: u64,
    path: PathBuf,
    bytes: u64,
}

/// What [`DiskLog::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Every output below this was settled before the crash or stop.
    pub floor: u64,
    /// One past the highest output sequence number (at least `floor`).
    pub tail: u64,
    /// Outputs at or above `floor` (pending).
    pub pending: u64,
}

/// The append-only log of one action.
#[derive(Debug)]
pub struct DiskLog {
    dir: PathBuf,
    segments: Vec<Segment>,
    out: Option<BufWriter<File>>,
    seg_bytes: u64,
    max_bytes: u64,
    total: u64,
    acked: u64,
    /// One past the highest output sequence number written: a new segment starts at or
    /// above it, so that every output of a segment is below the next segment's `first`.
    next_out: u64,
    /// Where the last read stopped: (segment first, byte offset, seq of the next output).
    cursor: Option<(u64, u64, u64)>,
}

fn seg_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// Reads one record at the reader's position: `Ok(None)` at a clean end, `Err` on a torn or
/// corrupt record.
fn read_record(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<u8>> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        let n = r.read(&mut head[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "torn record header"))
            };
        }
        got += n;
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len == 0 || len > MAX_RECORD {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad record length"));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    if crc32fast::hash(buf) != crc {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "record checksum mismatch"));
    }
    Ok(Some(buf[0]))
}

fn u64_at(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?))
}

impl DiskLog {
    /// Opens (creating) the log in `dir` and recovers its state.
    pub fn open(dir: &Path, seg_bytes: u64, max_bytes: u64) -> io::Result<(DiskLog, Recovered)> {
        fs::create_dir_all(dir)?;
        let mut firsts: Vec<u64> = fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut segments = Vec::new();
        let mut acked = firsts.first().copied().unwrap_or(0);
        let mut outputs: Vec<u64> = Vec::new();
        let mut buf = Vec::new();
        let last = firsts.len().saturating_sub(1);
        for (i, first) in firsts.iter().copied().enumerate() {
            let path = seg_path(dir, first);
            let mut r = io::BufReader::new(File::open(&path)?);
            let mut good: u64 = 0;
            loop {
                match read_record(&mut r, &mut buf) {
                    Ok(None) => break,
                    Ok(Some(KIND_OUTPUT)) => {
                        if let Some(seq) = u64_at(&buf[1..]) {
                            outputs.push(seq);
                        }
                    }
                    Ok(Some(KIND_ACK)) => {
                        if let Some(f) = u64_at(&buf[1..]) {
                            acked = acked.max(f);
                        }
                    }
                    Ok(Some(_)) => {}
                    Err(e) => {
                        if i == last {
                            tracing::warn!(file = %path.display(), offset = good, error = %e, "Disk buffer: cutting off a torn record.");
                        } else {
                            tracing::warn!(file = %path.display(), offset = good, error = %e, "Disk buffer: a corrupt record; the rest of this segment is skipped.");
                        }
                        break;
                    }
                }
                good = r.stream_position()?;
            }
            if i == last {
                let f = OpenOptions::new().write(true).open(&path)?;
                if f.metadata()?.len() != good {
                    f.set_len(good)?;
                }
            }
            segments.push(Segment {
                first,
                path,
                bytes: good,
            });
        }
        let tail = outputs.iter().map(|s| s + 1).max().unwrap_or(0).max(acked);
        let pending = outputs.iter().filter(|&&s| s >= acked).count() as u64;
        let total = segments.iter().map(|s| s.bytes).sum();
        let mut log = DiskLog {
            dir: dir.to_path_buf(),
            segments,
            out: None,
            seg_bytes: seg_bytes.max(4096),
            max_bytes,
            total,
            acked,
            next_out: tail,
            cursor: None,
        };
        log.delete_settled()?;
        Ok((
            log,
            Recovered {
                floor: acked,
                tail,
                pending,
            },
        ))
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.total
    }

    fn record(&mut self, kind: u8, body: &[u8], next_seq: u64) -> io::Result<()> {
        let rotate = match self.segments.last() {
            None => true,
            Some(s) => s.bytes >= self.seg_bytes,
        };
        if rotate || self.out.is_none() {
            if rotate {
                if let Some(mut w) = self.out.take() {
                    w.flush()?;
                }
                let first = next_seq
                    .max(self.next_out)
                    .max(self.segments.last().map_or(0, |s| s.first));
                let path = seg_path(&self.dir, first);
                if self.segments.last().map(|s| s.first) != Some(first) {
                    self.segments.push(Segment {
                        first,
                        path: path.clone(),
                        bytes: 0,
                    });
                }
            }
            let Some(seg) = self.segments.last() else {
                return Err(io::Error::other("no segment"));
            };
            let f = OpenOptions::new().create(true).append(true).open(&seg.path)?;
            self.out = Some(BufWriter::with_capacity(256 << 10, f));
        }
        let len = body.len() + 1;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        crc.update(body);
        let Some(w) = self.out.as_mut() else {
            return Err(io::Error::other("no segment open"));
        };
        w.write_all(&(len as u32).to_le_bytes())?;
        w.write_all(&crc.finalize().to_le_bytes())?;
        w.write_all(&[kind])?;
        w.write_all(body)?;
        let n = 8 + len as u64;
        if let Some(s) = self.segments.last_mut() {
            s.bytes += n;
        }
        self.total += n;
        Ok(())
    }

    /// Appends outputs (`seq`, output), in increasing `seq`.
    pub fn append<'a>(&mut self, items: impl IntoIterator<Item = (u64, &'a Map)>) -> io::Result<()> {
        let mut body = Vec::with_capacity(256);
        for (seq, m) in items {
            body.clear();
            body.extend_from_slice(&seq.to_le_bytes());
            encode_map(m, &mut body);
            self.record(KIND_OUTPUT, &body, seq)?;
            self.next_out = self.next_out.max(seq + 1);
        }
        Ok(())
    }

    /// Records that every output below `floor` is settled and deletes the segments that
    /// hold nothing else.
    pub fn ack(&mut self, floor: u64) -> io::Result<()> {
        if floor <= self.acked {
            return Ok(());
        }
        self.record(KIND_ACK, &floor.to_le_bytes(), floor)?;
        self.acked = floor;
        self.delete_settled()
    }

    /// The highest floor recorded.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    fn delete_settled(&mut self) -> io::Result<()> {
        // Segment i holds outputs below segment i+1's first; it can go once that is settled.
        while self.segments.len() > 1 && self.segments[1].first <= self.acked {
            let s = self.segments.remove(0);
            self.total -= s.bytes;
            remove(&s.path)?;
        }
        Ok(())
    }

    /// Writes what is buffered to the OS and returns a handle to sync (outside any lock).
    pub fn flush(&mut self) -> io::Result<Option<File>> {
        match self.out.as_mut() {
            Some(w) => {
                w.flush()?;
                Ok(Some(w.get_ref().try_clone()?))
            }
            None => Ok(None),
        }
    }

    /// Past `max_bytes`: deletes the oldest segments (never the one being written) and
    /// returns the new floor; the caller counts the outputs below it as dropped.
    pub fn enforce_cap(&mut self) -> io::Result<Option<u64>> {
        let mut floor = None;
        while self.total > self.max_bytes && self.segments.len() > 1 {
            let s = self.segments.remove(0);
            self.total -= s.bytes;
            remove(&s.path)?;
            floor = Some(self.segments[0].first);
        }
        if let Some(f) = floor {
            self.acked = self.acked.max(f);
            self.cursor = None;
        }
        Ok(floor)
    }

    /// Reads up to `max` outputs with `seq >= from` (and `< until`), in order.
    pub fn read(&mut self, from: u64, until: u64, max: usize) -> io::Result<Vec<(u64, Arc<Map>)>> {
        if let Some(w) = self.out.as_mut() {
            w.flush()?;
        }
        let mut out = Vec::new();
        // Start at the cursor when it is where we stopped, else at the segment holding `from`.
        let (mut si, mut offset) = match self.cursor {
            Some((first, off, next)) if next == from => match self.segments.iter().position(|s| s.first == first) {
                Some(i) => (i, off),
                None => (self.segment_of(from), 0),
            },
            _ => (self.segment_of(from), 0),
        };
        let mut buf = Vec::new();
        while si < self.segments.len() && out.len() < max {
            let seg = &self.segments[si];
            let mut f = match File::open(&seg.path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    si += 1;
                    offset = 0;
                    continue;
                }
                Err(e) => return Err(e),
            };
            f.seek(SeekFrom::Start(offset))?;
            let mut r = io::BufReader::new(f.take(seg.bytes.saturating_sub(offset)));
            let mut pos = offset;
            let mut stopped = false;
            while out.len() < max {
                let kind = match read_record(&mut r, &mut buf) {
                    Ok(Some(k)) => k,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(file = %seg.path.display(), offset = pos, error = %e, "Disk buffer: skipping the rest of a corrupt segment.");
                        break;
                    }
                };
                pos += 8 + buf.len() as u64;
                if kind != KIND_OUTPUT {
                    continue;
                }
                let Some(seq) = u64_at(&buf[1..]) else { continue };
                if seq >= until {
                    stopped = true;
                    break;
                }
                if seq < from {
                    continue;
                }
                match decode_map(&buf[9..]) {
                    Ok(m) => out.push((seq, Arc::new(m))),
                    Err(e) => {
                        tracing::warn!(file = %seg.path.display(), seq, error = %e, "Disk buffer: an undecodable output is skipped.");
                    }
                }
            }
            if out.len() >= max || stopped {
                let next = out.last().map_or(from, |(s, _)| s + 1);
                self.cursor = if stopped { None } else { Some((seg.first, pos, next)) };
                return Ok(out);
            }
            si += 1;
            offset = 0;
        }
        self.cursor = None;
        Ok(out)
    }

    fn segment_of(&self, seq: u64) -> usize {
        self.segments.iter().rposition(|s| s.first <= seq).unwrap_or(0)
    }

    /// Deletes the log (the action is gone and its queue is empty).
    pub fn destroy(mut self) -> io::Result<()> {
        self.out = None;
        for s in &self.segments {
            remove(&s.path)?;
        }
        match fs::remove_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn remove(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------
// The codec of an output map.

const T_NULL: u8 = 0;
const T_FALSE: u8 = 1;
const T_TRUE: u8 = 2;
const T_INT: u8 = 3;
const T_FLOAT: u8 = 4;
const T_STR: u8 = 5;
const T_BYTES: u8 = 6;
const T_ARRAY: u8 = 7;
const T_MAP: u8 = 8;

fn put_len(n: usize, out: &mut Vec<u8>) {
    let mut n = n as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Appends the encoding of `m` to `out`.
pub fn encode_map(m: &Map, out: &mut Vec<u8>) {
    put_len(m.len(), out);
    for (k, v) in m {
        put_len(k.len(), out);
        out.extend_from_slice(k.as_bytes());
        encode_value(v, out);
    }
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(T_NULL),
        Value::Bool(false) => out.push(T_FALSE),
        Value::Bool(true) => out.push(T_TRUE),
        Value::Int(i) => {
            out.push(T_INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(T_FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Str(s) => {
            out.push(T_STR);
            put_len(s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(T_BYTES);
            put_len(b.len(), out);
            out.extend_from_slice(b);
        }
        Value::Array(a) => {
            out.push(T_ARRAY);
            put_len(a.len(), out);
            for x in a.iter() {
                encode_value(x, out);
            }
        }
        Value::Map(m) => {
            out.push(T_MAP);
            encode_map(m, out);
        }
    }
}

/// Why a stored output could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt stored output: {0}")]
pub struct DecodeError(&'static str);

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&x, rest) = self.b.split_first().ok_or(DecodeError("truncated"))?;
        self.b = rest;
        Ok(x)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if n > self.b.len() {
            return Err(DecodeError("truncated"));
        }
        let (x, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(x)
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                // A length can never exceed what is left to read.
                return usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= self.b.len())
                    .ok_or(DecodeError("length past the end"));
            }
        }
        Err(DecodeError("length too long"))
    }

    fn str(&mut self) -> Result<Arc<str>, DecodeError> {
        let n = self.len()?;
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError("text is not UTF-8"))?;
        Ok(Arc::from(s))
    }

    fn i64(&mut self) -> Result<[u8; 8], DecodeError> {
        self.take(8)?.try_into().map_err(|_| DecodeError("truncated"))
    }

    fn map(&mut self, depth: usize) -> Result<Map, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError("nested too deep"));
        }
        let n = self.len()?;
        let mut m = Map::with_capacity_and_hasher(n, Default::default());
        for _ in 0..n {
            let k = self.str()?;
            let v = self.value(depth + 1)?;
            m.insert(k, v);
        }
        Ok(m)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError("nested too deep"));
        }
        Ok(match self.byte()? {
            T_NULL => Value::Null,
            T_FALSE => Value::Bool(false),
            T_TRUE => Value::Bool(true),
            T_INT => Value::Int(i64::from_le_bytes(self.i64()?)),
            T_FLOAT => Value::Float(f64::from_le_bytes(self.i64()?)),
            T_STR => Value::Str(self.str()?),
            T_BYTES => {
                let n = self.len()?;
                Value::Bytes(Bytes::copy_from_slice(self.take(n)?))
            }
            T_ARRAY => {
                let n = self.len()?;
                let mut a = Vec::with_capacity(n);
                for _ in 0..n {
                    a.push(self.value(depth + 1)?);
                }
                Value::Array(Arc::new(a))
            }
            T_MAP => Value::Map(Arc::new(self.map(depth + 1)?)),
            _ => return Err(DecodeError("unknown value tag")),
        })
    }
}

/// Decodes what [`encode_map`] wrote.
pub fn decode_map(b: &[u8]) -> Result<Map, DecodeError> {
    let mut r = Reader { b };
    let m = r.map(0)?;
    if !r.b.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(i: i64) -> Map {
        let mut inner = Map::default();
        inner.insert(
            "deep".into(),
            Value::Array(Arc::new(vec![Value::Null, Value::Float(1.5)])),
        );
        let mut m = Map::default();
        m.insert("i".into(), Value::Int(i));
        m.insert("s".into(), Value::str("it's \"quoted\"; DROP TABLE x"));
        m.insert("b".into(), Value::Bytes(Bytes::from_static(&[0, 255, 7])));
        m.insert("t".into(), Value::Bool(true));
        m.insert("m".into(), Value::Map(Arc::new(inner)));
        m
    }

    fn ints(v: &[(u64, Arc<Map>)]) -> Vec<(u64, i64)> {
        v.iter()
            .map(|(s, m)| {
                let i = match m.get("i") {
                    Some(Value::Int(i)) => *i,
                    _ => -1,
                };
                (*s, i)
            })
            .collect()
    }

    #[test]
    fn codec_round_trips_and_never_panics_on_garbage() {
        let m = out(7);
        let mut b = Vec::new();
        encode_map(&m, &mut b);
        assert_eq!(decode_map(&b).unwrap(), m);
        for cut in 0..b.len() {
            assert!(decode_map(&b[..cut]).is_err());
        }
        let mut x: u64 = 1;
        for _ in 0..2000 {
            let junk: Vec<u8> = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_map(&junk);
        }
        // Deep nesting is refused, not a stack overflow.
        let mut deep = vec![1u8, 1, b'a'];
        deep.extend(std::iter::repeat([T_ARRAY, 1]).take(10_000).flatten());
        deep.push(T_NULL);
        assert!(decode_map(&deep).is_err());
    }

    #[test]
    fn pending_outputs_survive_reopen_and_acked_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, r) = DiskLog::open(dir.path(), 4096, 1 << 30).unwrap();
        assert_eq!(
            r,
            Recovered {
                floor: 0,
                tail: 0,
                pending: 0
            }
        );
        let items: Vec<Map> = (0..100).map(out).collect();
        log.append(items.iter().enumerate().map(|(i, m)| (i as u64, m)))
            .unwrap();
        log.ack(40).unwrap();
        log.flush().unwrap();
        assert!(log.segments.len() > 1, "rotated");
        // Every output of a segment is below the next segment's first.
        for w in log.segments.windows(2) {
            assert!(w[0].first < w[1].first);
        }
        drop(log);
        let (mut log, r) = DiskLog::open(dir.path(), 4096, 1 << 30).unwrap();
        assert_eq!(
            r,
            Recovered {
                floor: 40,
                tail: 100,
                pending: 60
            }
        );
        let got = log.read(40, u64::MAX, 1000).unwrap();
        assert_eq!(ints(&got), (40..100).map(|i| (i as u64, i as i64)).collect::<Vec<_>>());
        // Reading in pieces follows the cursor.
        let a = log.read(50, u64::MAX, 5).unwrap();
        let b = log.read(55, u64::MAX, 5).unwrap();
        assert_eq!(ints(&a).last(), Some(&(54, 54)));
        assert_eq!(ints(&b).first(), Some(&(55, 55)));
        // `until` stops early.
        assert_eq!(log.read(90, 92, 100).unwrap().len(), 2);
        log.ack(100).unwrap();
        log.flush().unwrap();
        drop(log);
        let (_, r) = DiskLog::open(dir.path(), 4096, 1 << 30).unwrap();
        assert_eq!(r.pending, 0);
        assert_eq!(r.floor, 100);
        let segs = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(segs, 1, "settled segments are deleted");
    }

    #[test]
    fn an_ack_that_opens_a_segment_keeps_the_pending_outputs_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), 4096, 1 << 30).unwrap();
        // Fill the segment to its size, so that the next record (an ack) opens a new one.
        let mut n = 0u64;
        while log.segments.last().map_or(0, |s| s.bytes) < 4096 {
            log.append([(n, &out(n as i64))]).unwrap();
            n += 1;
        }
        log.ack(5).unwrap();
        assert_eq!(log.segments.len(), 2, "the ack opened a segment");
        log.ack(6).unwrap();
        log.flush().unwrap();
        drop(log);
        let (mut log, r) = DiskLog::open(dir.path(), 4096, 1 << 30).unwrap();
        assert_eq!(
            r,
            Recovered {
                floor: 6,
                tail: n,
                pending: n - 6
            }
        );
        assert_eq!(log.read(6, u64::MAX, 1000).unwrap().len() as u64, n - 6);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), 1 << 20, 1 << 30).unwrap();
        let items: Vec<Map> = (0..10).map(out).collect();
        log.append(items.iter().enumerate().map(|(i, m)| (i as u64, m)))
            .unwrap();
        log.flush().unwrap();
        let path = log.segments[0].path.clone();
        drop(log);
        // Half a record at the end: a crash in the middle of a write.
        let len = fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 10).unwrap();
        let (mut log, r) = DiskLog::open(dir.path(), 1 << 20, 1 << 30).unwrap();
        assert_eq!(
            r,
            Recovered {
                floor: 0,
                tail: 9,
                pending: 9
            }
        );
        log.append([(9u64, &out(9))]).unwrap();
        log.flush().unwrap();
        drop(log);
        let (mut log, r) = DiskLog::open(dir.path(), 1 << 20, 1 << 30).unwrap();
        assert_eq!(
            r,
            Recovered {
                floor: 0,
                tail: 10,
                pending: 10
            }
        );
        assert_eq!(log.read(0, u64::MAX, 100).unwrap().len(), 10);
    }

    #[test]
    fn past_max_bytes_the_oldest_segment_goes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), 4096, 16384).unwrap();
        let items: Vec<Map> = (0..400).map(out).collect();
        let mut floor = None;
        for (i, m) in items.iter().enumerate() {
            log.append([(i as u64, m)]).unwrap();
            if let Some(f) = log.enforce_cap().unwrap() {
                floor = Some(f);
            }
        }
        assert!(log.bytes() <= 16384 + 4096 + 1024, "{}", log.bytes());
        let f = floor.expect("dropped");
        let got = log.read(0, u64::MAX, 1000).unwrap();
        assert_eq!(got.first().map(|g| g.0), Some(f));
        assert_eq!(got.last().map(|g| g.0), Some(399));
        log.flush().unwrap();
        drop(log);
        let (_, r) = DiskLog::open(dir.path(), 4096, 16384).unwrap();
        assert_eq!((r.floor, r.tail), (f, 400));
    }
}
