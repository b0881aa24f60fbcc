//! The decision cache: what happened to recently decided traces, so late spans follow the
//! decision and replayed records of exported traces are skipped.
//!
//! Two generations, rotated every `ttl / 2` or when the young generation is full: an entry lives
//! between `ttl / 2` and `ttl`. Dropped traces cost one `u64` fingerprint each (~9 bytes in the
//! table); kept traces keep their stamp (shared) and the offset through which their records were
//! exported.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::annotate::Stamp;

/// A remembered decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    Kept { stamp: Arc<Stamp>, exported_through: i64 },
    Dropped,
}

#[derive(Default)]
struct Generation {
    kept: HashMap<[u8; 16], (Arc<Stamp>, i64)>,
    dropped: HashSet<u64>,
}

impl Generation {
    fn len(&self) -> usize {
        self.kept.len() + self.dropped.len()
    }
}

pub struct DecisionCache {
    young: Generation,
    old: Generation,
    rotated: Instant,
    half_ttl: Duration,
    max_per_generation: usize,
}

/// 64-bit fingerprint of a trace ID: SipHash-1-3, so trace IDs with structure (not every client
/// makes random ones) do not collide. (A fold of the two halves, used before, made every pair of
/// IDs whose XOR is a repeated 0xff byte collide: a dropped trace made another one "late".)
fn fingerprint(id: &[u8; 16]) -> u64 {
    use std::hash::{Hash, Hasher};
    #[allow(deprecated)] // SipHasher13's stable alias: the default hasher with fixed keys.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl DecisionCache {
    pub fn new(ttl: Duration, max: usize, now: Instant) -> Self {
        DecisionCache {
            young: Generation::default(),
            old: Generation::default(),
            rotated: now,
            half_ttl: ttl / 2,
            max_per_generation: (max / 2).max(1),
        }
    }

    /// Changes the most decisions remembered (kept and dropped each); takes effect from the next
    /// rotation.
    pub fn set_max(&mut self, max: usize) {
        self.max_per_generation = (max / 2).max(1);
    }

    fn maybe_rotate(&mut self, now: Instant) {
        if now.duration_since(self.rotated) >= self.half_ttl || self.young.len() >= self.max_per_generation {
            self.old = std::mem::take(&mut self.young);
            self.rotated = now;
        }
    }

    pub fn get(&self, id: &[u8; 16]) -> Option<Cached> {
        for g in [&self.young, &self.old] {
            if let Some((stamp, through)) = g.kept.get(id) {
                return Some(Cached::Kept {
                    stamp: stamp.clone(),
                    exported_through: *through,
                });
            }
        }
        let fp = fingerprint(id);
        if self.young.dropped.contains(&fp) || self.old.dropped.contains(&fp) {
            return Some(Cached::Dropped);
        }
        None
    }

    pub fn keep(&mut self, id: [u8; 16], stamp: Arc<Stamp>, exported_through: i64, now: Instant) {
        self.maybe_rotate(now);
        let through = self
            .old
            .kept
            .remove(&id)
            .map(|(_, t)| t.max(exported_through))
            .unwrap_or(exported_through);
        let e = self.young.kept.entry(id).or_insert((stamp, through));
        e.1 = e.1.max(through);
    }

    pub fn drop_trace(&mut self, id: &[u8; 16], now: Instant) {
        self.maybe_rotate(now);
        self.young.dropped.insert(fingerprint(id));
    }

    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Arc<Stamp> {
        Arc::new(Stamp {
            policy: "p".into(),
            policy_version: 1,
            adjusted_count: 1.0,
            ot: None,
        })
    }

    #[test]
    fn structured_trace_ids_do_not_collide() {
        let t0 = Instant::now();
        let mut c = DecisionCache::new(Duration::from_secs(10), 100_000, t0);
        // IDs made of one repeated byte, and IDs differing in a single byte or bit.
        for b in 0..=127u8 {
            c.drop_trace(&[b; 16], t0);
        }
        for b in 128..=255u8 {
            assert_eq!(c.get(&[b; 16]), None, "{b:#x}");
        }
        let mut id = [0u8; 16];
        c.drop_trace(&id, t0);
        for i in 0..128 {
            id = [0; 16];
            id[i / 8] = 1 << (i % 8);
            assert_eq!(c.get(&id), None, "bit {i}");
        }
    }

    #[test]
    fn remembers_then_forgets_after_ttl() {
        let t0 = Instant::now();
        let mut c = DecisionCache::new(Duration::from_secs(10), 1000, t0);
        c.keep([1; 16], stamp(), 5, t0);
        c.drop_trace(&[2; 16], t0);
        assert!(matches!(
            c.get(&[1; 16]),
            Some(Cached::Kept {
                exported_through: 5,
                ..
            })
        ));
        assert_eq!(c.get(&[2; 16]), Some(Cached::Dropped));
        assert_eq!(c.get(&[3; 16]), None);
        // After one rotation still there, after two gone.
        c.drop_trace(&[4; 16], t0 + Duration::from_secs(6));
        assert_eq!(c.get(&[2; 16]), Some(Cached::Dropped));
        c.drop_trace(&[5; 16], t0 + Duration::from_secs(12));
        assert_eq!(c.get(&[2; 16]), None);
        assert_eq!(c.get(&[1; 16]), None);
        assert_eq!(c.get(&[4; 16]), Some(Cached::Dropped));
    }

    #[test]
    fn bounded_by_count() {
        let t0 = Instant::now();
        let mut c = DecisionCache::new(Duration::from_secs(1000), 100, t0);
        for i in 0..10_000u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            c.drop_trace(&id, t0);
        }
        assert!(c.len() <= 100);
    }

    #[test]
    fn kept_exported_through_only_grows() {
        let t0 = Instant::now();
        let mut c = DecisionCache::new(Duration::from_secs(10), 1000, t0);
        c.keep([1; 16], stamp(), 9, t0);
        c.keep([1; 16], stamp(), 4, t0);
        assert!(matches!(
            c.get(&[1; 16]),
            Some(Cached::Kept {
                exported_through: 9,
                ..
            })
        ));
    }
}
