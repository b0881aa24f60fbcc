//! Per-key sample rates: the algorithms of Honeycomb's `dynsampler-go`
//! (used by Refinery's dynamic samplers), driven by the time passed in.
//!
//! A [`KeyedRates`] counts traffic per key in the current interval and
//! serves the sample rates computed at the end of the previous interval(s).
//! Intervals roll when `now` passes the end of the current one (no timer,
//! no clock reads); see the crate documentation for the clock rules. Memory
//! is bounded by `max_keys`: keys that find no room are counted (and rated)
//! together under one overflow key.
//!
//! Depends on nothing else in the crate.

use std::collections::{HashMap, VecDeque};

/// The shared key of everything beyond `max_keys`. Real keys never contain
/// a NUL character (the key builder replaces it), so this cannot collide.
pub(crate) const OVERFLOW_KEY: &str = "\u{0}overflow";

/// The largest sample rate ever returned (a keep probability of 2^-40 is
/// far below anything useful, and keeps `1 / rate` exact enough).
pub(crate) const MAX_RATE: u64 = 1 << 40;

/// EMA settings shared by `EMASampleRate` and `EMAThroughput`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EmaParams {
    pub weight: f64,
    pub age_out: f64,
    pub burst_multiple: f64,
    pub burst_detection_delay: u64,
}

/// Which dynsampler algorithm computes the rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Algorithm {
    /// `AvgSampleRate`: goal sample rate, rates from the last interval's counts.
    AvgSampleRate { goal_rate: u64 },
    /// `EMASampleRate`: goal sample rate over an exponential moving average.
    EmaSampleRate { goal_rate: u64, ema: EmaParams },
    /// `EMAThroughput`: goal throughput over an exponential moving average.
    EmaThroughput {
        goal_per_sec: f64,
        initial_rate: u64,
        ema: EmaParams,
    },
    /// `WindowedThroughput`: goal throughput over the last `lookback`
    /// update intervals.
    WindowedThroughput { goal_per_sec: f64, lookback: u64 },
    /// `TotalThroughput`: goal throughput split equally among the keys of
    /// the last interval.
    TotalThroughput { goal_per_sec: f64 },
}

impl Algorithm {
    fn ema(&self) -> Option<&EmaParams> {
        match self {
            Algorithm::EmaSampleRate { ema, .. } | Algorithm::EmaThroughput { ema, .. } => Some(ema),
            _ => None,
        }
    }
}

/// Go's `math.Max`: NaN if either argument is NaN (Rust's `f64::max`
/// ignores NaN, which would change dynsampler's results).
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn clamp_rate(r: f64) -> u64 {
    if r.is_nan() || r < 1.0 {
        1
    } else if r >= MAX_RATE as f64 {
        MAX_RATE
    } else {
        r as u64
    }
}

/// dynsampler's `calculateSampleRates`: every key's goal is its log10 share
/// of the goal count (at least 1); keys under their goal get rate 1 and
/// pass the unused room on to the following keys (in sorted key order).
pub(crate) fn calculate_sample_rates(goal_ratio: f64, counts: &HashMap<Box<str>, f64>) -> HashMap<Box<str>, u64> {
    let mut keys: Vec<&Box<str>> = counts.keys().collect();
    keys.sort();
    let mut out = HashMap::with_capacity(keys.len());
    let mut remaining = keys.len();
    let mut extra = 0.0f64;
    for key in keys {
        let count = go_max(1.0, counts[key]);
        let mut goal = go_max(1.0, count.log10() * goal_ratio);
        let extra_for_key = extra / remaining as f64;
        goal += extra_for_key;
        extra -= extra_for_key;
        remaining -= 1;
        if count <= goal {
            out.insert(key.clone(), 1);
            extra += goal - count;
        } else {
            let rate = (count / goal).ceil();
            let rate = if rate.is_nan() { 1 } else { clamp_rate(rate) };
            out.insert(key.clone(), rate);
            extra += goal - count / rate as f64;
        }
    }
    out
}

fn adjust_average(old: f64, value: f64, weight: f64) -> f64 {
    value * weight + (1.0 - weight) * old
}

/// Per-key sample rates of one sampler instance.
#[derive(Debug, Clone)]
pub(crate) struct KeyedRates {
    algo: Algorithm,
    /// Clear / adjustment / update interval in nanoseconds (>= 1).
    interval_ns: u64,
    max_keys: usize,
    /// Fraction of the cluster's throughput goal this instance enforces.
    share: f64,
    /// Start of the current interval (interval-based algorithms) or the
    /// current window index (windowed).
    start: Option<u64>,
    current: HashMap<Box<str>, f64>,
    rates: HashMap<Box<str>, u64>,
    have_data: bool,
    // EMA state.
    moving: HashMap<Box<str>, f64>,
    burst_threshold: f64,
    burst_sum: f64,
    intervals: u64,
    // Windowed state: past blocks (index, counts), oldest first, and how
    // many keys of the current block are not in `rates`.
    blocks: VecDeque<(u64, HashMap<Box<str>, f64>)>,
    new_in_current: usize,
}

impl KeyedRates {
    /// A fresh sampler: `interval_ns` is the clear frequency, adjustment
    /// interval or update frequency of the algorithm.
    pub(crate) fn new(algo: Algorithm, interval_ns: u64, max_keys: usize) -> Self {
        KeyedRates {
            algo,
            interval_ns: interval_ns.max(1),
            max_keys: max_keys.max(1),
            share: 1.0,
            start: None,
            current: HashMap::new(),
            rates: HashMap::new(),
            have_data: false,
            moving: HashMap::new(),
            burst_threshold: 0.0,
            burst_sum: 0.0,
            intervals: 0,
            blocks: VecDeque::new(),
            new_in_current: 0,
        }
    }

    /// Enforces `share` of throughput goals from the next rate computation
    /// on (goal sample rates are ratios and are not scaled).
    pub(crate) fn set_share(&mut self, share: f64) {
        self.share = share;
    }

    /// Number of keys held in memory (counts, rates, averages, windows).
    #[cfg(test)]
    pub(crate) fn tracked_keys(&self) -> usize {
        self.current.len()
            + self.rates.len()
            + self.moving.len()
            + self.blocks.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// Counts `count` (spans or 1) for `key` at `now` and returns the key's
    /// current sample rate (>= 1).
    pub(crate) fn sample_rate(&mut self, key: &str, count: f64, now: u64) -> u64 {
        self.advance(now);
        let admitted = self.admit(key);
        let counted = if admitted { key } else { OVERFLOW_KEY };
        match self.current.get_mut(counted) {
            Some(c) => *c += count,
            None => {
                self.current.insert(counted.into(), count);
            }
        }
        let rate = self.lookup(key, admitted);
        if let Some(ema) = self.algo.ema().copied() {
            self.burst_sum += count;
            if self.burst_threshold > 0.0
                && self.burst_sum >= self.burst_threshold
                && self.intervals >= ema.burst_detection_delay
            {
                // A burst: recompute now and restart the interval (dynsampler
                // does this asynchronously, so this trace keeps the old rate).
                self.burst_sum = 0.0;
                self.update();
                self.start = Some(now);
            }
        }
        rate
    }

    fn admit(&mut self, key: &str) -> bool {
        if self.current.contains_key(key) {
            return true;
        }
        match self.algo {
            Algorithm::WindowedThroughput { .. } => {
                // Distinct keys across the window (approximated by the keys
                // rated from it plus the new keys of the current block).
                if self.rates.contains_key(key) {
                    self.current.len() < 2 * self.max_keys
                } else if self.rates.len() + self.new_in_current < self.max_keys {
                    self.new_in_current += 1;
                    true
                } else {
                    false
                }
            }
            _ => self.current.len() < self.max_keys,
        }
    }

    fn lookup(&self, key: &str, admitted: bool) -> u64 {
        if let Some(r) = self.rates.get(key) {
            return *r;
        }
        if !admitted {
            if let Some(r) = self.rates.get(OVERFLOW_KEY) {
                return *r;
            }
        }
        if self.have_data {
            return 1;
        }
        match self.algo {
            Algorithm::AvgSampleRate { goal_rate } | Algorithm::EmaSampleRate { goal_rate, .. } => goal_rate.max(1),
            Algorithm::EmaThroughput { initial_rate, .. } => initial_rate.max(1),
            Algorithm::WindowedThroughput { .. } | Algorithm::TotalThroughput { .. } => 1,
        }
    }

    /// Rolls intervals that ended before `now`.
    fn advance(&mut self, now: u64) {
        let interval = self.interval_ns;
        if let Algorithm::WindowedThroughput { lookback, .. } = self.algo {
            let idx = now / interval;
            match self.start {
                None => self.start = Some(idx),
                Some(last) if idx > last => {
                    let block = std::mem::take(&mut self.current);
                    if !block.is_empty() {
                        self.blocks.push_back((last, block));
                    }
                    self.start = Some(idx);
                    self.update_windowed(idx);
                }
                // The clock went back further than the window: restart the
                // window at `now` (otherwise rates would freeze until the
                // clock catches up).
                Some(last) if last - idx > lookback => {
                    self.blocks.clear();
                    self.start = Some(idx);
                }
                // Same index, or back within the window: count into the
                // current block.
                Some(_) => {}
            }
            return;
        }
        let start = *self.start.get_or_insert(now);
        if now < start {
            // The clock went back. Within one interval: keep counting into
            // the current one; further back: restart the interval at `now`
            // so that rates do not freeze until the clock catches up.
            if start - now > interval {
                self.start = Some(now);
            }
            return;
        }
        let elapsed = now - start;
        if elapsed < interval {
            return;
        }
        let k = elapsed / interval;
        self.update();
        self.intervals = self.intervals.saturating_add(1);
        if k >= 2 {
            // Intervals without traffic: one empty update has the effect of
            // any number of them.
            self.update();
            self.intervals = self.intervals.saturating_add(k - 1);
        }
        self.start = Some(start + k * interval);
    }

    /// dynsampler's `updateMaps` for the interval-based algorithms.
    fn update(&mut self) {
        let interval_secs = self.interval_ns as f64 / 1e9;
        match self.algo {
            Algorithm::AvgSampleRate { goal_rate } => {
                let counts = std::mem::take(&mut self.current);
                if counts.is_empty() {
                    self.rates.clear();
                    return;
                }
                let sum: f64 = counts.values().sum();
                let goal_count = sum / goal_rate.max(1) as f64;
                let log_sum: f64 = counts.values().map(|c| c.log10()).sum();
                self.rates = calculate_sample_rates(goal_count / log_sum, &counts);
                self.have_data = true;
            }
            Algorithm::EmaSampleRate { goal_rate, ema } => {
                if self.current.is_empty() {
                    return;
                }
                self.update_ema(&ema);
                let sum = self.moving_sum();
                self.burst_threshold = sum * ema.burst_multiple;
                self.rate_from_moving(sum / goal_rate.max(1) as f64);
            }
            Algorithm::EmaThroughput { goal_per_sec, ema, .. } => {
                if self.current.is_empty() {
                    return;
                }
                self.update_ema(&ema);
                let sum = self.moving_sum();
                self.burst_threshold = sum * ema.burst_multiple;
                self.rate_from_moving(goal_per_sec * self.share * interval_secs);
            }
            Algorithm::TotalThroughput { goal_per_sec } => {
                let counts = std::mem::take(&mut self.current);
                self.rates = per_key_throughput(&counts, goal_per_sec * self.share * interval_secs);
            }
            Algorithm::WindowedThroughput { .. } => {}
        }
    }

    fn update_windowed(&mut self, idx: u64) {
        let Algorithm::WindowedThroughput { goal_per_sec, lookback } = self.algo else {
            return;
        };
        let first = idx.saturating_sub(lookback);
        while self.blocks.front().is_some_and(|(i, _)| *i < first) {
            self.blocks.pop_front();
        }
        let mut agg: HashMap<Box<str>, f64> = HashMap::new();
        for (i, block) in &self.blocks {
            if *i >= first && *i < idx {
                for (k, v) in block {
                    match agg.get_mut(k) {
                        Some(c) => *c += v,
                        None => {
                            agg.insert(k.clone(), *v);
                        }
                    }
                }
            }
        }
        let lookback_secs = (lookback * self.interval_ns) as f64 / 1e9;
        self.rates = per_key_throughput(&agg, goal_per_sec * self.share * lookback_secs);
        self.new_in_current = 0;
    }

    fn update_ema(&mut self, ema: &EmaParams) {
        let mut counts = std::mem::take(&mut self.current);
        self.burst_sum = 0.0;
        let w = ema.weight;
        self.moving.retain(|key, avg| {
            let value = counts.remove(key).unwrap_or(0.0);
            *avg = adjust_average(*avg, value, w);
            *avg >= ema.age_out
        });
        // New keys; beyond the cap their averages share the overflow entry.
        let cap = 2 * self.max_keys + 1;
        let mut overflow = 0.0;
        for (key, value) in counts {
            let avg = adjust_average(0.0, value, w);
            if avg < ema.age_out {
                continue;
            }
            if self.moving.len() < cap || &*key == OVERFLOW_KEY {
                self.moving.insert(key, avg);
            } else {
                overflow += avg;
            }
        }
        if overflow > 0.0 {
            *self.moving.entry(OVERFLOW_KEY.into()).or_insert(0.0) += overflow;
        }
    }

    fn moving_sum(&self) -> f64 {
        self.moving.values().map(|c| go_max(1.0, *c)).sum()
    }

    fn rate_from_moving(&mut self, goal_count: f64) {
        let log_sum: f64 = self.moving.values().map(|c| go_max(1.0, *c).log10()).sum();
        self.rates = calculate_sample_rates(goal_count / log_sum, &self.moving);
        self.have_data = true;
    }
}

/// `TotalThroughput` / `WindowedThroughput`: the goal count of the period
/// split equally among its keys; `rate = max(1, count / per_key)`, truncated.
fn per_key_throughput(counts: &HashMap<Box<str>, f64>, goal_count: f64) -> HashMap<Box<str>, u64> {
    if counts.is_empty() {
        return HashMap::new();
    }
    let per_key = goal_count / counts.len() as f64;
    counts
        .iter()
        .map(|(k, v)| (k.clone(), clamp_rate(go_max(1.0, v / per_key).trunc())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn counts(v: &[(&str, f64)]) -> HashMap<Box<str>, f64> {
        v.iter().map(|(k, c)| (Box::from(*k), *c)).collect()
    }

    fn avg_rates(goal: f64, c: &[(&str, f64)]) -> HashMap<Box<str>, u64> {
        let c = counts(c);
        let sum: f64 = c.values().sum();
        let log_sum: f64 = c.values().map(|v| v.log10()).sum();
        calculate_sample_rates(sum / goal / log_sum, &c)
    }

    #[test]
    fn calculate_matches_dynsampler() {
        // dynsampler-go avgsamplerate_test.go TestAvgSampleUpdateMaps (goal 20).
        let names = [
            "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        ];
        let cases: [(&[f64], &[u64]); 3] = [
            (
                &[1.0, 1.0, 2.0, 5.0, 8.0, 15.0, 45.0, 612.0, 2000.0, 10000.0],
                &[1, 1, 1, 1, 1, 1, 1, 6, 14, 47],
            ),
            (
                &[1.0, 1.0, 2.0, 5.0, 8.0, 15.0, 45.0, 50.0, 60.0],
                &[1, 1, 2, 5, 8, 11, 24, 26, 30],
            ),
            (&[1.0, 1.0, 2.0, 5.0, 7.0], &[1, 1, 2, 5, 7]),
        ];
        for (input, want) in cases {
            let c: Vec<(&str, f64)> = names.iter().copied().zip(input.iter().copied()).collect();
            let rates = avg_rates(20.0, &c);
            for (k, r) in names.iter().zip(want) {
                assert_eq!(rates[*k], *r, "{k} in {input:?}");
            }
        }
    }

    #[test]
    fn all_ones_gives_rate_one() {
        // log-sum 0: goal ratio +Inf, dynsampler's NaN path gives rate 1.
        let c = counts(&[("a", 1.0), ("b", 1.0)]);
        let rates = calculate_sample_rates(1.0 / 0.0, &c);
        assert_eq!(rates["a"], 1);
        assert_eq!(rates["b"], 1);
    }

    #[test]
    fn avg_rates_roll_and_clear() {
        let mut s = KeyedRates::new(Algorithm::AvgSampleRate { goal_rate: 10 }, 30 * SEC, 500);
        // Before any data: the goal rate.
        assert_eq!(s.sample_rate("a", 1.0, 0), 10);
        for _ in 0..999 {
            s.sample_rate("a", 1.0, SEC);
        }
        s.sample_rate("b", 1.0, SEC);
        // Next interval: "a" thinned (sum 1001, goal count 100.1, log-sum
        // 3: "a" gets ceil(1000 / 100.1)), "b" kept.
        assert_eq!(s.sample_rate("a", 1.0, 31 * SEC), 10);
        assert_eq!(s.sample_rate("b", 1.0, 31 * SEC), 1);
        // Two idle intervals: rates cleared, unknown keys rate 1.
        assert_eq!(s.sample_rate("a", 1.0, 200 * SEC), 1);
    }

    #[test]
    fn clock_backwards_is_harmless() {
        let mut s = KeyedRates::new(Algorithm::TotalThroughput { goal_per_sec: 10.0 }, SEC, 10);
        s.sample_rate("a", 1.0, 100 * SEC);
        s.sample_rate("a", 1.0, 0);
        s.sample_rate("a", 1.0, u64::MAX);
        s.sample_rate("a", 1.0, 5);
        let mut w = KeyedRates::new(
            Algorithm::WindowedThroughput {
                goal_per_sec: 10.0,
                lookback: 5,
            },
            SEC,
            10,
        );
        w.sample_rate("a", 1.0, u64::MAX);
        w.sample_rate("a", 1.0, 0);
        w.sample_rate("a", 1.0, u64::MAX);
    }
}
