//! What publishing a blueprint would change against the active one, VM by VM: a pure function
//! `pcr plan` prints before anything is published.

use std::collections::BTreeMap;

use crate::model::{Blueprint, VmSpec};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Change {
    Added,
    Removed,
    /// Its instances restart: these fields changed.
    Restarted {
        fields: Vec<&'static str>,
    },
    /// Only the replica count changed: instances are added or stopped, the rest keep running.
    Scaled {
        from: u32,
        to: u32,
    },
    /// Only scheduling or rollout settings changed: nothing restarts.
    Updated {
        fields: Vec<&'static str>,
    },
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmChange {
    pub name: String,
    pub change: Change,
    /// Closure before (empty when added) and after (empty when removed).
    pub old_closure: String,
    pub new_closure: String,
    pub replicas: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub vms: Vec<VmChange>,
    /// Cluster settings (name, placement strategy) differ.
    pub cluster_changed: bool,
    /// The new blueprint means the same as the active one: publishing would change nothing.
    pub identical: bool,
}

impl Plan {
    pub fn count(&self, pred: impl Fn(&Change) -> bool) -> usize {
        self.vms.iter().filter(|v| pred(&v.change)).count()
    }
}

/// The fields of `new` that differ from `old` and restart an instance (the same rule the
/// control plane and workers apply: [`VmSpec::runtime_differs`]).
fn runtime_fields(old: &VmSpec, new: &VmSpec) -> Vec<&'static str> {
    let mut f = Vec::new();
    let mut check = |differs: bool, name: &'static str| {
        if differs {
            f.push(name);
        }
    };
    check(old.closure != new.closure, "closure");
    check(old.backend != new.backend, "backend");
    check(old.cpu != new.cpu, "cpu");
    check(old.memory_mb != new.memory_mb, "memory");
    check(old.exec != new.exec, "exec");
    check(old.args != new.args, "args");
    check(old.env != new.env, "env");
    check(old.ports != new.ports, "ports");
    check(old.health_checks != new.health_checks, "healthChecks");
    check(old.restart != new.restart, "restart");
    f
}

fn other_fields(old: &VmSpec, new: &VmSpec) -> Vec<&'static str> {
    let mut f = Vec::new();
    if old.labels != new.labels {
        f.push("labels");
    }
    if old.constraints != new.constraints {
        f.push("constraints");
    }
    if old.rollout != new.rollout {
        f.push("rollout");
    }
    if old.role != new.role {
        f.push("role");
    }
    f
}

pub fn diff(active: Option<&Blueprint>, new: &Blueprint) -> Plan {
    let old: BTreeMap<&str, &VmSpec> = active
        .map(|b| b.vms.iter().map(|v| (v.name.as_str(), v)).collect())
        .unwrap_or_default();
    let mut vms = Vec::new();
    for spec in &new.vms {
        let (change, old_closure) = match old.get(spec.name.as_str()) {
            None => (Change::Added, String::new()),
            Some(before) => {
                let runtime = runtime_fields(before, spec);
                let other = other_fields(before, spec);
                let change = if !runtime.is_empty() {
                    debug_assert!(before.runtime_differs(spec));
                    Change::Restarted { fields: runtime }
                } else if before.replicas != spec.replicas {
                    Change::Scaled {
                        from: before.replicas,
                        to: spec.replicas,
                    }
                } else if !other.is_empty() {
                    Change::Updated { fields: other }
                } else {
                    Change::Unchanged
                };
                (change, before.closure.clone())
            }
        };
        vms.push(VmChange {
            name: spec.name.clone(),
            change,
            old_closure,
            new_closure: spec.closure.clone(),
            replicas: spec.replicas,
        });
    }
    for (name, before) in &old {
        if !new.vms.iter().any(|v| v.name == *name) {
            vms.push(VmChange {
                name: name.to_string(),
                change: Change::Removed,
                old_closure: before.closure.clone(),
                new_closure: String::new(),
                replicas: before.replicas,
            });
        }
    }
    vms.sort_by(|a, b| a.name.cmp(&b.name));
    let cluster_changed = active.is_some_and(|a| a.cluster != new.cluster);
    let identical = active.is_some_and(|a| a.intent_hash() == new.intent_hash());
    Plan {
        vms,
        cluster_changed,
        identical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web";
    const B: &str = "/nix/store/1c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web";

    fn bp(vms: Vec<VmSpec>) -> Blueprint {
        Blueprint {
            cluster: Default::default(),
            vms,
        }
    }

    #[test]
    fn every_kind_of_change() {
        let web = VmSpec::process("web", A);
        let api = VmSpec::process("api", A);
        let db = VmSpec::process("db", A);
        let old = bp(vec![
            web.clone(),
            api.clone(),
            db.clone(),
            VmSpec::process("gone", A),
        ]);
        let mut web2 = web.clone();
        web2.closure = B.into();
        web2.env.insert("X".into(), "1".into());
        let mut api2 = api.clone();
        api2.replicas = 3;
        let mut db2 = db.clone();
        db2.labels.insert("tier".into(), "data".into());
        let new = bp(vec![web2, api2, db2, VmSpec::process("fresh", B)]);
        let plan = diff(Some(&old), &new);
        let changes: Vec<(&str, &Change)> = plan
            .vms
            .iter()
            .map(|v| (v.name.as_str(), &v.change))
            .collect();
        assert_eq!(
            changes,
            [
                ("api", &Change::Scaled { from: 1, to: 3 }),
                (
                    "db",
                    &Change::Updated {
                        fields: vec!["labels"]
                    }
                ),
                ("fresh", &Change::Added),
                ("gone", &Change::Removed),
                (
                    "web",
                    &Change::Restarted {
                        fields: vec!["closure", "env"]
                    }
                ),
            ]
        );
        assert!(!plan.identical);
        assert!(diff(Some(&old), &old).identical);
        assert_eq!(diff(Some(&old), &old).count(|c| *c == Change::Unchanged), 4);
        assert_eq!(diff(None, &old).count(|c| *c == Change::Added), 4);
    }
}
