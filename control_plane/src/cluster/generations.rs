//! Generations: `publishState` makes a new one active; an operator rolls back to an earlier
//! one or promotes a canary rollout.

use super::*;

impl Cluster {
    // ---- publishState ----

    pub fn publish(
        &mut self,
        commit: &str,
        generation: u64,
        intent_hash: &str,
        specs: Vec<VmSpec>,
        settings: ClusterSettings,
    ) -> Result<(PublishSummary, Outcome), RemoteError> {
        let refuse = |code, msg: String| Err(err(code, format!("publishState rejected: {msg}")));
        if commit.is_empty() || commit.len() > 256 {
            return refuse(ErrorCode::Invalid, "commit must be 1-256 characters".into());
        }
        if intent_hash.is_empty() || intent_hash.len() > 256 {
            return refuse(
                ErrorCode::Invalid,
                "intentHash must be 1-256 characters".into(),
            );
        }
        if generation == 0 {
            return refuse(ErrorCode::Invalid, "generations start at 1".into());
        }
        if generation > MAX_GENERATION {
            return refuse(
                ErrorCode::Invalid,
                format!(
                    "generation {generation} is above {MAX_GENERATION}, the largest one every \
                     store and JSON reader keeps exactly; number generations from the latest \
                     ({}) upwards",
                    self.latest_generation
                ),
            );
        }
        if let Err(e) = validate_specs(&specs) {
            return refuse(ErrorCode::Invalid, format!("{e}; nothing was stored"));
        }
        // A worker answered every heartbeat must never stop an instance for being cut off.
        let floor = self.config.heartbeat_interval * 2;
        if let Some(s) = specs.iter().find(|s| {
            s.stop_after_disconnect_ms != 0
                && Duration::from_millis(s.stop_after_disconnect_ms.into()) < floor
        }) {
            return refuse(
                ErrorCode::Invalid,
                format!(
                    "VM {}: stopAfterDisconnectMs {} is shorter than two heartbeats ({} ms), \
                     so a connected worker could stop it; nothing was stored",
                    s.name,
                    s.stop_after_disconnect_ms,
                    floor.as_millis()
                ),
            );
        }
        let content_hash = content_hash(&settings, &specs);
        if let Some(active) = &self.active {
            if generation == active.generation && intent_hash == active.intent_hash {
                if content_hash != active.content_hash {
                    return refuse(
                        ErrorCode::Conflict,
                        format!(
                            "generation {generation} was already published with intent hash \
                             {intent_hash} but other VM specs; publish them as generation {}",
                            self.latest_generation.saturating_add(1)
                        ),
                    );
                }
                return Ok((self.summary(generation, false), Outcome::default()));
            }
        }
        if generation <= self.latest_generation {
            let active = self.active_generation();
            let msg = if active == self.latest_generation {
                format!("generation {generation} is not newer than active generation {active}")
            } else {
                format!(
                    "generation {generation} is not newer than generation {} (the latest \
                     published; generation {active} is active)",
                    self.latest_generation
                )
            };
            return refuse(ErrorCode::Stale, msg);
        }

        let mut change = self.change();
        if let Some(old) = &self.active {
            if !self.bad.contains(&old.generation) {
                change.batch.generation_status.push((
                    old.generation,
                    "superseded".into(),
                    String::new(),
                ));
            }
        }
        let stored = StoredGeneration {
            generation,
            commit: commit.to_string(),
            intent_hash: intent_hash.to_string(),
            content_hash,
            published_at_ms: now_ms(),
            settings,
            specs,
            status: "active".to_string(),
            reason: String::new(),
            promoted: Vec::new(),
        };
        let instances = stored
            .specs
            .iter()
            .map(|s| s.replicas as usize)
            .sum::<usize>();
        change.event(
            generation,
            EventKind::GenerationPublished,
            "",
            "",
            format!(
                "generation {generation} (commit {}) published: {} VMs, {instances} instances",
                short(commit),
                stored.specs.len()
            ),
        );
        change.batch.generation = Some(stored.clone());
        change.specs.push((generation, spec_map(&stored.specs)));
        change.activated_at = Some(stored.published_at_ms);
        change.active = Some(stored);
        change.latest_generation = Some(generation);
        self.reschedule(&mut change);
        self.progress(&mut change);
        change.notify_every_placed_worker();
        let outcome = self.commit(change)?;
        Ok((self.summary(generation, true), outcome))
    }

    pub(super) fn summary(&self, generation: u64, changed: bool) -> PublishSummary {
        let placed = self
            .placements
            .values()
            .filter(|p| p.worker_id.is_some())
            .count() as u32;
        PublishSummary {
            generation,
            changed,
            placed,
            unplaced: self.placements.len() as u32 - placed,
            revision: self.revision,
        }
    }

    // ---- operator actions ----

    /// Makes `to` active again (0: the last generation that rolled out completely). The
    /// generation it replaces is recorded as rolled back and is not rolled out again by itself.
    pub fn rollback(&mut self, to: u64) -> Result<(String, Outcome), RemoteError> {
        let Some(active) = self.active.clone() else {
            return Err(err(
                ErrorCode::NotFound,
                "nothing has been published, so there is nothing to roll back",
            ));
        };
        let to = if to != 0 {
            to
        } else if self.last_good != 0 && self.last_good != active.generation {
            self.last_good
        } else {
            let earlier = self
                .store
                .generations(10_000)
                .map_err(internal)?
                .into_iter()
                .find(|g| g.generation < active.generation && !self.bad.contains(&g.generation));
            match earlier {
                Some(g) => g.generation,
                None => {
                    return Err(err(
                        ErrorCode::NotFound,
                        format!("generation {} is the only good generation; there is nothing earlier to roll back to", active.generation),
                    ))
                }
            }
        };
        if to == active.generation {
            return Err(err(
                ErrorCode::Invalid,
                format!("generation {to} is already active"),
            ));
        }
        let Some(mut g) = self.store.generation(to).map_err(internal)? else {
            return Err(err(
                ErrorCode::NotFound,
                format!("there is no generation {to}"),
            ));
        };
        let mut change = self.change();
        let reason = format!("an operator rolled back to generation {to}");
        if !self.bad.contains(&active.generation) {
            change
                .batch
                .generation_status
                .push((active.generation, "rolled-back".into(), reason));
            change.bad.push(active.generation);
        }
        // An explicit command may bring back even a failed generation.
        g.status = "active".into();
        g.reason = String::new();
        change
            .batch
            .generation_status
            .push((to, "active".into(), String::new()));
        change.specs.push((to, spec_map(&g.specs)));
        change.activated_at = Some(now_ms());
        change.event(
            to,
            EventKind::Rollback,
            "",
            "",
            format!(
                "generation {} rolled back to generation {to} by an operator",
                active.generation
            ),
        );
        change.active = Some(g);
        self.reschedule(&mut change);
        // An explicitly chosen generation is not bad any more.
        let was_bad = self.bad.contains(&to);
        if was_bad {
            self.bad.remove(&to);
        }
        self.progress(&mut change);
        change.notify_every_placed_worker();
        match self.commit(change) {
            Ok(outcome) => Ok((
                format!(
                    "generation {to} is active again; generation {} is rolled back",
                    active.generation
                ),
                outcome,
            )),
            Err(e) => {
                if was_bad {
                    self.bad.insert(to);
                }
                Err(e)
            }
        }
    }

    pub fn promote(&mut self, vm: &str) -> Result<(String, Outcome), RemoteError> {
        let Some(active) = self.active.clone() else {
            return Err(err(ErrorCode::NotFound, "nothing has been published"));
        };
        let Some(spec) = active.specs.iter().find(|s| s.name == vm) else {
            return Err(err(
                ErrorCode::NotFound,
                format!("generation {} has no VM named {vm}", active.generation),
            ));
        };
        if spec.rollout.strategy != RolloutStrategy::Canary {
            return Err(err(
                ErrorCode::Invalid,
                format!("{vm} does not roll out with canaries; there is nothing to promote"),
            ));
        }
        if active.promoted.iter().any(|p| p == vm) {
            return Ok((format!("{vm} was already promoted"), Outcome::default()));
        }
        let mut change = self.change();
        let mut g = active.clone();
        g.promoted.push(vm.to_string());
        change
            .batch
            .generation_promoted
            .push((g.generation, g.promoted.clone()));
        change.event(
            g.generation,
            EventKind::Rollout,
            "",
            "",
            format!("{vm}: canary promoted by an operator"),
        );
        change.active = Some(g);
        self.progress(&mut change);
        let outcome = self.commit(change)?;
        Ok((
            format!("{vm} promoted: the rollout continues to every instance"),
            outcome,
        ))
    }
}
