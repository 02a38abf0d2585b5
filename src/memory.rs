//! How the program's memory goes back to the system.
//!
//! glibc keeps what a thread frees in that thread's arena, and returns pages to the system
//! only from the top of a heap. The transient buffers of polling (request and answer
//! bodies, listing pages of some 100 KB, decoded registries) and of encoding (the body's
//! changed pieces) are allocated on the runtime's threads between longer-lived
//! allocations, so each arena ends up holding a few MiB that nothing uses, and resident
//! memory creeps up over hours of polling. Two things keep it down:
//!
//! - [`configure`], before any thread starts: at most [`ARENAS`] arenas (glibc's default
//!   is eight per CPU, each with free pages of its own), and a fixed threshold of
//!   [`MMAP_THRESHOLD`] above which an allocation is a mapping of its own, given back as
//!   soon as it is freed. By default glibc raises that threshold to the size of every
//!   large block freed, so after the first 700 KB listing all of them land in the arenas
//!   and leave holes there. Either setting given in the environment (`MALLOC_ARENA_MAX`,
//!   `MALLOC_MMAP_THRESHOLD_`, or `GLIBC_TUNABLES`) wins over ours.
//! - Every [`PERIOD`], if resident memory grew by more than [`growth`] since the last
//!   trim, and at least every [`TRIM_AT_LEAST`] in any case (memory freed without any
//!   growth, after a reload that dropped targets say), `malloc_trim(0)` hands the free
//!   pages of every arena back. A trim walks every arena, and the pages it returns are
//!   faulted in again when next used; when nothing grew there is little to return.
//!
//! Other allocators (musl, macOS, Windows) return memory themselves; there this does
//! nothing.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How often resident memory is looked at, and the free pages go back if it grew. A trim
/// walks every arena (about a millisecond for the heap of 10,000 targets).
pub const PERIOD: Duration = Duration::from_secs(10);

/// The longest time between two trims, grown or not.
pub const TRIM_AT_LEAST: Duration = Duration::from_secs(300);

/// How much resident memory may grow past what it was after the last trim before the next
/// one: 1/32 of it, and at least 256 KiB.
pub fn growth(settled: u64) -> u64 {
    (settled / 32).max(256 * 1024)
}

/// Arenas glibc may create: the runtime's threads share them. Allocation is a small part
/// of the work, so two are enough to keep threads from waiting on each other.
pub const ARENAS: i32 = 2;

/// Allocations from this size on are mappings of their own (glibc's starting default,
/// kept from moving up).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// What [`configure`] set; `false` where the environment decides, or glibc is not in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Configured {
    /// [`ARENAS`] is the arena limit.
    pub arenas: bool,
    /// [`MMAP_THRESHOLD`] is the fixed mapping threshold.
    pub mmap_threshold: bool,
}

/// Sets the allocator's arena limit and mapping threshold, unless the environment does.
/// Call it first thing, before the runtime starts its threads: arenas are made as
/// threads first allocate.
pub fn configure() -> Configured {
    Configured {
        arenas: !set_by_env("MALLOC_ARENA_MAX", "glibc.malloc.arena_max")
            && set(Param::ArenaMax, ARENAS),
        mmap_threshold: !set_by_env("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold")
            && set(Param::MmapThreshold, MMAP_THRESHOLD),
    }
}

/// The environment sets this allocator setting: its own variable, or a glibc tunable.
fn set_by_env(var: &str, tunable: &str) -> bool {
    std::env::var_os(var).is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains(tunable))
}

/// The `mallopt` settings used here.
#[derive(Debug, Clone, Copy)]
enum Param {
    ArenaMax,
    MmapThreshold,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set(param: Param, value: i32) -> bool {
    let param = match param {
        Param::ArenaMax => libc::M_ARENA_MAX,
        Param::MmapThreshold => libc::M_MMAP_THRESHOLD,
    };
    // SAFETY: mallopt takes two integers and changes glibc's own settings under its lock.
    unsafe { libc::mallopt(param, value) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_: Param, _: i32) -> bool {
    false
}

/// Releases free memory every `period` when resident memory grew by more than [`growth`]
/// since the last release or that was [`TRIM_AT_LEAST`] ago, until cancelled; each trim
/// runs on a blocking thread, off the runtime's workers. Where resident memory cannot be
/// read, every period trims.
pub async fn release_every(period: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: nothing is freed yet at start.
    tick.tick().await;
    // Resident bytes after the last trim, and when it was; the first period always trims.
    let mut settled = 0;
    let mut trimmed = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {
                let grew = resident_bytes().is_none_or(|now| now > settled + growth(settled));
                if !grew && trimmed.elapsed() < TRIM_AT_LEAST {
                    continue;
                }
                let started = Instant::now();
                if let Ok(released) = tokio::task::spawn_blocking(release).await {
                    tracing::trace!(released, took = ?started.elapsed(), "free memory handed back to the system");
                }
                settled = resident_bytes().unwrap_or(0);
                trimmed = Instant::now();
            }
        }
    }
}

/// This process's resident memory, where `/proc` tells it: `statm`, a few counters, where
/// `status` would have the kernel format some fifty lines for one of them.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
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
        resident_bytes().unwrap() / 1024
    }

    #[test]
    fn growth_is_a_thirty_second_and_at_least_256_kib() {
        assert_eq!(growth(0), 256 * 1024);
        assert_eq!(growth(4 << 20), 256 * 1024);
        assert_eq!(growth(64 << 20), 2 << 20);
    }

    #[test]
    fn resident_memory_is_read_and_plausible() {
        let bytes = resident_bytes().unwrap();
        assert!(
            (1 << 20..1 << 40).contains(&bytes),
            "{bytes} bytes resident"
        );
    }

    /// The tests measure the whole process's resident memory: one at a time.
    static RESIDENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn freed_memory_below_a_live_allocation_goes_back() {
        let _one = RESIDENT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    #[test]
    fn large_blocks_go_back_when_freed_even_after_a_larger_one() {
        let _one = RESIDENT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if set_by_env("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold") {
            return;
        }
        assert!(configure().mmap_threshold);
        std::thread::spawn(|| {
            // glibc's default would now raise its threshold to 8 MiB, and put every block
            // below in the arena.
            drop(vec![1u8; 8 << 20]);
            let blocks: Vec<Vec<u8>> = (0..256).map(|_| vec![1u8; 256 * 1024]).collect();
            // Pins the top of the arena, so that the blocks could not go from there.
            let pin = vec![1u8; 1024];
            let before = resident_kib();
            drop(blocks);
            let after = resident_kib();
            drop(pin);
            assert!(
                before.saturating_sub(after) > 32 * 1024,
                "resident {before} KiB with 64 MiB of blocks, {after} KiB after freeing them"
            );
        })
        .join()
        .unwrap();
    }
}
