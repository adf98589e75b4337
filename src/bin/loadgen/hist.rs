//! Log-linear latency histogram (values in ns): exact below 128, then 64
//! sub-buckets per power of two (about 1.6% relative error). Fixed size, no
//! allocation when recording.

use serde_json::{json, Value};

const LINEAR: usize = 128;
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = LINEAR + (64 - 7) * SUB;

pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max: 0,
            sum: 0,
        }
    }

    #[inline]
    fn index(v: u64) -> usize {
        if v < LINEAR as u64 {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros(); // >= 7
        let sub = ((v >> (msb - SUB_BITS)) as usize) & (SUB - 1);
        LINEAR + (msb as usize - 7) * SUB + sub
    }

    /// Midpoint of bucket `i`.
    fn value(i: usize) -> u64 {
        if i < LINEAR {
            return i as u64;
        }
        let msb = ((i - LINEAR) / SUB + 7) as u32;
        let sub = ((i - LINEAR) % SUB) as u64;
        let width = 1u64 << (msb - SUB_BITS);
        ((SUB as u64 + sub) << (msb - SUB_BITS)) + width / 2
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.sum += v as u128;
        if v > self.max {
            self.max = v;
        }
    }

    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += *b;
        }
        self.total += o.total;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
    }

    /// Value at quantile `q` (0..=1), in ns.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let target = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut acc = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= target {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }

    /// p50/p90/p99/p999/max/mean in whole microseconds.
    pub fn summary_us(&self) -> Value {
        let us = |ns: u64| (ns as f64 / 1000.0).round() as u64;
        json!({
            "p50": us(self.quantile(0.50)),
            "p90": us(self.quantile(0.90)),
            "p99": us(self.quantile(0.99)),
            "p999": us(self.quantile(0.999)),
            "max": us(self.max),
            "mean": if self.total > 0 { us((self.sum / self.total as u128) as u64) } else { 0 },
            "count": self.total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_two_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [(0.5, 50_000_000.0), (0.99, 99_000_000.0), (0.999, 99_900_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
        for v in [0u64, 1, 127, 128, 129, 1 << 40, u64::MAX] {
            let i = Histogram::index(v);
            assert!(i < BUCKETS);
            if v < 128 {
                assert_eq!(Histogram::value(i), v);
            }
        }
    }
}
