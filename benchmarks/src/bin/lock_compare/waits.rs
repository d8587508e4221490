//! The fairness measurement (issue 15: "the worst wait of any process stays within 10x
//! the median"): every timed acquisition's wait goes into a per-worker histogram, and at
//! the end of a run the parent merges them.
//!
//! A histogram, not a list of waits: recording is a few instructions (no allocation, no
//! system call) between the clock read inside the critical section and the next
//! acquisition, so it adds next to nothing to the two clock reads already there; every
//! wait is counted (no sampling). Buckets are log-linear, 16 per power of two: a wait is
//! known to within 1/16 (6%) of itself, exact below 16 ns. `sysv_ipc`'s workers (Python)
//! fill the same buckets with the same formula (`lockloop.py`).

/// Sub-buckets per power of two (2^4).
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// The largest exponent kept apart; longer waits (over 2^40 ns, 18 minutes) share the
/// last bucket.
const MAX_EXP: u32 = 39;
/// Buckets in a histogram.
pub const BUCKETS: usize = (MAX_EXP as usize - SUB_BITS as usize + 2) * SUB;

/// The bucket of a wait of `ns`: `ns` itself below 16, else 16 per power of two.
#[inline(always)]
pub fn bucket(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let mantissa = (ns >> (exp - SUB_BITS)) as usize & (SUB - 1);
    (exp - SUB_BITS + 1) as usize * SUB + mantissa
}

/// The middle of bucket `i`, in ns (its value, for bucket 0..16).
pub fn value(i: usize) -> f64 {
    if i < SUB {
        return i as f64;
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    let width = 1u64 << (exp - SUB_BITS);
    let low = (SUB + i % SUB) as u64 * width;
    low as f64 + width as f64 / 2.0
}

/// The wait (ns) below which a fraction `q` of the counted waits are: the middle of the
/// bucket that holds the `q`-quantile. NaN for an empty histogram.
pub fn quantile(hist: &[u64], q: f64) -> f64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return f64::NAN;
    }
    let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, &n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return value(i);
        }
    }
    value(hist.len() - 1)
}

/// One contended run's fairness.
#[derive(Clone, Copy, Debug)]
pub struct Fairness {
    /// The median of every worker's waits, pooled (ns).
    pub median_ns: f64,
    /// Their 99th percentile (ns).
    pub p99_ns: f64,
    /// The longest single wait of any worker (ns, exact).
    pub worst_ns: u64,
    /// The slowest worker's mean wait (ns): a worker kept waiting more often than the
    /// others shows here, where a single long wait does not.
    pub slowest_mean_ns: f64,
    /// Operations done by each worker while all competed (from the last one's start to
    /// the first one's end): fewest / most (1 = every worker got as many turns; 0.5 = one
    /// got half as many as another). NaN if that window was empty (one worker finished
    /// before another started: too few operations per worker).
    pub spread: f64,
}

impl Fairness {
    /// From the pooled histogram, the worst wait, each worker's mean wait, and each
    /// worker's turns while all competed (`None`: it did not see that window).
    pub fn new(hist: &[u64], worst_ns: u64, mean_waits: &[f64], turns: &[Option<u64>]) -> Self {
        let turns: Option<Vec<u64>> = turns.iter().copied().collect();
        let spread = match turns {
            Some(turns) if turns.iter().any(|&t| t > 0) => {
                let fewest = turns.iter().copied().min().unwrap_or(0);
                let most = turns.iter().copied().max().unwrap_or(0);
                fewest as f64 / most as f64
            }
            _ => f64::NAN,
        };
        Fairness {
            median_ns: quantile(hist, 0.5),
            p99_ns: quantile(hist, 0.99),
            worst_ns,
            slowest_mean_ns: mean_waits.iter().copied().fold(0.0, f64::max),
            spread,
        }
    }

    /// The criterion: the worst wait of any worker over the median wait.
    pub fn worst_over_median(&self) -> f64 {
        self.worst_ns as f64 / self.median_ns.max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_close() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([1 << 20, 1 << 30, (1 << 40) - 1]) {
            let b = bucket(ns);
            assert!(b >= last && b < BUCKETS, "{ns}");
            last = b;
            let v = value(b);
            assert!(
                (v - ns as f64).abs() <= ns as f64 / 16.0 + 0.5,
                "{ns} -> {v}"
            );
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles() {
        let mut hist = vec![0u64; BUCKETS];
        for ns in [100, 100, 100, 5000] {
            hist[bucket(ns)] += 1;
        }
        assert!((quantile(&hist, 0.5) - 100.0).abs() < 7.0);
        assert!((quantile(&hist, 0.99) - 5000.0).abs() < 320.0);
    }
}
