//! The record of every pipeline run, in one SQLite file (WAL): repositories, runs, their steps
//! with timings and exit codes, every log line as it arrives, and the rollout phases observed
//! after a publish.
//!
//! This is the library API repohub and the JSON API read: [`Store::pipelines`],
//! [`Store::pipeline`], [`Store::logs`]. Writers are the pipeline runner and the rollout
//! watcher; readers may open the same file from another process (WAL lets them read while a
//! run writes). [`Store::subscribe`] wakes in-process readers when anything is written, so a
//! live view tails the logs without polling the file.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Row};

use support::sqlite::{self, MigrateError, Synchronous};

use crate::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the pipeline database {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the pipeline database {path} was written by a newer pcr-ci (schema {found}, this one knows {known})")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("pipeline database query failed")]
    Sql(#[from] rusqlite::Error),
    #[error("the pipeline database holds a value this pcr-ci does not know: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

// The records the JSON API answers with are the contract in `schema::ci`.
pub use schema::ci::{
    LogLine, PhaseRecord, PipelineDetail, PipelineSummary, Repository, Rollout, Status, StepRecord,
    StepStatus, Trigger,
};

/// Reads back a value written with `as_str`.
fn parse<T>(text: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("`{text}` is not a {what}")))
}

/// What a run is about, given when it is queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPipeline {
    pub repository: String,
    pub commit: String,
    pub ref_name: String,
    pub trigger: Trigger,
    /// Publishes a generation; false for branches other than the deploy branch.
    pub deploy: bool,
}

/// Which runs [`Store::pipelines`] lists, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub repository: Option<String>,
    /// 0 means 50.
    pub limit: u32,
}

/// Each entry moves the schema one version forward; `PRAGMA user_version` says how many ran.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE repositories (
    name TEXT PRIMARY KEY,
    remote TEXT,
    branch TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE pipelines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repository TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    ref_name TEXT NOT NULL,
    trigger TEXT NOT NULL,
    deploy INTEGER NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER,
    generation INTEGER,
    published INTEGER NOT NULL DEFAULT 0,
    intent_hash TEXT,
    blueprint TEXT,
    rollout TEXT NOT NULL DEFAULT 'none',
    rollout_message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX pipelines_by_repository ON pipelines (repository, id);
CREATE INDEX pipelines_by_commit ON pipelines (repository, commit_sha);
CREATE TABLE steps (
    pipeline_id INTEGER NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER,
    exit_code INTEGER,
    summary TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (pipeline_id, idx)
) WITHOUT ROWID;
CREATE TABLE log_lines (
    pipeline_id INTEGER NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    step INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (pipeline_id, seq)
) WITHOUT ROWID;
CREATE TABLE phases (
    pipeline_id INTEGER NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    PRIMARY KEY (pipeline_id, name)
) WITHOUT ROWID;
"#];

/// Longest log line kept; nix can print megabyte-long lines (a whole derivation), and a live
/// view has no use for them whole.
const MAX_LINE: usize = 16 * 1024;

pub struct Store {
    conn: Mutex<Connection>,
    changed: tokio::sync::watch::Sender<u64>,
}

const SUMMARY_COLUMNS: &str = "id, repository, commit_sha, ref_name, trigger, deploy, status, \
    message, created_ms, started_ms, finished_ms, generation, published, rollout, rollout_message";

impl Store {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        // WAL: readers (the API, repohub, another process) never wait for a run's writes.
        // synchronous=NORMAL: a power cut may lose the last log lines, never corrupt the file.
        let mut conn = sqlite::open(path, Synchronous::Normal).map_err(open_err)?;
        sqlite::migrate(&mut conn, MIGRATIONS).map_err(|e| match e {
            MigrateError::TooNew { found, known } => StoreError::TooNew {
                path: path.display().to_string(),
                found,
                known,
            },
            MigrateError::Sql(source) => open_err(source),
        })?;
        let (changed, _) = tokio::sync::watch::channel(0);
        Ok(Store {
            conn: Mutex::new(conn),
            changed,
        })
    }

    /// A receiver that changes whenever a run, step or log line is written in this process.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls back
        // whatever statement was in flight.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    // ---- repositories ----

    /// Records a repository; an existing one keeps its row (creating twice is not an error).
    pub fn add_repository(&self, repo: &Repository) -> Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO repositories (name, remote, branch, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![repo.name, repo.remote, repo.branch, repo.created_ms as i64],
        )?;
        Ok(n == 1)
    }

    pub fn repository(&self, name: &str) -> Result<Option<Repository>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name, remote, branch, created_ms FROM repositories WHERE name = ?1",
                [name],
                read_repository,
            )
            .optional()?)
    }

    pub fn repositories(&self) -> Result<Vec<Repository>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, remote, branch, created_ms FROM repositories ORDER BY name")?;
        let rows = stmt.query_map([], read_repository)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- writing runs ----

    /// Records a run as queued; answers its id.
    pub fn create_pipeline(&self, new: &NewPipeline) -> Result<u64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO pipelines (repository, commit_sha, ref_name, trigger, deploy, status, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)",
            params![
                new.repository,
                new.commit,
                new.ref_name,
                new.trigger.as_str(),
                new.deploy,
                now_ms() as i64
            ],
        )?;
        let id = conn.last_insert_rowid() as u64;
        drop(conn);
        self.bump();
        Ok(id)
    }

    /// Whether a run of `commit` (deploying or not, as `deploy` says) was ever recorded.
    pub fn has_pipeline(&self, repository: &str, commit: &str, deploy: bool) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM pipelines WHERE repository = ?1 AND commit_sha = ?2 AND deploy = ?3 LIMIT 1",
                params![repository, commit, deploy],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Marks the run as running and lays out its steps as pending, so a viewer sees what is
    /// coming.
    pub fn start_pipeline(&self, id: u64, steps: &[&str]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE pipelines SET status = 'running', started_ms = ?2 WHERE id = ?1",
            params![id as i64, now_ms() as i64],
        )?;
        tx.execute("DELETE FROM steps WHERE pipeline_id = ?1", [id as i64])?;
        for (i, name) in steps.iter().enumerate() {
            tx.execute(
                "INSERT INTO steps (pipeline_id, idx, name, status) VALUES (?1, ?2, ?3, 'pending')",
                params![id as i64, i as i64, name],
            )?;
        }
        tx.commit()?;
        drop(conn);
        self.bump();
        Ok(())
    }

    pub fn step_started(&self, id: u64, step: u32) -> Result<()> {
        self.conn().execute(
            "UPDATE steps SET status = 'running', started_ms = ?3 WHERE pipeline_id = ?1 AND idx = ?2",
            params![id as i64, step, now_ms() as i64],
        )?;
        self.bump();
        Ok(())
    }

    pub fn step_finished(
        &self,
        id: u64,
        step: u32,
        status: StepStatus,
        exit_code: Option<i32>,
        summary: &str,
    ) -> Result<()> {
        let now = now_ms() as i64;
        self.conn().execute(
            "UPDATE steps SET status = ?3, finished_ms = ?4, exit_code = ?5, summary = ?6,
                              started_ms = COALESCE(started_ms, ?4)
             WHERE pipeline_id = ?1 AND idx = ?2",
            params![id as i64, step, status.as_str(), now, exit_code, summary],
        )?;
        self.bump();
        Ok(())
    }

    /// Appends one line to a run's log; answers its sequence number (1, 2, …).
    pub fn append_log(&self, id: u64, step: u32, line: &str) -> Result<u64> {
        let line = clip(line);
        let seq: i64 = self.conn().query_row(
            "INSERT INTO log_lines (pipeline_id, seq, step, ts_ms, line)
             SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4 FROM log_lines WHERE pipeline_id = ?1
             RETURNING seq",
            params![id as i64, step, now_ms() as i64, line],
            |r| r.get(0),
        )?;
        self.bump();
        Ok(seq as u64)
    }

    /// Ends a run; steps still pending are marked skipped.
    pub fn finish_pipeline(&self, id: u64, status: Status, message: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms() as i64;
        tx.execute(
            "UPDATE pipelines SET status = ?2, message = ?3, finished_ms = ?4 WHERE id = ?1",
            params![id as i64, status.as_str(), message, now],
        )?;
        tx.execute(
            "UPDATE steps SET status = 'skipped' WHERE pipeline_id = ?1 AND status = 'pending'",
            [id as i64],
        )?;
        tx.execute(
            "UPDATE steps SET status = 'failed', finished_ms = ?2 WHERE pipeline_id = ?1 AND status = 'running'",
            params![id as i64, now],
        )?;
        tx.commit()?;
        drop(conn);
        self.bump();
        Ok(())
    }

    /// What the eval step found: the blueprint and its intent hash.
    pub fn set_blueprint(&self, id: u64, intent_hash: &str, blueprint_json: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE pipelines SET intent_hash = ?2, blueprint = ?3 WHERE id = ?1",
            params![id as i64, intent_hash, blueprint_json],
        )?;
        Ok(())
    }

    pub fn set_generation(&self, id: u64, generation: u64, published: bool) -> Result<()> {
        self.conn().execute(
            "UPDATE pipelines SET generation = ?2, published = ?3 WHERE id = ?1",
            params![id as i64, generation as i64, published],
        )?;
        self.bump();
        Ok(())
    }

    pub fn set_rollout(&self, id: u64, rollout: Rollout, message: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE pipelines SET rollout = ?2, rollout_message = ?3 WHERE id = ?1",
            params![id as i64, rollout.as_str(), message],
        )?;
        self.bump();
        Ok(())
    }

    pub fn record_phase(
        &self,
        id: u64,
        name: &str,
        started_ms: u64,
        finished_ms: u64,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO phases (pipeline_id, name, started_ms, finished_ms) VALUES (?1, ?2, ?3, ?4)",
            params![id as i64, name, started_ms as i64, finished_ms as i64],
        )?;
        self.bump();
        Ok(())
    }

    /// At start-up: runs left `running` by a pcr-ci that stopped are failed (their processes
    /// died with it). Answers their ids.
    pub fn interrupt_running(&self) -> Result<Vec<u64>> {
        let ids: Vec<u64> = {
            let conn = self.conn();
            let mut stmt = conn.prepare("SELECT id FROM pipelines WHERE status = 'running'")?;
            let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
            rows.map(|r| r.map(|id| id as u64))
                .collect::<rusqlite::Result<_>>()?
        };
        for id in &ids {
            self.finish_pipeline(
                *id,
                Status::Failed,
                "interrupted: pcr-ci stopped during this run",
            )?;
        }
        // A rollout nobody watches any more.
        self.conn().execute(
            "UPDATE pipelines SET rollout = 'stalled', rollout_message = 'pcr-ci stopped while watching the rollout'
             WHERE rollout = 'converging'",
            [],
        )?;
        Ok(ids)
    }

    /// Runs still queued, oldest first, with their repository.
    pub fn queued(&self) -> Result<Vec<(u64, String)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, repository FROM pipelines WHERE status = 'queued' ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- reading ----

    pub fn pipelines(&self, filter: &ListFilter) -> Result<Vec<PipelineSummary>> {
        let limit = if filter.limit == 0 {
            50
        } else {
            filter.limit.min(10_000)
        };
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM pipelines
             WHERE (?1 IS NULL OR repository = ?1) ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![filter.repository, limit], read_summary)?;
        rows.map(|r| r?).collect()
    }

    pub fn pipeline(&self, id: u64) -> Result<Option<PipelineDetail>> {
        let conn = self.conn();
        let found = conn
            .query_row(
                &format!("SELECT {SUMMARY_COLUMNS}, intent_hash FROM pipelines WHERE id = ?1"),
                [id as i64],
                |r| Ok((read_summary(r)?, r.get::<_, Option<String>>(15)?)),
            )
            .optional()?;
        let Some((summary, intent_hash)) = found else {
            return Ok(None);
        };
        let summary = summary?;
        let mut stmt = conn.prepare(
            "SELECT idx, name, status, started_ms, finished_ms, exit_code, summary
             FROM steps WHERE pipeline_id = ?1 ORDER BY idx",
        )?;
        let steps = stmt
            .query_map([id as i64], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    opt_u64(r, 3)?,
                    opt_u64(r, 4)?,
                    r.get::<_, Option<i32>>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })?
            .map(|row| {
                let (index, name, status, started_ms, finished_ms, exit_code, summary) = row?;
                Ok(StepRecord {
                    index,
                    name,
                    status: parse(&status, StepStatus::parse, "StepStatus")?,
                    started_ms,
                    finished_ms,
                    exit_code,
                    summary,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut stmt = conn.prepare(
            "SELECT name, started_ms, finished_ms FROM phases WHERE pipeline_id = ?1 ORDER BY started_ms, finished_ms",
        )?;
        let phases = stmt
            .query_map([id as i64], |r| {
                Ok(PhaseRecord {
                    name: r.get(0)?,
                    started_ms: r.get::<_, i64>(1)? as u64,
                    finished_ms: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(PipelineDetail {
            summary,
            intent_hash,
            steps,
            phases,
        }))
    }

    /// The blueprint the eval step produced, as JSON.
    pub fn blueprint(&self, id: u64) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT blueprint FROM pipelines WHERE id = ?1",
                [id as i64],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Log lines after `after_seq`, oldest first, at most `limit` (0 means 10,000).
    pub fn logs(&self, id: u64, after_seq: u64, limit: u32) -> Result<Vec<LogLine>> {
        let limit = if limit == 0 { 10_000 } else { limit };
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, step, ts_ms, line FROM log_lines
             WHERE pipeline_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![id as i64, after_seq as i64, limit], |r| {
            Ok(LogLine {
                seq: r.get::<_, i64>(0)? as u64,
                step: r.get(1)?,
                ts_ms: r.get::<_, i64>(2)? as u64,
                line: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn clip(line: &str) -> &str {
    if line.len() <= MAX_LINE {
        return line;
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

fn opt_u64(r: &Row, i: usize) -> rusqlite::Result<Option<u64>> {
    Ok(r.get::<_, Option<i64>>(i)?.map(|v| v as u64))
}

fn read_repository(r: &Row) -> rusqlite::Result<Repository> {
    Ok(Repository {
        name: r.get(0)?,
        remote: r.get(1)?,
        branch: r.get(2)?,
        created_ms: r.get::<_, i64>(3)? as u64,
    })
}

fn read_summary(r: &Row) -> rusqlite::Result<Result<PipelineSummary>> {
    let trigger: String = r.get(4)?;
    let status: String = r.get(6)?;
    let rollout: String = r.get(13)?;
    let parsed = (|| {
        Ok(PipelineSummary {
            id: r.get::<_, i64>(0)? as u64,
            repository: r.get(1)?,
            commit: r.get(2)?,
            ref_name: r.get(3)?,
            trigger: parse(&trigger, Trigger::parse, "Trigger")?,
            deploy: r.get(5)?,
            status: parse(&status, Status::parse, "Status")?,
            message: r.get(7)?,
            created_ms: r.get::<_, i64>(8)? as u64,
            started_ms: opt_u64(r, 9)?,
            finished_ms: opt_u64(r, 10)?,
            generation: opt_u64(r, 11)?,
            published: r.get(12)?,
            rollout: parse(&rollout, Rollout::parse, "Rollout")?,
            rollout_message: r.get(14)?,
        })
    })();
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("ci.db")).expect("open");
        (dir, store)
    }

    fn new(commit: &str) -> NewPipeline {
        NewPipeline {
            repository: "cluster".into(),
            commit: commit.into(),
            ref_name: "refs/heads/main".into(),
            trigger: Trigger::Push,
            deploy: true,
        }
    }

    #[test]
    fn a_run_records_steps_logs_and_outcome() {
        let (_dir, store) = store();
        let id = store.create_pipeline(&new("abc")).expect("create");
        assert!(store.has_pipeline("cluster", "abc", true).expect("has"));
        assert!(!store.has_pipeline("cluster", "abc", false).expect("has"));
        store
            .start_pipeline(id, &["checkout", "eval", "build"])
            .expect("start");
        store.step_started(id, 0).expect("step");
        assert_eq!(store.append_log(id, 0, "cloning").expect("log"), 1);
        store
            .step_finished(id, 0, StepStatus::Succeeded, Some(0), "at abc")
            .expect("finish step");
        store.step_started(id, 1).expect("step");
        assert_eq!(store.append_log(id, 1, "error: boom").expect("log"), 2);
        store
            .finish_pipeline(id, Status::Failed, "eval failed")
            .expect("finish");

        let detail = store.pipeline(id).expect("read").expect("exists");
        assert_eq!(detail.summary.status, Status::Failed);
        assert_eq!(detail.summary.message, "eval failed");
        let statuses: Vec<StepStatus> = detail.steps.iter().map(|s| s.status).collect();
        assert_eq!(
            statuses,
            [
                StepStatus::Succeeded,
                StepStatus::Failed,
                StepStatus::Skipped
            ]
        );
        let logs = store.logs(id, 1, 0).expect("logs");
        assert_eq!(logs.len(), 1);
        assert_eq!((logs[0].step, logs[0].line.as_str()), (1, "error: boom"));
        assert!(store.pipeline(id + 1).expect("read").is_none());
    }

    #[test]
    fn reopening_keeps_everything_and_interrupts_running_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ci.db");
        let (running, queued) = {
            let store = Store::open(&path).expect("open");
            let running = store.create_pipeline(&new("a")).expect("create");
            store.start_pipeline(running, &["checkout"]).expect("start");
            store.step_started(running, 0).expect("step");
            let queued = store.create_pipeline(&new("b")).expect("create");
            (running, queued)
        };
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.interrupt_running().expect("interrupt"), [running]);
        let detail = store.pipeline(running).expect("read").expect("exists");
        assert_eq!(detail.summary.status, Status::Failed);
        assert_eq!(detail.steps[0].status, StepStatus::Failed);
        assert_eq!(
            store.queued().expect("queued"),
            [(queued, "cluster".to_string())]
        );
        let list = store.pipelines(&ListFilter::default()).expect("list");
        assert_eq!(
            list.iter().map(|p| p.id).collect::<Vec<_>>(),
            [queued, running]
        );
    }

    #[test]
    fn long_lines_are_clipped_on_a_character_boundary() {
        let (_dir, store) = store();
        let id = store.create_pipeline(&new("a")).expect("create");
        let long = "é".repeat(MAX_LINE);
        store.append_log(id, 0, &long).expect("log");
        let line = &store.logs(id, 0, 0).expect("logs")[0].line;
        assert!(line.len() <= MAX_LINE && line.chars().all(|c| c == 'é'));
    }

    #[test]
    fn repositories_are_created_once() {
        let (_dir, store) = store();
        let repo = Repository {
            name: "cluster".into(),
            remote: None,
            branch: "main".into(),
            created_ms: 1,
        };
        assert!(store.add_repository(&repo).expect("add"));
        assert!(!store.add_repository(&repo).expect("add again"));
        assert_eq!(
            store.repositories().expect("list"),
            std::slice::from_ref(&repo)
        );
        assert_eq!(store.repository("cluster").expect("get"), Some(repo));
    }
}
