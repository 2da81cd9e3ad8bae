//! How many calls strata retried while writing one resource, for its evidence
//! (`retries`). The resources' retry loops count each retry ([`count`]); the engine
//! takes the count after each write ([`take`]). Runs are sequential (one resource at a
//! time), so one counter is enough.

use std::sync::atomic::{AtomicU32, Ordering};

static RETRIES: AtomicU32 = AtomicU32::new(0);

/// One call is about to be tried again.
pub fn count() {
    RETRIES.fetch_add(1, Ordering::Relaxed);
}

/// The retries since the last take; resets the count.
pub(crate) fn take() -> u32 {
    RETRIES.swap(0, Ordering::Relaxed)
}
