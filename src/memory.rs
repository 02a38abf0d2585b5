//! Gives the system back the memory the allocator keeps after the program freed it.
//!
//! glibc keeps what a thread frees in that thread's arena, and returns pages to the system
//! only from the top of a heap. The transient buffers of polling (request and answer
//! bodies, listing pages of some 100 KB, decoded registries) are allocated on the runtime's
//! threads between longer-lived allocations, so each thread's arena ends up holding a few
//! MiB that nothing uses, and resident memory creeps up over hours of polling. Every
//! [`PERIOD`], `malloc_trim(0)` hands the free pages of every arena back. Other allocators
//! (musl, macOS, Windows) return memory themselves; there this does nothing.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How often the free pages go back. A trim walks every arena (about a millisecond for
/// the heap of 10,000 targets), so this costs nothing measurable.
pub const PERIOD: Duration = Duration::from_secs(10);

/// Releases free memory every `period` until cancelled; each trim runs on a blocking
/// thread, off the runtime's workers.
pub async fn release_every(period: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: nothing is freed yet at start.
    tick.tick().await;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {
                let started = Instant::now();
                if let Ok(released) = tokio::task::spawn_blocking(release).await {
                    tracing::trace!(released, took = ?started.elapsed(), "free memory handed back to the system");
                }
            }
        }
    }
}

/// Asks glibc to return the free pages of every arena to the system; whether any went.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release() -> bool {
    // SAFETY: malloc_trim takes no pointer and works on glibc's own free lists, which it
    // locks arena by arena like any other allocator call.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Elsewhere the allocator returns memory by itself.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn freed_memory_below_a_live_allocation_goes_back() {
        // On a thread of its own, like a runtime worker: 64 MiB in small pieces, all freed
        // but the last, which pins the top of the arena so that free() alone returns none.
        let kept = std::thread::spawn(|| {
            let mut pieces: Vec<Vec<u8>> = (0..16 * 1024).map(|_| vec![1u8; 4096]).collect();
            let last = pieces.pop();
            drop(pieces);
            last
        })
        .join()
        .unwrap();
        let before = resident_kib();
        release();
        let after = resident_kib();
        drop(kept);
        assert!(
            before.saturating_sub(after) > 32 * 1024,
            "resident {before} KiB before the trim, {after} KiB after"
        );
    }
}
