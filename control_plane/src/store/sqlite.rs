//! The SQLite implementation of [`Store`]: generations, workers, placements, events in one file.
//!
//! WAL mode with `synchronous = NORMAL`: a committed transaction is in the WAL before the call
//! returns, so `kill -9` of the process loses nothing acknowledged (a power cut may lose the
//! last few commits; `--sync full` trades speed for that). Every request is one transaction
//! built from a [`Batch`]; if it fails, nothing of the request is stored.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use schema::model::{Event, EventKind, WorkerState};
use support::sqlite::{self, MigrateError, Synchronous};

use super::{
    Batch, Result, Snapshot, Store, StoreError, StoredGeneration, StoredPlacement, StoredWorker,
    EVENTS_KEPT,
};

/// Each entry is applied once, in order; the index+1 is the schema version.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE generations (
        generation INTEGER PRIMARY KEY,
        commit_id TEXT NOT NULL,
        intent_hash TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        published_at_ms INTEGER NOT NULL,
        settings TEXT NOT NULL,
        specs TEXT NOT NULL,
        status TEXT NOT NULL
     );
     CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        info TEXT NOT NULL,
        state TEXT NOT NULL,
        registered_at_ms INTEGER NOT NULL,
        last_heartbeat_ms INTEGER NOT NULL,
        observed_generation INTEGER NOT NULL,
        reports TEXT NOT NULL,
        metrics TEXT NOT NULL,
        revision INTEGER NOT NULL
     );
     CREATE TABLE placements (
        instance_id TEXT PRIMARY KEY,
        vm_name TEXT NOT NULL,
        worker_id TEXT,
        reason TEXT NOT NULL
     );
     CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        ts_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        generation INTEGER NOT NULL,
        worker_id TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        message TEXT NOT NULL
     );",
    // 2: rollouts — the generation each instance runs, since when; why a generation failed;
    // which canary rollouts were promoted.
    "ALTER TABLE placements ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE placements ADD COLUMN since_ms INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE generations ADD COLUMN reason TEXT NOT NULL DEFAULT '';
     ALTER TABLE generations ADD COLUMN promoted TEXT NOT NULL DEFAULT '[]';",
    // 3: restarts an operator asked for, per instance.
    "ALTER TABLE placements ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;",
];

pub struct SqliteStore {
    conn: Connection,
}

fn state_str(s: WorkerState) -> &'static str {
    s.as_str()
}

fn parse_state(s: &str) -> WorkerState {
    match s {
        "lost" => WorkerState::Lost,
        "cordoned" => WorkerState::Cordoned,
        "draining" => WorkerState::Draining,
        _ => WorkerState::Ready,
    }
}

impl SqliteStore {
    pub fn open(path: &Path, full_sync: bool) -> Result<SqliteStore> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let sync = if full_sync {
            Synchronous::Full
        } else {
            Synchronous::Normal
        };
        let mut conn = sqlite::open(path, sync).map_err(open_err)?;
        sqlite::migrate(&mut conn, MIGRATIONS).map_err(|e| match e {
            MigrateError::TooNew { found, known } => StoreError::TooNew { found, known },
            MigrateError::Sql(e) => StoreError::Sql(e),
        })?;
        Ok(SqliteStore { conn })
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn workers(&self) -> Result<Vec<StoredWorker>> {
        let mut st = self.conn.prepare(
            "SELECT info, state, registered_at_ms, last_heartbeat_ms, observed_generation,
                    reports, metrics, revision FROM workers ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (info, state, reg, hb, generation, reports, metrics, revision) = row?;
            out.push(StoredWorker {
                info: serde_json::from_str(&info)?,
                state: parse_state(&state),
                registered_at_ms: reg as u64,
                last_heartbeat_ms: hb as u64,
                observed_generation: generation as u64,
                reports: serde_json::from_str(&reports)?,
                metrics: serde_json::from_str(&metrics)?,
                revision: revision as u64,
            });
        }
        Ok(out)
    }

    fn placements(&self) -> Result<Vec<StoredPlacement>> {
        let mut st = self.conn.prepare(
            "SELECT instance_id, vm_name, worker_id, reason, generation, since_ms, restarts FROM placements",
        )?;
        let rows = st.query_map([], |r| {
            Ok(StoredPlacement {
                instance_id: r.get(0)?,
                vm_name: r.get(1)?,
                worker_id: r.get(2)?,
                reason: r.get(3)?,
                generation: r.get::<_, i64>(4)? as u64,
                since_ms: r.get::<_, i64>(5)? as u64,
                restarts: r.get::<_, i64>(6)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Generations that must not be rolled out again by themselves.
    fn bad_generations(&self) -> Result<Vec<u64>> {
        let mut st = self.conn.prepare(
            "SELECT generation FROM generations WHERE status IN ('failed', 'rolled-back')",
        )?;
        let rows = st.query_map([], |r| r.get::<_, i64>(0))?;
        Ok(rows
            .map(|r| r.map(|g| g as u64))
            .collect::<rusqlite::Result<_>>()?)
    }

    fn last_event_seq(&self) -> Result<u64> {
        let seq: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))?;
        Ok(seq.unwrap_or(0) as u64)
    }
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Snapshot> {
        let latest_generation = self
            .generations(1)?
            .first()
            .map(|g| g.generation)
            .unwrap_or(0);
        let active = match self.meta("active_generation")? {
            Some(g) => self.generation(g.parse().unwrap_or(0))?,
            None => None,
        };
        let number =
            |key: &str| -> Result<Option<u64>> { Ok(self.meta(key)?.and_then(|v| v.parse().ok())) };
        let placements = self.placements()?;
        let mut referenced = Vec::new();
        let mut seen: std::collections::HashSet<u64> =
            active.iter().map(|g| g.generation).collect();
        for p in &placements {
            if seen.insert(p.generation) {
                if let Some(g) = self.generation(p.generation)? {
                    referenced.push(g);
                }
            }
        }
        Ok(Snapshot {
            latest_generation,
            active,
            last_good: number("last_good_generation")?.unwrap_or(0),
            activated_at_ms: number("activated_at_ms")?,
            revision: number("revision")?.unwrap_or(0),
            workers: self.workers()?,
            placements,
            referenced,
            bad: self.bad_generations()?,
            last_seq: self.last_event_seq()?,
        })
    }

    fn apply(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        if let Some(g) = &batch.generation {
            tx.execute(
                "INSERT INTO generations (generation, commit_id, intent_hash, content_hash,
                    published_at_ms, settings, specs, status, reason, promoted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    g.generation as i64,
                    g.commit,
                    g.intent_hash,
                    g.content_hash,
                    g.published_at_ms as i64,
                    serde_json::to_string(&g.settings)?,
                    serde_json::to_string(&g.specs)?,
                    g.status,
                    g.reason,
                    serde_json::to_string(&g.promoted)?,
                ],
            )?;
        }
        {
            let mut st = tx.prepare_cached(
                "UPDATE generations SET status = ?2, reason = ?3 WHERE generation = ?1",
            )?;
            for (generation, status, reason) in &batch.generation_status {
                st.execute(params![*generation as i64, status, reason])?;
            }
            let mut st =
                tx.prepare_cached("UPDATE generations SET promoted = ?2 WHERE generation = ?1")?;
            for (generation, promoted) in &batch.generation_promoted {
                st.execute(params![
                    *generation as i64,
                    serde_json::to_string(promoted)?
                ])?;
            }
        }
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO workers (id, info, state, registered_at_ms, last_heartbeat_ms,
                    observed_generation, reports, metrics, revision)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(id) DO UPDATE SET info = ?2, state = ?3, registered_at_ms = ?4,
                    last_heartbeat_ms = ?5, observed_generation = ?6, reports = ?7,
                    metrics = ?8, revision = ?9",
            )?;
            for w in &batch.workers {
                st.execute(params![
                    w.info.id,
                    serde_json::to_string(&w.info)?,
                    state_str(w.state),
                    w.registered_at_ms as i64,
                    w.last_heartbeat_ms as i64,
                    w.observed_generation as i64,
                    serde_json::to_string(&w.reports)?,
                    serde_json::to_string(&w.metrics)?,
                    w.revision as i64,
                ])?;
            }
        }
        {
            let mut del = tx.prepare_cached("DELETE FROM placements WHERE instance_id = ?1")?;
            for id in &batch.placements_delete {
                del.execute([id])?;
            }
            let mut up = tx.prepare_cached(
                "INSERT INTO placements (instance_id, vm_name, worker_id, reason, generation, since_ms, restarts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(instance_id) DO UPDATE SET vm_name = ?2, worker_id = ?3, reason = ?4,
                    generation = ?5, since_ms = ?6, restarts = ?7",
            )?;
            for p in &batch.placements_upsert {
                up.execute(params![
                    p.instance_id,
                    p.vm_name,
                    p.worker_id,
                    p.reason,
                    p.generation as i64,
                    p.since_ms as i64,
                    p.restarts as i64
                ])?;
            }
        }
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = ?2",
            )?;
            for (k, v) in &batch.meta {
                st.execute(params![k, v])?;
            }
        }
        if !batch.events.is_empty() {
            let mut st = tx.prepare_cached(
                "INSERT INTO events (seq, ts_ms, kind, generation, worker_id, instance_id, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for e in &batch.events {
                st.execute(params![
                    e.seq as i64,
                    e.timestamp_ms as i64,
                    e.kind.as_str(),
                    e.generation as i64,
                    e.worker_id,
                    e.instance_id,
                    e.message,
                ])?;
            }
            let last = batch.events.last().map(|e| e.seq).unwrap_or(0);
            if last > EVENTS_KEPT && last % 1000 < batch.events.len() as u64 + 1 {
                tx.execute(
                    "DELETE FROM events WHERE seq <= ?1",
                    [(last - EVENTS_KEPT) as i64],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn generations(&self, limit: u32) -> Result<Vec<StoredGeneration>> {
        let mut st = self.conn.prepare(
            "SELECT generation, commit_id, intent_hash, content_hash, published_at_ms, settings,
                    specs, status, reason, promoted
             FROM generations ORDER BY generation DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], read_generation)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    fn generation(&self, generation: u64) -> Result<Option<StoredGeneration>> {
        let mut st = self.conn.prepare(
            "SELECT generation, commit_id, intent_hash, content_hash, published_at_ms, settings,
                    specs, status, reason, promoted
             FROM generations WHERE generation = ?1",
        )?;
        match st
            .query_row([generation as i64], read_generation)
            .optional()?
        {
            Some(g) => Ok(Some(g?)),
            None => Ok(None),
        }
    }

    fn events(&self, since_seq: u64, limit: u32) -> Result<Vec<Event>> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, ts_ms, kind, generation, worker_id, instance_id, message
             FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = st.query_map(params![since_seq as i64, limit as i64], |r| {
            Ok(Event {
                seq: r.get::<_, i64>(0)? as u64,
                timestamp_ms: r.get::<_, i64>(1)? as u64,
                kind: EventKind::parse(&r.get::<_, String>(2)?),
                generation: r.get::<_, i64>(3)? as u64,
                worker_id: r.get(4)?,
                instance_id: r.get(5)?,
                message: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

type GenerationRow = std::result::Result<StoredGeneration, StoreError>;

fn read_generation(r: &rusqlite::Row<'_>) -> rusqlite::Result<GenerationRow> {
    let settings: String = r.get(5)?;
    let specs: String = r.get(6)?;
    let promoted: String = r.get(9)?;
    let parsed = (|| -> Result<StoredGeneration> {
        Ok(StoredGeneration {
            generation: r.get::<_, i64>(0)? as u64,
            commit: r.get(1)?,
            intent_hash: r.get(2)?,
            content_hash: r.get(3)?,
            published_at_ms: r.get::<_, i64>(4)? as u64,
            settings: serde_json::from_str(&settings)?,
            specs: serde_json::from_str(&specs)?,
            status: r.get(7)?,
            reason: r.get(8)?,
            promoted: serde_json::from_str(&promoted)?,
        })
    })();
    Ok(parsed)
}
