//! A small log-linear latency histogram in the spirit of HdrHistogram (the crate is not in the
//! environment's package lists): exact below 128 µs, then 64 buckets per power of two, so any
//! recorded value is reported within 1.6 %. Histograms from several processes merge by adding
//! counts, and travel as JSON in a sparse form.

use serde::{Deserialize, Serialize};

/// Linear buckets below 2^SUB_BITS; 2^(SUB_BITS-1) buckets per octave above.
const SUB_BITS: u32 = 7;
const HALF: u64 = 1 << (SUB_BITS - 1);
/// Values are clamped to 2^MAX_BITS - 1 µs (about 12.7 days): far beyond any bounded run.
const MAX_BITS: u32 = 40;
const BUCKETS: usize = ((MAX_BITS - SUB_BITS + 1) as usize) * HALF as usize + HALF as usize;

/// Counts of values (microseconds) in log-linear buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index_of(value: u64) -> usize {
    let v = value.min((1u64 << MAX_BITS) - 1);
    if v < (1 << SUB_BITS) {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let shift = exp - SUB_BITS + 1;
    let mantissa = v >> shift; // in [HALF, 2*HALF)
    (shift as usize) * HALF as usize + mantissa as usize
}

/// The lowest and highest value a bucket holds.
fn bounds_of(index: usize) -> (u64, u64) {
    let idx = index as u64;
    if idx < (1 << SUB_BITS) {
        return (idx, idx);
    }
    let shift = idx / HALF - 1;
    let mantissa = idx % HALF + HALF;
    let low = mantissa << shift;
    (low, low + (1 << shift) - 1)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one value (µs).
    pub fn record(&mut self, value: u64) {
        self.counts[index_of(value)] += 1;
        self.total += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Number of recorded values.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The value at quantile `q` (0..=1): the midpoint of the bucket holding it, clamped to the
    /// recorded extremes. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        if q >= 1.0 {
            return self.max;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = bounds_of(i);
                return (lo + (hi - lo) / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Mean of the recorded values (exact).
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The usual summary, in microseconds.
    pub fn summary(&self) -> Summary {
        Summary {
            count: self.total,
            min: if self.total == 0 { 0 } else { self.min },
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: self.max,
            mean: self.mean(),
        }
    }

    /// The sparse form: (bucket upper bound, count) for every non-empty bucket.
    pub fn to_sparse(&self) -> Sparse {
        Sparse {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| (i as u32, c))
                .collect(),
            sum: self.sum as f64,
            min: if self.total == 0 { 0 } else { self.min },
            max: self.max,
        }
    }

    /// Rebuilds a histogram from its sparse form (unknown bucket numbers are clamped).
    pub fn from_sparse(s: &Sparse) -> Self {
        let mut h = Self::new();
        for &(i, c) in &s.buckets {
            let i = (i as usize).min(BUCKETS - 1);
            h.counts[i] += c;
            h.total += c;
        }
        h.sum = s.sum as u128;
        if h.total > 0 {
            h.min = s.min;
            h.max = s.max;
        }
        h
    }

    /// (upper bound µs, cumulative fraction) per non-empty bucket: a CDF for plotting.
    pub fn cdf(&self) -> Vec<(u64, f64)> {
        let mut seen = 0;
        let mut out = Vec::new();
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            seen += c;
            out.push((bounds_of(i).1, seen as f64 / self.total as f64));
        }
        out
    }
}

/// A histogram as it travels between processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Sparse {
    /// (bucket index, count).
    pub buckets: Vec<(u32, u64)>,
    pub sum: f64,
    pub min: u64,
    pub max: u64,
}

/// Percentiles of one histogram, microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_that_contains_it() {
        for v in (0..5000u64).chain([1 << 20, 123_456_789, u32::MAX as u64]) {
            let (lo, hi) = bounds_of(index_of(v));
            assert!(lo <= v && v <= hi, "{v} not in [{lo}, {hi}]");
            assert!(
                (hi - lo) as f64 <= v as f64 / 63.0 + 1.0,
                "bucket too wide at {v}"
            );
        }
    }

    #[test]
    fn buckets_are_contiguous() {
        for i in 1..BUCKETS {
            assert_eq!(bounds_of(i - 1).1 + 1, bounds_of(i).0, "gap at {i}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range_are_close() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.02, "{p50}");
        assert!((p99 - 99_000.0).abs() / 99_000.0 < 0.02, "{p99}");
        assert_eq!(h.quantile(1.0), 100_000);
        assert_eq!(h.summary().min, 1);
    }

    #[test]
    fn merging_and_the_sparse_form_keep_every_count() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for v in 0..1000 {
            a.record(v * 7);
            b.record(v * 13 + 5);
        }
        let mut merged = Histogram::from_sparse(&a.to_sparse());
        merged.merge(&Histogram::from_sparse(&b.to_sparse()));
        let mut direct = a.clone();
        direct.merge(&b);
        assert_eq!(merged, direct);
        assert_eq!(merged.len(), 2000);
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        let h = Histogram::new();
        assert!(h.is_empty());
        assert_eq!(h.summary(), Summary::default());
    }
}
