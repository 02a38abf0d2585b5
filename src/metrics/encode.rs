//! Incremental encoding of the per-target series (four lines a target, tens of thousands of
//! lines for big users): targets are cut into groups of [`GROUP`] in label order, and each
//! group keeps its encoded lines per family. A poll re-encodes only the families whose value
//! it changed, in its target's group; runs of [`RUN`] groups are assembled again only when
//! one of theirs changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::exposition::{escape_label, Run, Segment};
use super::targets::{Entry, TargetStatus, Targets};
use crate::model::Target;

/// Targets per group: a change re-encodes the group's lines of the families it changed.
pub(super) const GROUP: usize = 64;
/// Groups per run: the unit a gzip body is assembled from.
pub(super) const RUN: usize = 16;

/// A per-target sample's value: compared to tell whether a family's lines changed, and
/// written into them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Value {
    Count(u64),
    Time(SystemTime),
}

impl Value {
    fn write(self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = match self {
            Value::Count(n) => write!(out, "{n}"),
            Value::Time(t) => {
                let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis())
            }
        };
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
    first: Target,
    /// Per family, the group's lines; `None` once one of them changed.
    pub(super) encoded: [Option<Arc<Segment>>; 4],
}

impl Group {
    /// This group's lines of `family`, encoded if they changed since last time.
    fn segment(
        &mut self,
        family: usize,
        map: &BTreeMap<Target, Entry>,
        scratch: &mut Vec<u8>,
    ) -> Arc<Segment> {
        self.encoded[family]
            .get_or_insert_with(|| {
                let members: Vec<(&Target, &Entry)> =
                    map.range(&self.first..).take(GROUP).collect();
                encode_family(family, &members, scratch);
                // Copied out at its exact size.
                Segment::new(scratch.clone())
            })
            .clone()
    }
}

impl Targets {
    /// Per family, its runs of encoded groups: those that changed are encoded and assembled
    /// again (all of them after targets came or went).
    pub(super) fn encode(&mut self) -> [Vec<Arc<Run>>; 4] {
        if self.regroup {
            self.groups.clear();
            for (i, (target, entry)) in self.map.iter_mut().enumerate() {
                if i % GROUP == 0 {
                    self.groups.push(Group {
                        first: target.clone(),
                        encoded: Default::default(),
                    });
                }
                entry.group = i / GROUP;
            }
            let runs = self.groups.len().div_ceil(RUN);
            self.runs = std::array::from_fn(|_| vec![None; runs]);
            self.regroup = false;
        }
        let Targets {
            map,
            groups,
            runs,
            scratch,
            ..
        } = self;
        std::array::from_fn(|family| {
            runs[family]
                .iter_mut()
                .zip(groups.chunks_mut(RUN))
                .map(|(run, groups)| {
                    run.get_or_insert_with(|| {
                        let segments = groups.iter_mut().map(|g| g.segment(family, map, scratch));
                        Run::new(segments.collect())
                    })
                    .clone()
                })
                .collect()
        })
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

/// Writes the lines of one per-target family for a group of targets into `out`.
fn encode_family(family: usize, members: &[(&Target, &Entry)], out: &mut Vec<u8>) {
    let (name, _, sample) = TARGET_FAMILIES[family];
    out.clear();
    for (target, entry) in members {
        if let Some(value) = sample(&entry.status) {
            out.extend_from_slice(name.as_bytes());
            render_labels(target, out);
            out.push(b' ');
            value.write(out);
            out.push(b'\n');
        }
    }
}
