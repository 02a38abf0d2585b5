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

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
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

/// The timetable of one budget's targets, keyed by `K`.
#[derive(Debug, Clone)]
pub struct Schedule<K> {
    interval: Duration,
    /// The budget's calls a minute: how fast a first round goes.
    per_minute: u32,
    entries: Vec<(K, Times)>,
    /// (due, entry) of the entries in a first round, and of the others: the next entry is
    /// found in O(log n), not by a scan of thousands at every poll.
    firsts: BTreeSet<(Instant, usize)>,
    regular: BTreeSet<(Instant, usize)>,
}

impl<K: Clone + Eq + Hash> Schedule<K> {
    /// Every key in a first round from `now`.
    pub fn new(keys: Vec<K>, interval: Duration, per_minute: u32, now: Instant) -> Self {
        let mut schedule = Schedule {
            interval,
            per_minute: per_minute.max(1),
            entries: Vec::new(),
            firsts: BTreeSet::new(),
            regular: BTreeSet::new(),
        };
        schedule.add_first_round(keys, now);
        schedule.reindex();
        schedule
    }

    /// The index of entry `i`'s times.
    fn index(&mut self, i: usize) -> &mut BTreeSet<(Instant, usize)> {
        if self.entries[i].1.first {
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
            let due = self.entries[i].1.due;
            self.index(i).insert((due, i));
        }
    }

    /// How many targets.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The key of entry `i`.
    pub fn key(&self, i: usize) -> &K {
        &self.entries[i].0
    }

    /// When entry `i` is due.
    pub fn due(&self, i: usize) -> Instant {
        self.entries[i].1.due
    }

    /// Entry `i` has not been polled yet.
    pub fn is_first(&self, i: usize) -> bool {
        self.entries[i].1.first
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
            .map(|(_, i)| (i, self.entries[i].1.due))
    }

    /// Entry `i` was polled at `at`: its next poll is its grid point in
    /// `[at + interval/2, at + 3·interval/2)`.
    pub fn polled(&mut self, i: usize, at: Instant) {
        let interval = self.interval;
        let due = self.entries[i].1.due;
        self.index(i).remove(&(due, i));
        let t = &mut self.entries[i].1;
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

    /// Moves to a new target list and settings at `now`: kept keys keep their times (pulled
    /// in when the interval shrank), new keys get a first round.
    pub fn replan(&mut self, keys: Vec<K>, interval: Duration, per_minute: u32, now: Instant) {
        let shrank = interval < self.interval;
        self.interval = interval;
        self.per_minute = per_minute.max(1);
        let mut old: HashMap<K, Times> = self.entries.drain(..).collect();
        let mut added = Vec::new();
        for key in keys {
            match old.remove(&key) {
                Some(times) => self.entries.push((key, times)),
                None => added.push(key),
            }
        }
        if shrank {
            self.pull_in(now);
        }
        self.add_first_round(added, now);
        self.reindex();
    }

    /// After the interval shrank: the kept entries, in the order they are due, get at most
    /// their share of the new interval to wait, so that none waits longer than it and they
    /// stay spread.
    fn pull_in(&mut self, now: Instant) {
        let n = self.entries.len() as u32;
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        order.sort_by_key(|&i| self.entries[i].1.due);
        for (rank, i) in order.into_iter().enumerate() {
            let latest = now + self.interval * rank as u32 / n.max(1);
            let t = &mut self.entries[i].1;
            t.due = t.due.min(latest);
            t.anchor = t.anchor.min(latest);
        }
    }

    /// `keys` join in a first round from `now`: the first `per_minute` at once, then one a
    /// budget step apart (the limiter's window over the limit, so that it never has to hold
    /// one back); their anchors are spread over the interval.
    fn add_first_round(&mut self, keys: Vec<K>, now: Instant) {
        let n = keys.len() as u32;
        let step = (RATE_WINDOW + RATE_MARGIN) / self.per_minute;
        for (k, key) in keys.into_iter().enumerate() {
            let k = k as u32;
            let due = if k < self.per_minute {
                now
            } else {
                now + step * k
            };
            let anchor = now + self.interval * k / n;
            self.entries.push((
                key,
                Times {
                    due,
                    anchor,
                    first: true,
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn secs(from: Instant, t: Instant) -> u64 {
        (t - from).as_secs()
    }

    /// Runs the schedule from `start` with every poll on time (`budget` polls a minute at
    /// most, as the limiter would allow); returns (key, second) of each poll until `until`.
    fn run(s: &mut Schedule<u32>, start: Instant, until: Duration) -> Vec<(u32, u64)> {
        let mut polls = Vec::new();
        let mut now = start;
        while let Some((i, due)) = s.next(now) {
            now = now.max(due);
            if now - start >= until {
                break;
            }
            polls.push((*s.key(i), secs(start, now)));
            s.polled(i, now);
        }
        polls
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_round_goes_at_the_budget_pace_then_settles_on_the_grid() {
        let start = Instant::now();
        let mut s = Schedule::new((0..12).collect(), 5 * MIN, 5, start);
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
    fn scanned(s: &Schedule<u32>, now: Instant) -> Option<(usize, Instant)> {
        (0..s.len())
            .min_by_key(|&i| (s.due(i).max(now), !s.is_first(i), s.due(i)))
            .map(|i| (i, s.due(i)))
    }

    #[tokio::test(start_paused = true)]
    async fn the_indexed_next_is_the_scanned_next() {
        let start = Instant::now();
        let mut s = Schedule::new((0..40).collect::<Vec<u32>>(), 5 * MIN, 7, start);
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
            match rnd(10) {
                0 => {
                    let extra = 40 + rnd(5) as u32;
                    let keys: Vec<u32> = (0..40).filter(|_| rnd(4) != 0).chain(40..extra).collect();
                    let interval = if rnd(2) == 0 { 5 * MIN } else { MIN };
                    s.replan(keys, interval, 1 + rnd(10) as u32, now);
                }
                _ => {
                    if let Some((i, _)) = s.next(now) {
                        s.polled(i, now);
                    }
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_budget_polls_every_target_at_once() {
        let start = Instant::now();
        let s = Schedule::new((0..12).collect::<Vec<u32>>(), 5 * MIN, 60, start);
        assert!((0..12).all(|i| s.due(i) == start && s.is_first(i)));
    }

    #[tokio::test(start_paused = true)]
    async fn late_and_early_polls_return_to_the_grid() {
        let start = Instant::now();
        let mut s = Schedule::new(vec![7u32], MIN, 60, start);
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

    /// The seconds from `start` at which each key is due, in key order.
    fn dues(s: &Schedule<u32>, start: Instant) -> Vec<(u32, u64)> {
        let mut out: Vec<(u32, u64)> = (0..s.len())
            .map(|i| (*s.key(i), secs(start, s.due(i))))
            .collect();
        out.sort_unstable();
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_interval_pulls_kept_targets_in_and_a_longer_one_polls_nothing_early() {
        let start = Instant::now();
        let mut s = Schedule::new((0..4).collect::<Vec<u32>>(), 30 * MIN, 60, start);
        for i in 0..4 {
            s.polled(i, start);
        }
        assert_eq!(dues(&s, start), [(0, 1800), (1, 2250), (2, 900), (3, 1350)]);
        // The interval drops to 1 minute: in the order they were due, each waits at most
        // its share of the new interval.
        let now = start + Duration::from_secs(10);
        s.replan((0..4).collect(), MIN, 60, now);
        assert_eq!(dues(&s, start), [(0, 40), (1, 55), (2, 10), (3, 25)]);
        for i in 0..4 {
            let due = s.due(i);
            s.polled(i, due);
        }
        let before = dues(&s, start);
        assert_eq!(before, [(0, 100), (1, 115), (2, 70), (3, 85)]);
        // Back to a long interval: the next polls stay where they were, none is earlier.
        s.replan(
            (0..4).collect(),
            10 * MIN,
            60,
            start + Duration::from_secs(60),
        );
        assert_eq!(dues(&s, start), before);
        let (i, due) = s.next(start + Duration::from_secs(60)).unwrap();
        assert_eq!((*s.key(i), secs(start, due)), (2, 70));
        s.polled(i, due);
        assert_eq!(secs(start, s.due(i)), 670, "then a whole new interval");
    }

    #[tokio::test(start_paused = true)]
    async fn added_targets_get_a_first_round_and_kept_ones_keep_their_place() {
        let start = Instant::now();
        let mut s = Schedule::new(vec![1u32, 2], MIN, 2, start);
        s.polled(0, start);
        s.polled(1, start);
        let now = start + Duration::from_secs(5);
        assert_eq!(dues(&s, start), [(1, 60), (2, 30)]);
        s.replan(vec![2, 3, 1, 4, 5], MIN, 2, now);
        assert_eq!(
            dues(&s, start),
            [(1, 60), (2, 30), (3, 5), (4, 5), (5, 66)],
            "kept ones keep their place; added ones go at the budget pace"
        );
        assert_eq!((0..5).filter(|&i| s.is_first(i)).count(), 3);
        // Due first-round targets go before a regular poll due earlier.
        let (i, _) = s.next(start + Duration::from_secs(70)).unwrap();
        assert!(s.is_first(i), "{:?}", s.key(i));
    }
}
