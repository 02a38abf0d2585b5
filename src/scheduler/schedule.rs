//! When each target of a budget is polled: a pure timetable, driven by the worker.
//!
//! - **First round at the speed of the budget.** Targets that have never been polled (at
//!   start, or added by a reload) are due at once, as many as the budget allows a minute,
//!   and the rest one budget step (a minute divided by the limit) apart. The rate limiter
//!   still keeps every 60-second window within the limit; this only spreads what it lets
//!   through.
//! - **Then spread over the interval.** Each target has an anchor, its place on a grid of
//!   `interval` steps; targets are spread evenly over the interval by their anchors. After a
//!   poll at `t`, the next one is the target's grid point in `[t + interval/2, t + 3·interval/2)`:
//!   on time when polls are on time, back on the grid after a late or early one, and never
//!   two polls of a target closer than half an interval in steady state.
//! - **Reloads.** Kept targets keep their place. When the interval shrinks, no kept target
//!   waits longer than the new interval; when it grows, nothing is polled earlier than
//!   planned. Added targets get a first round of their own.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::limiter::{RATE_MARGIN, RATE_WINDOW};

/// One target's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Times {
    /// When it is polled next.
    due: Instant,
    /// A point of its grid: its polls belong at `anchor + k·interval`.
    anchor: Instant,
    /// Never polled yet: it is in a first round, ahead of regular polls.
    first: bool,
}

/// The timetable of one budget's targets; entry `i` is the worker's target `i`.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    /// The budget's calls a minute: how fast a first round goes.
    per_minute: u32,
    entries: Vec<Times>,
    /// (due, entry) of the entries in a first round, and of the others: the next entry is
    /// found in O(log n), not by a scan of thousands at every poll.
    firsts: BTreeSet<(Instant, usize)>,
    regular: BTreeSet<(Instant, usize)>,
}

impl Schedule {
    /// `n` targets in a first round from `now`.
    pub fn new(n: usize, interval: Duration, per_minute: u32, now: Instant) -> Self {
        let mut schedule = Schedule {
            interval,
            per_minute: per_minute.max(1),
            entries: Vec::with_capacity(n),
            firsts: BTreeSet::new(),
            regular: BTreeSet::new(),
        };
        let firsts = schedule.first_round(n, now);
        schedule.entries.extend(firsts);
        schedule.reindex();
        schedule
    }

    /// The index of entry `i`'s times.
    fn index(&mut self, i: usize) -> &mut BTreeSet<(Instant, usize)> {
        if self.entries[i].first {
            &mut self.firsts
        } else {
            &mut self.regular
        }
    }

    /// Builds both indexes again from the entries.
    fn reindex(&mut self) {
        self.firsts.clear();
        self.regular.clear();
        for i in 0..self.entries.len() {
            let due = self.entries[i].due;
            self.index(i).insert((due, i));
        }
    }

    /// How many targets.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// When entry `i` is due.
    pub fn due(&self, i: usize) -> Instant {
        self.entries[i].due
    }

    /// Entry `i` has not been polled yet.
    pub fn is_first(&self, i: usize) -> bool {
        self.entries[i].first
    }

    /// The entry to poll next and when: the earliest due; among those already due at `now`,
    /// targets of a first round go before regular polls.
    pub fn next(&self, now: Instant) -> Option<(usize, Instant)> {
        // The earliest of each index; between the two, the key is (due.max(now), !first,
        // due), as if every entry were compared.
        let first = self
            .firsts
            .first()
            .map(|&(due, i)| ((due.max(now), false, due), i));
        let regular = self
            .regular
            .first()
            .map(|&(due, i)| ((due.max(now), true, due), i));
        [first, regular]
            .into_iter()
            .flatten()
            .min_by_key(|(key, _)| *key)
            .map(|(_, i)| (i, self.entries[i].due))
    }

    /// Entry `i` was polled at `at`: its next poll is its grid point in
    /// `[at + interval/2, at + 3·interval/2)`.
    pub fn polled(&mut self, i: usize, at: Instant) {
        let interval = self.interval;
        let due = self.entries[i].due;
        self.index(i).remove(&(due, i));
        let t = &mut self.entries[i];
        let earliest = at + interval / 2;
        let mut next = t.anchor;
        if next < earliest {
            // Whole steps forward; the grid point at or after `earliest`.
            let behind = earliest - next;
            let steps = behind.as_nanos().div_ceil(interval.as_nanos().max(1));
            next += interval * u32::try_from(steps).unwrap_or(u32::MAX);
        } else {
            // An anchor far ahead (the interval shrank): the grid point just at or after
            // `earliest`, so that the next poll is never more than 1.5 intervals away.
            let ahead = next - earliest;
            let steps = ahead.as_nanos() / interval.as_nanos().max(1);
            next -= interval * u32::try_from(steps).unwrap_or(u32::MAX);
        }
        *t = Times {
            due: next,
            anchor: next,
            first: false,
        };
        self.regular.insert((next, i));
    }

    /// Moves to a new target list and settings at `now`. `kept[j]` is the old entry that
    /// new entry `j` continues, if any: kept entries keep their times (pulled in when the
    /// interval shrank), new ones get a first round.
    pub fn replan(
        &mut self,
        kept: &[Option<usize>],
        interval: Duration,
        per_minute: u32,
        now: Instant,
    ) {
        let shrank = interval < self.interval;
        self.interval = interval;
        self.per_minute = per_minute.max(1);
        let old = std::mem::take(&mut self.entries);
        let added: Vec<usize> = (0..kept.len()).filter(|&j| kept[j].is_none()).collect();
        // Kept entries first, in place; added ones are filled in below.
        let placeholder = Times {
            due: now,
            anchor: now,
            first: true,
        };
        self.entries = kept
            .iter()
            .map(|k| k.and_then(|i| old.get(i).copied()).unwrap_or(placeholder))
            .collect();
        if shrank {
            self.pull_in(now, kept);
        }
        let firsts = self.first_round(added.len(), now);
        for (j, times) in added.into_iter().zip(firsts) {
            self.entries[j] = times;
        }
        self.reindex();
    }

    /// After the interval shrank: the kept entries, in the order they are due, get at most
    /// their share of the new interval to wait, so that none waits longer than it and they
    /// stay spread.
    fn pull_in(&mut self, now: Instant, kept: &[Option<usize>]) {
        let mut order: Vec<usize> = (0..self.entries.len())
            .filter(|&j| kept[j].is_some())
            .collect();
        let n = order.len() as u32;
        order.sort_by_key(|&j| self.entries[j].due);
        for (rank, j) in order.into_iter().enumerate() {
            let latest = now + self.interval * rank as u32 / n.max(1);
            let t = &mut self.entries[j];
            t.due = t.due.min(latest);
            t.anchor = t.anchor.min(latest);
        }
    }

    /// The times of `n` targets in a first round from `now`: the first `per_minute` at once,
    /// then one a budget step apart (the limiter's window over the limit, so that it never
    /// has to hold one back); their anchors are spread over the interval.
    fn first_round(&self, n: usize, now: Instant) -> Vec<Times> {
        let count = n as u32;
        let step = (RATE_WINDOW + RATE_MARGIN) / self.per_minute;
        (0..count)
            .map(|k| Times {
                due: if k < self.per_minute {
                    now
                } else {
                    now + step * k
                },
                anchor: now + self.interval * k / count,
                first: true,
            })
            .collect()
    }
}

/// The longest a wake-up is put off to share a grid point with others.
pub const MAX_SLACK: Duration = Duration::from_secs(1);

/// Rounds `wake` up to the grid that starts at `epoch` and has a step of 1/600 of the
/// poll `interval`, at most [`MAX_SLACK`] (1 s for a 10-minute interval, 100 ms for a
/// minute, 16 ms for 10 seconds). Every worker uses the same grid, so polls due within one
/// step go out together, from one wake-up of the polling thread, instead of each from its
/// own: at 16 polls a second the thread wakes about once a second instead of 16 times, and
/// each wake-up, with the caches it finds cold, is a good part of what a poll costs. A poll
/// is only ever made later, by less than a step, never earlier, so no budget is spent
/// faster.
pub fn coalesce(wake: Instant, epoch: Instant, interval: Duration) -> Instant {
    let step = (interval / 600).min(MAX_SLACK).as_nanos();
    if step == 0 || wake <= epoch {
        return wake;
    }
    let since = (wake - epoch).as_nanos();
    let rounded = since.div_ceil(step) * step;
    u64::try_from(rounded)
        .ok()
        .and_then(|n| epoch.checked_add(Duration::from_nanos(n)))
        .unwrap_or(wake)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn coalesces_wake_ups_onto_a_shared_grid_never_earlier() {
        let epoch = Instant::now();
        let ms = |n: u64| Duration::from_millis(n);
        let ten_minutes = 10 * MIN;
        // A step of 1 s for a 10-minute interval: every wake-up within one step goes to
        // its end.
        for (wake, wanted) in [
            (1, 1000),
            (999, 1000),
            (1000, 1000),
            (1001, 2000),
            (60_001, 61_000),
        ] {
            assert_eq!(
                coalesce(epoch + ms(wake), epoch, ten_minutes),
                epoch + ms(wanted),
                "{wake} ms"
            );
        }
        // Never more than a second, however long the interval.
        assert_eq!(
            coalesce(epoch + ms(1), epoch, 100 * ten_minutes),
            epoch + ms(1000)
        );
        // A 600th of a shorter interval: 100 ms for a minute.
        assert_eq!(coalesce(epoch + ms(101), epoch, MIN), epoch + ms(200));
        // Before the grid starts, and with an interval too short for a step, as it is.
        assert_eq!(coalesce(epoch, epoch, ten_minutes), epoch);
        assert_eq!(
            coalesce(epoch + ms(7), epoch, Duration::from_nanos(599)),
            epoch + ms(7)
        );
        // Too far ahead to count in nanoseconds: as it is.
        let far = epoch + Duration::from_secs(1 << 40);
        assert!(coalesce(far, epoch, ten_minutes) >= far);
    }

    fn secs(from: Instant, t: Instant) -> u64 {
        (t - from).as_secs()
    }

    /// Runs the schedule from `start` with every poll on time (`budget` polls a minute at
    /// most, as the limiter would allow); returns (key, second) of each poll until `until`.
    fn run(s: &mut Schedule, start: Instant, until: Duration) -> Vec<(usize, u64)> {
        let mut polls = Vec::new();
        let mut now = start;
        while let Some((i, due)) = s.next(now) {
            now = now.max(due);
            if now - start >= until {
                break;
            }
            polls.push((i, secs(start, now)));
            s.polled(i, now);
        }
        polls
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_round_goes_at_the_budget_pace_then_settles_on_the_grid() {
        let start = Instant::now();
        let mut s = Schedule::new(12, 5 * MIN, 5, start);
        let dues: Vec<u64> = (0..12).map(|i| secs(start, s.due(i))).collect();
        assert_eq!(dues, [0, 0, 0, 0, 0, 61, 73, 85, 97, 109, 122, 134]);
        let polls = run(&mut s, start, 15 * MIN);
        // After the first round every target is polled once an interval, 25 s apart.
        let later: Vec<u64> = polls[12..24].iter().map(|&(_, t)| t).collect();
        assert_eq!(
            later,
            [300, 325, 350, 375, 400, 425, 450, 475, 500, 525, 550, 575]
        );
        for key in 0..12 {
            let times: Vec<u64> = polls
                .iter()
                .filter(|&&(k, _)| k == key)
                .map(|&(_, t)| t)
                .collect();
            assert!(times.len() >= 3, "{key}: {times:?}");
            for pair in times.windows(2) {
                let gap = pair[1] - pair[0];
                assert!((150..450).contains(&gap), "{key}: {times:?}");
            }
            for pair in times[1..].windows(2) {
                assert_eq!(pair[1] - pair[0], 300, "{key}: steady state");
            }
        }
    }

    /// The scan the indexes replace: the earliest due, first rounds first among those due.
    fn scanned(s: &Schedule, now: Instant) -> Option<(usize, Instant)> {
        (0..s.len())
            .min_by_key(|&i| (s.due(i).max(now), !s.is_first(i), s.due(i)))
            .map(|i| (i, s.due(i)))
    }

    #[tokio::test(start_paused = true)]
    async fn the_indexed_next_is_the_scanned_next() {
        let start = Instant::now();
        let mut s = Schedule::new(40, 5 * MIN, 7, start);
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut now = start;
        for step in 0..2000 {
            now += Duration::from_millis(rnd(20_000));
            assert_eq!(s.next(now), scanned(&s, now), "step {step}");
            if rnd(10) == 0 {
                // A reload: some entries dropped, the rest kept in a new order, a few added.
                let mut kept: Vec<Option<usize>> =
                    (0..s.len()).filter(|_| rnd(4) != 0).map(Some).collect();
                kept.reverse();
                kept.extend((0..rnd(5)).map(|_| None));
                let interval = if rnd(2) == 0 { 5 * MIN } else { MIN };
                s.replan(&kept, interval, 1 + rnd(10) as u32, now);
            } else if let Some((i, _)) = s.next(now) {
                s.polled(i, now);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_budget_polls_every_target_at_once() {
        let start = Instant::now();
        let s = Schedule::new(12, 5 * MIN, 60, start);
        assert!((0..12).all(|i| s.due(i) == start && s.is_first(i)));
    }

    #[tokio::test(start_paused = true)]
    async fn late_and_early_polls_return_to_the_grid() {
        let start = Instant::now();
        let mut s = Schedule::new(1, MIN, 60, start);
        s.polled(0, start + Duration::from_secs(20));
        assert_eq!(
            secs(start, s.due(0)),
            60,
            "the grid point half an interval on"
        );
        s.polled(0, start + Duration::from_secs(95));
        assert_eq!(
            secs(start, s.due(0)),
            180,
            "more than half late: the next point"
        );
    }

    /// The seconds from `start` at which each entry is due, with its index.
    fn dues(s: &Schedule, start: Instant) -> Vec<(usize, u64)> {
        (0..s.len()).map(|i| (i, secs(start, s.due(i)))).collect()
    }

    const ALL_KEPT: [Option<usize>; 4] = [Some(0), Some(1), Some(2), Some(3)];

    #[tokio::test(start_paused = true)]
    async fn a_shorter_interval_pulls_kept_targets_in_and_a_longer_one_polls_nothing_early() {
        let start = Instant::now();
        let mut s = Schedule::new(4, 30 * MIN, 60, start);
        for i in 0..4 {
            s.polled(i, start);
        }
        assert_eq!(dues(&s, start), [(0, 1800), (1, 2250), (2, 900), (3, 1350)]);
        // The interval drops to 1 minute: in the order they were due, each waits at most
        // its share of the new interval.
        let now = start + Duration::from_secs(10);
        s.replan(&ALL_KEPT, MIN, 60, now);
        assert_eq!(dues(&s, start), [(0, 40), (1, 55), (2, 10), (3, 25)]);
        for i in 0..4 {
            let due = s.due(i);
            s.polled(i, due);
        }
        let before = dues(&s, start);
        assert_eq!(before, [(0, 100), (1, 115), (2, 70), (3, 85)]);
        // Back to a long interval: the next polls stay where they were, none is earlier.
        s.replan(&ALL_KEPT, 10 * MIN, 60, start + Duration::from_secs(60));
        assert_eq!(dues(&s, start), before);
        let (i, due) = s.next(start + Duration::from_secs(60)).unwrap();
        assert_eq!((i, secs(start, due)), (2, 70));
        s.polled(i, due);
        assert_eq!(secs(start, s.due(i)), 670, "then a whole new interval");
    }

    #[tokio::test(start_paused = true)]
    async fn added_targets_get_a_first_round_and_kept_ones_keep_their_place() {
        let start = Instant::now();
        let mut s = Schedule::new(2, MIN, 2, start);
        s.polled(0, start);
        s.polled(1, start);
        let now = start + Duration::from_secs(5);
        assert_eq!(dues(&s, start), [(0, 60), (1, 30)]);
        // The new list: the old second, an added one, the old first, two added ones.
        s.replan(&[Some(1), None, Some(0), None, None], MIN, 2, now);
        assert_eq!(
            dues(&s, start),
            [(0, 30), (1, 5), (2, 60), (3, 5), (4, 66)],
            "kept ones keep their place; added ones go at the budget pace"
        );
        assert_eq!((0..5).filter(|&i| s.is_first(i)).count(), 3);
        // Due first-round targets go before a regular poll due earlier.
        let (i, _) = s.next(start + Duration::from_secs(70)).unwrap();
        assert!(s.is_first(i), "{i}");
    }
}
