//! A bounded in-memory copy of recently served narinfos.
//!
//! Measured with `wrk`, an SQLite lookup (a read transaction, its `fcntl` locks and the B-tree
//! walk) was a fifth of the CPU time of a narinfo request; a hit here is a hash-map probe and a
//! reference-count increment. Entries are the exact bytes served, so nothing is re-rendered.
//!
//! Staleness is the hard part. Every change to the index that can remove or alter a narinfo
//! (publication, garbage collection, or a commit by another process such as `pcr-cache gc`)
//! clears or updates the cache, and an epoch counter keeps a lookup that read the index before
//! such a change from putting its now-stale result back afterwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use axum::body::Bytes;

use crate::names::StoreHash;

/// Entries kept at most; at ~0.5 KiB per narinfo this bounds the cache to a few MiB. When full
/// it is emptied at once: simpler than LRU bookkeeping on the hot path, and refilling costs one
/// index lookup per entry.
const CAPACITY: usize = 8192;

#[derive(Default)]
pub struct HotCache {
    map: RwLock<HashMap<StoreHash, Bytes>>,
    epoch: AtomicU64,
}

impl HotCache {
    pub fn get(&self, hash: &StoreHash) -> Option<Bytes> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
            .cloned()
    }

    /// The epoch to pass to [`HotCache::insert`]: read it before looking in the index.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Remembers `text` unless the cache was invalidated since `epoch` was read.
    pub fn insert(&self, epoch: u64, hash: StoreHash, text: Bytes) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        // Checked under the write lock, which `invalidate` also takes: no clear can slip between
        // this check and the insert.
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(hash, text);
    }

    /// Forgets everything.
    pub fn invalidate(&self) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(c: char) -> StoreHash {
        StoreHash::parse(&c.to_string().repeat(32)).expect("valid hash")
    }

    #[test]
    fn a_lookup_from_before_an_invalidation_is_not_kept() {
        let cache = HotCache::default();
        let epoch = cache.epoch();
        cache.insert(epoch, hash('a'), Bytes::from_static(b"a"));
        assert_eq!(cache.get(&hash('a')), Some(Bytes::from_static(b"a")));

        let stale = cache.epoch();
        cache.invalidate();
        cache.insert(stale, hash('b'), Bytes::from_static(b"b"));
        assert_eq!(cache.get(&hash('a')), None);
        assert_eq!(cache.get(&hash('b')), None, "read before the invalidation");

        cache.insert(cache.epoch(), hash('b'), Bytes::from_static(b"b"));
        assert!(cache.get(&hash('b')).is_some());
    }

    #[test]
    fn stays_bounded() {
        let cache = HotCache::default();
        let alphabet: Vec<char> = "0123456789abcdfghijklmnpqrsvwxyz".chars().collect();
        for i in 0..CAPACITY + 10 {
            let name: String = (0..32).map(|k| alphabet[(i >> (k % 4 * 5)) % 32]).collect();
            let h = StoreHash::parse(&name).expect("valid");
            cache.insert(cache.epoch(), h, Bytes::from_static(b"x"));
        }
        assert!(cache.map.read().expect("lock").len() <= CAPACITY);
    }
}
