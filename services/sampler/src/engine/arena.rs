//! Frozen indexes of one partition, packed side by side into shared chunks.
//!
//! A frozen index ([`super::IndexBody::freeze`]) is a few hundred bytes that live until the
//! trace is decided. As one allocation each they cost a boxed slice's 16 bytes in the trace, the
//! allocator's header, and the free fragments left between them by the short-lived allocations
//! of the records consumed meanwhile. Here they are appended to chunks of up to
//! [`MAX_CHUNK`] bytes instead, and a trace names its index by 12 bytes ([`FrozenRef`]).
//!
//! Traces are decided in about the order they came, so a chunk empties soon after the ones
//! before it and is freed whole. A chunk kept by a few long-lived indexes is not: when the
//! chunks hold more than twice the live bytes (plus two chunks), [`FrozenArena::wasteful`] says
//! so and the partition copies its live indexes into a fresh arena (amortised O(1) per byte
//! freed).

/// Chunks start at this size (a partition with few traces holds little) and double up to
/// [`MAX_CHUNK`].
const MIN_CHUNK: usize = 4 << 10;
/// The largest chunk, unless one index is larger.
pub(super) const MAX_CHUNK: usize = 64 << 10;

/// Where a frozen index is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FrozenRef {
    chunk: u32,
    start: u32,
    len: u32,
}

impl FrozenRef {
    pub(super) fn len(self) -> usize {
        self.len as usize
    }
}

struct Chunk {
    /// Filled up to its capacity, never beyond (so never moved).
    bytes: Vec<u8>,
    /// Live indexes in it.
    live: u32,
}

#[derive(Default)]
pub(super) struct FrozenArena {
    chunks: Vec<Option<Chunk>>,
    /// Slots of `chunks` that are free.
    vacant: Vec<u32>,
    /// The chunk being filled.
    current: Option<u32>,
    next_size: usize,
    /// The chunks' capacity, and the bytes of live indexes in them.
    reserved: usize,
    live: usize,
}

impl FrozenArena {
    /// Stores `bytes` (not empty).
    pub(super) fn alloc(&mut self, bytes: &[u8]) -> FrozenRef {
        debug_assert!(!bytes.is_empty());
        let fits = self
            .current
            .and_then(|c| self.chunks[c as usize].as_ref())
            .is_some_and(|c| c.bytes.capacity() - c.bytes.len() >= bytes.len());
        if !fits {
            self.start_chunk(bytes.len());
        }
        let id = self.current.expect("a chunk was started");
        let chunk = self.chunks[id as usize].as_mut().expect("the current chunk exists");
        let start = chunk.bytes.len();
        chunk.bytes.extend_from_slice(bytes);
        chunk.live += 1;
        self.live += bytes.len();
        FrozenRef {
            chunk: id,
            // A chunk is at most max(MAX_CHUNK, one index) long, and an index is at most
            // `MAX_FROZEN_BYTES`-ish: far below u32::MAX.
            start: u32::try_from(start).expect("a chunk is smaller than 4 GiB"),
            len: u32::try_from(bytes.len()).expect("a frozen index is smaller than 4 GiB"),
        }
    }

    fn start_chunk(&mut self, need: usize) {
        // The chunk being left is freed now if nothing lives in it.
        if let Some(old) = self.current.take() {
            if self.chunks[old as usize].as_ref().is_some_and(|c| c.live == 0) {
                self.drop_chunk(old);
            }
        }
        self.next_size = self.next_size.clamp(MIN_CHUNK, MAX_CHUNK);
        let size = self.next_size.max(need);
        self.next_size = (self.next_size * 2).min(MAX_CHUNK);
        let chunk = Chunk {
            bytes: Vec::with_capacity(size),
            live: 0,
        };
        self.reserved += chunk.bytes.capacity();
        let id = match self.vacant.pop() {
            Some(id) => {
                self.chunks[id as usize] = Some(chunk);
                id
            }
            None => {
                self.chunks.push(Some(chunk));
                u32::try_from(self.chunks.len() - 1).expect("fewer than 4G chunks")
            }
        };
        self.current = Some(id);
    }

    fn drop_chunk(&mut self, id: u32) {
        if let Some(c) = self.chunks[id as usize].take() {
            self.reserved -= c.bytes.capacity();
            self.vacant.push(id);
        }
    }

    /// The bytes stored at `r` (by [`FrozenArena::alloc`], not freed since).
    pub(super) fn get(&self, r: FrozenRef) -> &[u8] {
        let chunk = self.chunks[r.chunk as usize]
            .as_ref()
            .expect("a live index's chunk exists");
        &chunk.bytes[r.start as usize..r.start as usize + r.len as usize]
    }

    /// Frees `r`; a chunk with nothing left in it is freed (the one being filled starts over).
    pub(super) fn free(&mut self, r: FrozenRef) {
        let chunk = self.chunks[r.chunk as usize]
            .as_mut()
            .expect("a live index's chunk exists");
        chunk.live -= 1;
        self.live -= r.len as usize;
        if chunk.live == 0 {
            if self.current == Some(r.chunk) {
                chunk.bytes.clear();
            } else {
                self.drop_chunk(r.chunk);
            }
        }
    }

    /// The chunks hold more than twice the live bytes, plus two chunks.
    pub(super) fn wasteful(&self) -> bool {
        self.reserved > 2 * self.live + 2 * MAX_CHUNK
    }

    /// Bytes of the chunks.
    #[cfg(test)]
    pub(super) fn reserved(&self) -> usize {
        self.reserved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_frees_in_chunks() {
        let mut a = FrozenArena::default();
        let refs: Vec<(FrozenRef, Vec<u8>)> = (0..1000u32)
            .map(|i| {
                let v: Vec<u8> = (0..(i % 300 + 1)).map(|j| (i + j) as u8).collect();
                (a.alloc(&v), v)
            })
            .collect();
        for (r, v) in &refs {
            assert_eq!(a.get(*r), v.as_slice());
        }
        let total: usize = refs.iter().map(|(_, v)| v.len()).sum();
        assert!(a.reserved() >= total && a.reserved() < total + 2 * MAX_CHUNK);
        assert!(!a.wasteful());
        // Freed in about the order they came: chunks go with them.
        for (r, _) in &refs[..900] {
            a.free(*r);
        }
        for (r, v) in &refs[900..] {
            assert_eq!(a.get(*r), v.as_slice());
        }
        assert!(
            a.reserved() <= a.live + 2 * MAX_CHUNK,
            "{} reserved for {}",
            a.reserved(),
            a.live
        );
        for (r, _) in &refs[900..] {
            a.free(*r);
        }
        assert_eq!(a.live, 0);
        // Only the chunk being filled is left, empty, and it is filled again from its start.
        assert!(a.reserved() <= MAX_CHUNK);
        let r = a.alloc(b"again");
        assert_eq!(a.get(r), b"again");
        assert_eq!(r.start, 0);
    }

    #[test]
    fn a_chunk_kept_by_one_index_makes_the_arena_wasteful() {
        let mut a = FrozenArena::default();
        let v = vec![7u8; 500];
        let refs: Vec<FrozenRef> = (0..2000).map(|_| a.alloc(&v)).collect();
        // One index in every chunk outlives the rest.
        let mut kept = Vec::new();
        for (i, r) in refs.iter().enumerate() {
            if i % 100 == 0 {
                kept.push(*r);
            } else {
                a.free(*r);
            }
        }
        assert!(a.wasteful(), "{} reserved for {} live", a.reserved(), a.live);
        for r in kept {
            a.free(r);
        }
        assert!(!a.wasteful());
    }

    #[test]
    fn an_index_larger_than_a_chunk_gets_its_own() {
        let mut a = FrozenArena::default();
        let small = a.alloc(b"small");
        let big = vec![1u8; MAX_CHUNK * 3];
        let r = a.alloc(&big);
        assert_eq!(a.get(r), big.as_slice());
        assert_eq!(a.get(small), b"small");
        a.free(r);
        a.free(small);
        assert_eq!(a.live, 0);
    }
}
