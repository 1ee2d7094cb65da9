//! Per-object exponential backoff: 1 s, 2 s, 4 s ... up to a cap, reset by a success. One
//! object's failures never slow another's retries.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kube::{Resource, ResourceExt};

/// Key of an object in the backoff tables: `<kind>/<namespace>/<name>`.
pub fn key_of<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Attempts per key (`<kind>/<namespace>/<name>` or any other string).
#[derive(Debug)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    attempts: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            attempts: Mutex::default(),
        }
    }

    /// Counts one more failure of `key` and returns how long to wait before the next try.
    pub fn next(&self, key: &str) -> Duration {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = attempts.entry(key.to_string()).or_insert(0);
        let delay = self
            .first
            .saturating_mul(2u32.saturating_pow(*count))
            .min(self.cap);
        *count = count.saturating_add(1);
        delay
    }

    /// Forgets `key`'s failures (it worked, or it is gone).
    pub fn reset(&self, key: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_per_key_and_reset_on_success() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<u64> = (0..6).map(|_| backoff.next("a").as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff.next("b"), Duration::from_secs(1), "keys are apart");
        backoff.reset("a");
        assert_eq!(backoff.next("a"), Duration::from_secs(1));
        for _ in 0..100 {
            backoff.next("c");
        }
        assert_eq!(backoff.next("c"), Duration::from_secs(10), "no overflow");
    }
}
