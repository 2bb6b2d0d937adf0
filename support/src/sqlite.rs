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
///
/// The file holds tokens, users and password hashes: it is created readable by its owner only
/// (0600; SQLite gives its `-wal` and `-shm` files the same mode), and an existing file that
/// others may read is narrowed to 0600.
pub fn open(path: &Path, synchronous: Synchronous) -> rusqlite::Result<Connection> {
    owner_only(path).map_err(|e| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "cannot make {} readable by its owner only: {e}",
                path.display()
            )),
        )
    })?;
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

/// Creates `path` with mode 0600 if it is missing; narrows an existing file to 0600.
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
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

    /// Databases were once created 0644: anyone on the host could read tokens and hashes.
    #[test]
    fn databases_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new.db");
        let conn = open(&path, Synchronous::Normal).expect("open");
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .expect("write");
        for file in ["new.db", "new.db-wal", "new.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file} has mode {:o}", mode & 0o777);
        }
        let old = dir.path().join("old.db");
        std::fs::write(&old, b"").expect("create");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        drop(open(&old, Synchronous::Normal).expect("open"));
        let mode = std::fs::metadata(&old).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

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
