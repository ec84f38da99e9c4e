//! A small in-process cache with a time bound, for values read on every request that
//! change rarely (authenticated API keys, integrations). Changes made through this
//! process invalidate entries at once; the time bound caps how long a change made by
//! another process can go unseen.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct TtlCache<K, V> {
    inner: Mutex<HashMap<K, (V, Instant)>>,
    ttl: Duration,
    max_entries: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(HashMap::new()),
            ttl,
            max_entries,
        }
    }

    pub(crate) fn get(&self, k: &K) -> Option<V> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.get(k)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    pub(crate) fn put(&self, k: K, v: V) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_entries {
            let ttl = self.ttl;
            map.retain(|_, (_, at)| at.elapsed() < ttl);
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
        map.insert(k, (v, Instant::now()));
    }

    pub(crate) fn remove(&self, k: &K) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(k);
    }

    pub(crate) fn clear(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_invalidates() {
        let c = TtlCache::new(Duration::from_millis(0), 10);
        c.put("a", 1);
        assert_eq!(c.get(&"a"), None, "zero ttl: always stale");
        let c = TtlCache::new(Duration::from_secs(60), 2);
        c.put("a", 1);
        assert_eq!(c.get(&"a"), Some(1));
        c.remove(&"a");
        assert_eq!(c.get(&"a"), None);
        c.put("a", 1);
        c.put("b", 2);
        c.put("c", 3);
        assert_eq!(
            c.get(&"c"),
            Some(3),
            "bounded: full caches are emptied, not grown"
        );
    }
}
