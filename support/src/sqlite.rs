//! Opening a SQLite file the one way Procurator's services do — WAL, a busy timeout, foreign
//! keys — and moving its schema forward with numbered migrations counted in
//! `PRAGMA user_version`.
//!
//! WAL lets readers (an API, another process) read while a writer commits. `synchronous =
//! NORMAL` keeps every commit across a process crash; a power cut may lose the last few.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Survives a crash of the process; a power cut may lose the last commits.
    Normal,
    /// Survives a power cut too, at the cost of an fsync per commit.
    Full,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The file's schema is newer than the migrations this build knows.
    #[error("schema version {found} is newer than this build knows ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("the database query failed")]
    Sql(#[from] rusqlite::Error),
}

/// Opens (creating) `path` with WAL, `synchronous`, foreign keys and a 5 s busy timeout.
pub fn open(path: &Path, synchronous: Synchronous) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Runs the migrations the file has not seen yet, each in its own transaction: entry `i` moves
/// the schema from version `i` to `i + 1`. A file from a newer build is refused untouched.
pub fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), MigrateError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = migrations.len() as i64;
    if found > known {
        return Err(MigrateError::TooNew { found, known });
    }
    for (i, sql) in migrations.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "CREATE TABLE a (x INTEGER);";
    const V2: &str = "ALTER TABLE a ADD COLUMN y INTEGER NOT NULL DEFAULT 0;";

    #[test]
    fn migrations_run_once_in_order_and_a_newer_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let mut conn = open(&path, Synchronous::Normal).expect("open");
        migrate(&mut conn, &[V1]).expect("v1");
        migrate(&mut conn, &[V1]).expect("v1 again is a no-op");
        migrate(&mut conn, &[V1, V2]).expect("v2");
        conn.execute("INSERT INTO a (x, y) VALUES (1, 2)", [])
            .expect("both columns exist");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        match migrate(&mut conn, &[V1]) {
            Err(MigrateError::TooNew { found: 2, known: 1 }) => {}
            other => panic!("expected TooNew, got {other:?}"),
        }
    }
}
