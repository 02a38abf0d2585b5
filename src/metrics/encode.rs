//! Incremental encoding of the per-target series (four lines a target, tens of thousands of
//! lines for big users): targets are cut into groups of [`GROUP`] in label order, and each
//! group keeps its encoded lines per family. A poll re-encodes only the families whose value
//! it changed, in its target's group; runs of [`RUN`] groups are assembled again only when
//! one of theirs changed. The encoding itself happens outside the table's lock: under it,
//! only the changed groups' members are copied ([`Targets::snapshot`]), so polls are never
//! held up by more than that copy.

use std::sync::Arc;
use std::time::SystemTime;

use super::exposition::{escape_label, write_time, write_u64, Run, Segment};
use super::targets::{TargetStatus, Targets};
use crate::model::Target;

/// Targets per group: a change re-encodes (and a gzip scrape deflates again) the group's
/// lines of the families it changed. At a realistic rate (1,000 targets polled every
/// 10 minutes, a gzip scrape every 7.5 s) groups of 64 had two thirds of the body deflated
/// again at every scrape; groups of 16 a fifth, at the price of a gzip body half as large
/// again (54 KB to 84 KB there: each piece starts its deflate stream afresh).
pub(super) const GROUP: usize = 16;
/// Groups per run: the unit a gzip body is assembled from. A run's deflate streams are
/// gathered into one piece (some 32 KB for a family's 2,048 targets), which a change
/// copies again. hyper hands at most 64 pieces to one `writev`: with runs of 64 groups the
/// gzip body of 10,000 targets and as many registries had 69 and took two, and serving it
/// cost a fifth more CPU than one buffer does; with 128 it has some 50.
pub(super) const RUN: usize = 128;

/// A per-target sample's value: compared to tell whether a family's lines changed, and
/// written into them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Value {
    Count(u64),
    Time(SystemTime),
}

impl Value {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Value::Count(n) => write_u64(n, out),
            Value::Time(t) => write_time(t, out),
        }
    }
}

/// The per-target families: name, help, and the sample of a target (if it has one).
type Sample = fn(&TargetStatus) -> Option<Value>;
pub(super) const TARGET_FAMILIES: [(&str, &str, Sample); 4] = [
    (
        "hss_registry_access_success",
        "Image registries connected to HSS whose access succeeded (success_num), as of the last successful poll.",
        |s| s.last.filter(|_| !s.stale).map(|v| Value::Count(v.success_num)),
    ),
    (
        "hss_registry_access_fail",
        "Image registries connected to HSS whose access is abnormal (fail_num), as of the last successful poll.",
        |s| s.last.filter(|_| !s.stale).map(|v| Value::Count(v.fail_num)),
    ),
    (
        "hss_registry_statistics_up",
        "1 if the last poll of this target's registry statistics succeeded, 0 if it failed.",
        |s| s.up.map(|up| Value::Count(u64::from(up))),
    ),
    (
        "hss_registry_statistics_last_success_timestamp_seconds",
        "Unix time of the last successful poll of this target.",
        |s| s.last_success.map(Value::Time),
    ),
];

/// A target's sample in each family.
pub(super) fn samples(status: &TargetStatus) -> [Option<Value>; 4] {
    TARGET_FAMILIES.map(|(_, _, sample)| sample(status))
}

/// The families' HELP and TYPE lines.
pub(super) fn headers() -> [Arc<Run>; 4] {
    TARGET_FAMILIES.map(|(name, help, _)| {
        Run::new(vec![Segment::new(
            format!("# HELP {name} {help}\n# TYPE {name} gauge\n").into_bytes(),
        )])
    })
}

/// A run of consecutive targets (map order) and its encoded lines per family.
pub(super) struct Group {
    /// The group's first target: the group is the `GROUP` targets from here on.
    first: Arc<Target>,
    /// Per family, the group's lines; `None` once one of them changed.
    pub(super) encoded: [Option<Arc<Segment>>; 4],
    /// Per family, bumped by every change, so that lines encoded from an older copy of the
    /// group are not kept.
    pub(super) version: [u64; 4],
}

/// Lines to encode outside the lock: one family of one group, from a copy of its members.
struct Job {
    family: usize,
    group: usize,
    /// The group's version of the family when copied.
    version: u64,
    members: Vec<(Arc<Target>, Value)>,
}

/// One piece of a run: lines still current, or the job that encodes them.
enum Part {
    Ready(Arc<Segment>),
    Job(usize),
}

/// One run of the body: still current, or to be assembled from its parts.
enum RunPlan {
    Ready(Arc<Run>),
    Build(usize, Vec<Part>),
}

/// Everything an encoding needs, copied under the lock: the body can be built from it
/// while polls go on changing the table.
pub(super) struct Snapshot {
    layout: u64,
    jobs: Vec<Job>,
    families: [Vec<RunPlan>; 4],
}

impl Targets {
    /// Under the lock: forms the groups again if targets came or went, and copies out the
    /// members of the groups whose lines changed; the rest is shared as it is.
    pub(super) fn snapshot(&mut self) -> Snapshot {
        if self.regroup {
            self.groups.clear();
            for (i, (target, entry)) in self.map.iter_mut().enumerate() {
                if i % GROUP == 0 {
                    self.groups.push(Group {
                        first: target.clone(),
                        encoded: Default::default(),
                        version: [0; 4],
                    });
                }
                entry.group = i / GROUP;
            }
            let runs = self.groups.len().div_ceil(RUN);
            self.runs = std::array::from_fn(|_| vec![None; runs]);
            self.regroup = false;
            self.layout += 1;
        }
        let mut jobs = Vec::new();
        let families = std::array::from_fn(|family| {
            let mut plans = Vec::new();
            for (r, run) in self.runs[family].iter().enumerate() {
                if let Some(run) = run {
                    plans.push(RunPlan::Ready(run.clone()));
                    continue;
                }
                let first = r * RUN;
                let groups = &self.groups[first..(first + RUN).min(self.groups.len())];
                let parts = groups
                    .iter()
                    .enumerate()
                    .map(|(k, g)| {
                        if let Some(segment) = &g.encoded[family] {
                            Part::Ready(segment.clone())
                        } else {
                            let (_, _, sample) = TARGET_FAMILIES[family];
                            let members = self
                                .map
                                .range::<Target, _>(g.first.as_ref()..)
                                .take(GROUP)
                                .filter_map(|(t, e)| sample(&e.status).map(|v| (t.clone(), v)))
                                .collect();
                            jobs.push(Job {
                                family,
                                group: first + k,
                                version: g.version[family],
                                members,
                            });
                            Part::Job(jobs.len() - 1)
                        }
                    })
                    .collect();
                plans.push(RunPlan::Build(r, parts));
            }
            plans
        });
        Snapshot {
            layout: self.layout,
            jobs,
            families,
        }
    }

    /// Under the lock again: keeps what was encoded where nothing changed meanwhile, so
    /// the next encoding starts from it.
    pub(super) fn keep(
        &mut self,
        snapshot: &Snapshot,
        encoded: &[Arc<Segment>],
        runs: &[Vec<Arc<Run>>; 4],
    ) {
        if snapshot.layout != self.layout || self.regroup {
            return;
        }
        for (job, segment) in snapshot.jobs.iter().zip(encoded) {
            let g = &mut self.groups[job.group];
            if g.version[job.family] == job.version {
                g.encoded[job.family] = Some(segment.clone());
            }
        }
        for (family, plans) in snapshot.families.iter().enumerate() {
            for (plan, run) in plans.iter().zip(&runs[family]) {
                let RunPlan::Build(r, _) = plan else {
                    continue;
                };
                let first = r * RUN;
                let current = self.groups[first..(first + RUN).min(self.groups.len())]
                    .iter()
                    .all(|g| g.encoded[family].is_some());
                if current {
                    self.runs[family][*r] = Some(run.clone());
                }
            }
        }
    }
}

impl Snapshot {
    /// Outside the lock: encodes the changed lines and assembles the runs, per family.
    pub(super) fn encode(&self, scratch: &mut Vec<u8>) -> (Vec<Arc<Segment>>, [Vec<Arc<Run>>; 4]) {
        let encoded: Vec<Arc<Segment>> = self
            .jobs
            .iter()
            .map(|job| {
                encode_family(job.family, &job.members, scratch);
                // Copied out at its exact size.
                Segment::new(scratch.clone())
            })
            .collect();
        let runs = std::array::from_fn(|family| {
            self.families[family]
                .iter()
                .map(|plan| match plan {
                    RunPlan::Ready(run) => run.clone(),
                    RunPlan::Build(_, parts) => Run::new(
                        parts
                            .iter()
                            .map(|part| match part {
                                Part::Ready(segment) => segment.clone(),
                                Part::Job(i) => encoded[*i].clone(),
                            })
                            .collect(),
                    ),
                })
                .collect()
        });
        (encoded, runs)
    }
}

/// `{account="..",...}` with the label names in the order the text format sorts them.
fn render_labels(target: &Target, out: &mut Vec<u8>) {
    let [account, region, project, eps, rtype] = target.label_values();
    for (i, (name, value)) in [
        ("account", account),
        ("enterprise_project_id", eps),
        ("project_id", project),
        ("region", region),
        ("registry_type", rtype),
    ]
    .into_iter()
    .enumerate()
    {
        out.extend_from_slice(if i == 0 { b"{" } else { b"," });
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_label(value, out);
        out.push(b'"');
    }
    out.push(b'}');
}

/// Writes the lines of one per-target family for a group's members into `out`.
fn encode_family(family: usize, members: &[(Arc<Target>, Value)], out: &mut Vec<u8>) {
    let (name, _, _) = TARGET_FAMILIES[family];
    out.clear();
    for (target, value) in members {
        out.extend_from_slice(name.as_bytes());
        render_labels(target, out);
        out.push(b' ');
        value.write(out);
        out.push(b'\n');
    }
}
