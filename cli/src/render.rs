//! How cluster state reads on a terminal: status, rollouts, workers, instances as text tables.

use schema::model::*;

use crate::table::{ago, short_path, Table};

pub fn render_status(s: &ClusterStatus, now: u64) -> String {
    let mut out = String::new();
    if s.active_generation == 0 {
        out.push_str("no generation has been published yet\n");
    } else {
        let name = if s.settings.name.is_empty() {
            "cluster".to_string()
        } else {
            format!("cluster {}", s.settings.name)
        };
        out.push_str(&format!(
            "{name} · generation {} · commit {} · published {} · {:.0}% converged\n",
            s.active_generation,
            s.commit.chars().take(12).collect::<String>(),
            ago(s.published_at_ms, now),
            s.convergence_percent
        ));
    }
    if s.rollouts.iter().any(|r| r.phase != RolloutPhase::Complete) {
        out.push('\n');
        out.push_str(&render_rollouts(s));
    }
    out.push('\n');
    out.push_str(&render_workers(&s.workers, now));
    out.push('\n');
    out.push_str(&render_instances(&s.instances));
    out
}

pub fn render_rollouts(s: &ClusterStatus) -> String {
    if s.rollouts.is_empty() {
        return "no rollouts: nothing has been published\n".to_string();
    }
    let mut out = format!(
        "generation {} rolling out · last good generation {}\n",
        s.active_generation,
        if s.last_good_generation == 0 {
            "none".to_string()
        } else {
            s.last_good_generation.to_string()
        }
    );
    let mut t = Table::new(&["VM", "ROLLOUT", "UPDATED", "NOTE"]);
    for r in &s.rollouts {
        t.row(vec![
            r.vm_name.clone(),
            r.phase.as_str().to_string(),
            format!("{}/{}", r.updated, r.total),
            r.message.clone(),
        ]);
    }
    out.push_str(&t.render());
    out
}

pub fn render_workers(workers: &[WorkerStatus], now: u64) -> String {
    if workers.is_empty() {
        return "no workers registered\n".to_string();
    }
    let mut t = Table::new(&[
        "WORKER",
        "STATE",
        "CPU FREE",
        "MEMORY FREE",
        "VMS",
        "BACKENDS",
        "LAST REPORT",
    ]);
    for w in workers {
        t.row(vec![
            w.info.id.clone(),
            w.state.as_str().to_string(),
            format!("{}/{}", w.free_cpu, w.info.cpu),
            format!("{}/{} MiB", w.free_memory_mb, w.info.memory_mb),
            w.instance_count.to_string(),
            w.info.backend_names(","),
            ago(w.last_heartbeat_ms, now),
        ]);
    }
    t.render()
}

pub fn render_instances(instances: &[InstanceStatus]) -> String {
    if instances.is_empty() {
        return "no VMs\n".to_string();
    }
    let mut t = Table::new(&[
        "VM", "WORKER", "PHASE", "HEALTH", "DESIRED", "OBSERVED", "DRIFT", "NOTE",
    ]);
    for i in instances {
        let placed = !i.worker_id.is_empty();
        t.row(vec![
            i.instance_id.clone(),
            if placed {
                i.worker_id.clone()
            } else {
                "-".into()
            },
            if placed {
                i.phase.to_string()
            } else {
                "unplaced".into()
            },
            if placed {
                i.health.to_string()
            } else {
                "-".into()
            },
            short_path(&i.desired_closure),
            if i.observed_closure.is_empty() {
                "-".into()
            } else {
                short_path(&i.observed_closure)
            },
            if i.drifted {
                "drifted".into()
            } else {
                "".into()
            },
            if placed {
                i.message.clone()
            } else {
                i.unplaced_reason.clone()
            },
        ]);
    }
    t.render()
}
