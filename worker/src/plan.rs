//! The reconcile plan: plain data in, plain data out.
//!
//! `plan(desired, observed, present)` compares what the assignment asks for with what this
//! worker supervises and says what to do about each instance. It does no I/O; the
//! executor (the reconcile module) carries the actions out through the drivers. Running the same
//! plan twice is harmless: an instance that already runs as desired is left alone.

use std::collections::{BTreeMap, BTreeSet};

use schema::model::VmSpec;

/// What the worker currently supervises for one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The spec the instance was started (or adopted) with.
    pub spec: VmSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Make a closure present in the local store before something boots from it.
    Fetch { closure: String },
    /// Boot an instance nothing supervises yet.
    Start { instance: String },
    /// Stop an instance and forget it: nobody wants it any more.
    Stop { instance: String },
    /// Stop the running instance and boot it again with the new spec.
    Restart { instance: String },
    /// Already runs as desired (changes that only steer scheduling do not restart it).
    Leave { instance: String },
}

impl Action {
    /// Stops first (they free memory and host ports the starts may need), then fetches, then
    /// starts and restarts, then the instances left alone.
    fn order(&self) -> u8 {
        match self {
            Action::Stop { .. } => 0,
            Action::Fetch { .. } => 1,
            Action::Restart { .. } => 2,
            Action::Start { .. } => 3,
            Action::Leave { .. } => 4,
        }
    }
}

/// Computes the actions that take `observed` to `desired`. `present` holds the closures known
/// to be valid in the local store; each missing closure is fetched once, however many
/// instances boot from it.
pub fn plan(
    desired: &BTreeMap<String, VmSpec>,
    observed: &BTreeMap<String, Observed>,
    present: &BTreeSet<String>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut fetches = BTreeSet::new();
    for (id, spec) in desired {
        let action = match observed.get(id) {
            None => Action::Start {
                instance: id.clone(),
            },
            Some(current) if current.spec.runtime_differs(spec) => Action::Restart {
                instance: id.clone(),
            },
            Some(_) => Action::Leave {
                instance: id.clone(),
            },
        };
        if !matches!(action, Action::Leave { .. }) && !present.contains(&spec.closure) {
            fetches.insert(spec.closure.clone());
        }
        actions.push(action);
    }
    for id in observed.keys() {
        if !desired.contains_key(id) {
            actions.push(Action::Stop {
                instance: id.clone(),
            });
        }
    }
    actions.extend(fetches.into_iter().map(|closure| Action::Fetch { closure }));
    actions.sort_by(|a, b| a.order().cmp(&b.order()).then_with(|| a.cmp(b)));
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web";
    const B: &str = "/nix/store/1c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web";

    fn spec(closure: &str) -> VmSpec {
        VmSpec::process("web", closure)
    }

    fn start(id: &str) -> Action {
        Action::Start {
            instance: id.into(),
        }
    }
    fn stop(id: &str) -> Action {
        Action::Stop {
            instance: id.into(),
        }
    }
    fn restart(id: &str) -> Action {
        Action::Restart {
            instance: id.into(),
        }
    }
    fn leave(id: &str) -> Action {
        Action::Leave {
            instance: id.into(),
        }
    }
    fn fetch(closure: &str) -> Action {
        Action::Fetch {
            closure: closure.into(),
        }
    }

    struct Case {
        name: &'static str,
        desired: Vec<(&'static str, VmSpec)>,
        observed: Vec<(&'static str, VmSpec)>,
        present: Vec<&'static str>,
        want: Vec<Action>,
    }

    #[test]
    fn plans() {
        let more_memory = VmSpec {
            memory_mb: 512,
            ..spec(A)
        };
        let more_replicas = VmSpec {
            replicas: 3,
            ..spec(A)
        };
        let cases = vec![
            Case {
                name: "nothing desired, nothing running",
                desired: vec![],
                observed: vec![],
                present: vec![],
                want: vec![],
            },
            Case {
                name: "new instance with its closure present is started",
                desired: vec![("web-0", spec(A))],
                observed: vec![],
                present: vec![A],
                want: vec![start("web-0")],
            },
            Case {
                name: "new instance with a missing closure is fetched first",
                desired: vec![("web-0", spec(A))],
                observed: vec![],
                present: vec![],
                want: vec![fetch(A), start("web-0")],
            },
            Case {
                name: "one fetch for many instances of the same closure",
                desired: vec![("web-0", spec(A)), ("web-1", spec(A)), ("web-2", spec(A))],
                observed: vec![],
                present: vec![],
                want: vec![fetch(A), start("web-0"), start("web-1"), start("web-2")],
            },
            Case {
                name: "running as desired is left alone (idempotent)",
                desired: vec![("web-0", spec(A))],
                observed: vec![("web-0", spec(A))],
                present: vec![A],
                want: vec![leave("web-0")],
            },
            Case {
                name: "left alone even when its closure was garbage-collected meanwhile",
                desired: vec![("web-0", spec(A))],
                observed: vec![("web-0", spec(A))],
                present: vec![],
                want: vec![leave("web-0")],
            },
            Case {
                name: "no longer desired is stopped",
                desired: vec![],
                observed: vec![("web-0", spec(A))],
                present: vec![A],
                want: vec![stop("web-0")],
            },
            Case {
                name: "new closure restarts after fetching",
                desired: vec![("web-0", spec(B))],
                observed: vec![("web-0", spec(A))],
                present: vec![A],
                want: vec![fetch(B), restart("web-0")],
            },
            Case {
                name: "resource change restarts without a fetch",
                desired: vec![("web-0", more_memory)],
                observed: vec![("web-0", spec(A))],
                present: vec![A],
                want: vec![restart("web-0")],
            },
            Case {
                name: "replica count change does not restart the survivors",
                desired: vec![("web-0", more_replicas)],
                observed: vec![("web-0", spec(A))],
                present: vec![A],
                want: vec![leave("web-0")],
            },
            Case {
                name: "scale down: stops come before everything else",
                desired: vec![("web-0", spec(B))],
                observed: vec![("web-0", spec(A)), ("web-1", spec(A)), ("web-2", spec(A))],
                present: vec![A, B],
                want: vec![stop("web-1"), stop("web-2"), restart("web-0")],
            },
            Case {
                name: "mixed: keep, replace, add, remove",
                desired: vec![("api-0", spec(A)), ("web-0", spec(B)), ("db-0", spec(A))],
                observed: vec![("api-0", spec(A)), ("web-0", spec(A)), ("old-0", spec(A))],
                present: vec![A],
                want: vec![
                    stop("old-0"),
                    fetch(B),
                    restart("web-0"),
                    start("db-0"),
                    leave("api-0"),
                ],
            },
        ];
        for case in cases {
            let desired: BTreeMap<String, VmSpec> = case
                .desired
                .into_iter()
                .map(|(id, s)| (id.to_string(), s))
                .collect();
            let observed: BTreeMap<String, Observed> = case
                .observed
                .into_iter()
                .map(|(id, s)| (id.to_string(), Observed { spec: s }))
                .collect();
            let present: BTreeSet<String> = case.present.iter().map(|p| p.to_string()).collect();
            let got = plan(&desired, &observed, &present);
            assert_eq!(got, case.want, "case: {}", case.name);
        }
    }
}
