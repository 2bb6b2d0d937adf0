//! The SQLite index: which NAR files exist, which store paths are published (with their signed
//! narinfo text, ready to serve), their references, access times and pins.
//!
//! One connection writes (behind a mutex: SQLite serialises writers anyway, and holding the
//! mutex across a NAR's rename and its row insert is what keeps garbage collection from racing
//! an upload). A few read connections serve lookups in WAL mode without waiting for writers;
//! each lookup is a single prepared primary-key query of a few microseconds, so it runs inline
//! on the async worker rather than paying for a hop to the blocking pool.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use support::sqlite::{self, MigrateError, Synchronous};

use crate::names::{Compression, StoreHash};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per NAR file under nar/. `upload_name` is the name the client PUT it under; it
-- differs from `file` when the cache compressed an uncompressed upload itself.
CREATE TABLE IF NOT EXISTS nars (
    file        TEXT PRIMARY KEY,
    upload_name TEXT NOT NULL,
    compression TEXT NOT NULL,
    file_hash   BLOB NOT NULL,
    file_size   INTEGER NOT NULL,
    nar_hash    BLOB NOT NULL,
    nar_size    INTEGER NOT NULL,
    uploaded_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS nars_upload_name ON nars(upload_name);
-- One row per published store path. `unsigned` is the narinfo as accepted (client signatures
-- kept, ours left out) so that a new signing key can re-sign everything; `narinfo` is what is
-- served.
CREATE TABLE IF NOT EXISTS paths (
    hash        TEXT PRIMARY KEY,
    store_path  TEXT NOT NULL,
    nar_file    TEXT NOT NULL REFERENCES nars(file),
    nar_hash    BLOB NOT NULL,
    unsigned    TEXT NOT NULL,
    narinfo     TEXT NOT NULL,
    uploaded_at INTEGER NOT NULL,
    last_access INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS paths_nar_file ON paths(nar_file);
CREATE TABLE IF NOT EXISTS refs (
    referrer  TEXT NOT NULL REFERENCES paths(hash) ON DELETE CASCADE,
    reference TEXT NOT NULL,
    PRIMARY KEY (referrer, reference)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_reference ON refs(reference);
CREATE TABLE IF NOT EXISTS pins (
    name      TEXT NOT NULL,
    hash      TEXT NOT NULL,
    pinned_at INTEGER NOT NULL,
    PRIMARY KEY (name, hash)
) WITHOUT ROWID;
";

/// A row of `nars`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NarRow {
    pub file: String,
    pub upload_name: String,
    pub compression: Compression,
    pub file_hash: [u8; 32],
    pub file_size: u64,
    pub nar_hash: [u8; 32],
    pub nar_size: u64,
    pub uploaded_at: i64,
}

impl NarRow {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<NarRow> {
        let blob32 = |i: usize| -> rusqlite::Result<[u8; 32]> {
            let v: Vec<u8> = row.get(i)?;
            v.try_into().map_err(|_| {
                rusqlite::Error::FromSqlConversionFailure(
                    i,
                    rusqlite::types::Type::Blob,
                    "digest is not 32 bytes".into(),
                )
            })
        };
        let compression: String = row.get(2)?;
        Ok(NarRow {
            file: row.get(0)?,
            upload_name: row.get(1)?,
            compression: Compression::parse(&compression).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    format!("unknown compression {compression:?}").into(),
                )
            })?,
            file_hash: blob32(3)?,
            file_size: row.get(4)?,
            nar_hash: blob32(5)?,
            nar_size: row.get(6)?,
            uploaded_at: row.get(7)?,
        })
    }
}

const NAR_COLUMNS: &str =
    "file, upload_name, compression, file_hash, file_size, nar_hash, nar_size, uploaded_at";

pub struct Index {
    write: Mutex<Connection>,
    reads: Vec<Mutex<Connection>>,
    next_read: AtomicUsize,
    /// Only asks for `data_version`, which is per connection and so needs one of its own.
    watch: Mutex<Connection>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // A writer holding the lock (GC, a large transaction) makes others wait instead of failing.
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Index {
    pub fn open(path: &Path, readers: usize) -> Result<Index, MigrateError> {
        // With WAL, NORMAL loses at most the last transactions on power loss, never consistency;
        // startup `fsck` reconciles the index with the files either way.
        let mut write = sqlite::open(path, Synchronous::Normal)?;
        configure(&write)?;
        // Version 1 is written with `IF NOT EXISTS`, so an index from before versions were
        // counted (user_version 0) takes it unchanged.
        sqlite::migrate(&mut write, &[SCHEMA])?;
        let open_reader = || -> rusqlite::Result<Mutex<Connection>> {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            configure(&conn)?;
            Ok(Mutex::new(conn))
        };
        let reads = (0..readers.max(1))
            .map(|_| open_reader())
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Index {
            write: Mutex::new(write),
            reads,
            next_read: AtomicUsize::new(0),
            watch: open_reader()?,
        })
    }

    /// A number that changes whenever a connection other than the watcher's commits.
    pub fn data_version(&self) -> rusqlite::Result<i64> {
        self.watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .query_row("PRAGMA data_version", [], |r| r.get(0))
    }

    /// A read connection; spreads concurrent lookups over the pool.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let start = self.next_read.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.reads.len() {
            let slot = &self.reads[(start + i) % self.reads.len()];
            if let Ok(guard) = slot.try_lock() {
                return guard;
            }
        }
        let slot = &self.reads[start % self.reads.len()];
        // A poisoned read connection holds no half-done state worth refusing to reuse.
        slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer. Callers run on the blocking pool: writes may wait on disk.
    pub fn writer(&self) -> MutexGuard<'_, Connection> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The signed narinfo text of a published path.
    pub fn narinfo(&self, hash: &StoreHash) -> rusqlite::Result<Option<String>> {
        self.reader()
            .prepare_cached("SELECT narinfo FROM paths WHERE hash = ?1")?
            .query_row([hash.as_str()], |r| r.get(0))
            .optional()
    }

    /// A NAR by the name it is stored under or the name it was uploaded as.
    pub fn nar(&self, name: &str) -> rusqlite::Result<Option<NarRow>> {
        let conn = self.reader();
        let by_file = conn
            .prepare_cached(&format!("SELECT {NAR_COLUMNS} FROM nars WHERE file = ?1"))?
            .query_row([name], NarRow::from_row)
            .optional()?;
        if by_file.is_some() {
            return Ok(by_file);
        }
        let by_upload_name = conn
            .prepare_cached(&format!(
                "SELECT {NAR_COLUMNS} FROM nars WHERE upload_name = ?1 LIMIT 1"
            ))?
            .query_row([name], NarRow::from_row)
            .optional();
        by_upload_name
    }

    /// Number of published paths and total bytes of NAR files.
    pub fn totals(&self) -> rusqlite::Result<(u64, u64)> {
        let conn = self.reader();
        let paths = conn
            .prepare_cached("SELECT count(*) FROM paths")?
            .query_row([], |r| r.get(0))?;
        let bytes = conn
            .prepare_cached("SELECT coalesce(sum(file_size), 0) FROM nars")?
            .query_row([], |r| r.get(0))?;
        Ok((paths, bytes))
    }

    /// Pins by name, each with its store paths.
    pub fn pins(&self) -> rusqlite::Result<Vec<(String, Vec<String>)>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT pins.name, paths.store_path FROM pins JOIN paths ON paths.hash = pins.hash
             ORDER BY pins.name, paths.store_path",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for row in rows {
            let (name, path) = row?;
            match out.last_mut() {
                Some((last, paths)) if *last == name => paths.push(path),
                _ => out.push((name, vec![path])),
            }
        }
        Ok(out)
    }
}

// Write operations take the writer's connection or transaction explicitly, so that callers
// compose several of them under one lock.

pub fn insert_nar(conn: &Connection, nar: &NarRow) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO nars ({NAR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(file) DO UPDATE SET uploaded_at = excluded.uploaded_at"
    ))?
    .execute(params![
        nar.file,
        nar.upload_name,
        nar.compression.as_str(),
        &nar.file_hash[..],
        nar.file_size,
        &nar.nar_hash[..],
        nar.nar_size,
        nar.uploaded_at
    ])?;
    Ok(())
}

pub fn nar_by_name(conn: &Connection, name: &str) -> rusqlite::Result<Option<NarRow>> {
    conn.prepare_cached(&format!(
        "SELECT {NAR_COLUMNS} FROM nars WHERE file = ?1 OR upload_name = ?1
         ORDER BY file = ?1 DESC LIMIT 1"
    ))?
    .query_row([name], NarRow::from_row)
    .optional()
}

/// A published path's stored NAR hash, if the path is published.
pub fn path_nar_hash(conn: &Connection, hash: &StoreHash) -> rusqlite::Result<Option<[u8; 32]>> {
    conn.prepare_cached("SELECT nar_hash FROM paths WHERE hash = ?1")?
        .query_row([hash.as_str()], |r| r.get::<_, Vec<u8>>(0))
        .optional()
        .map(|v| v.and_then(|v| v.try_into().ok()))
}

pub fn path_exists(conn: &Connection, hash: &StoreHash) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM paths WHERE hash = ?1")?
        .exists([hash.as_str()])
}

pub fn unsigned_narinfo(conn: &Connection, hash: &StoreHash) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT unsigned FROM paths WHERE hash = ?1")?
        .query_row([hash.as_str()], |r| r.get(0))
        .optional()
}

/// A path to publish, with everything the index keeps about it.
pub struct NewPath<'a> {
    pub hash: &'a StoreHash,
    pub store_path: &'a str,
    pub nar_file: &'a str,
    pub nar_hash: &'a [u8; 32],
    pub unsigned: &'a str,
    pub narinfo: &'a str,
    pub references: &'a [StoreHash],
    pub now: i64,
}

pub fn upsert_path(conn: &Connection, p: &NewPath<'_>) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO paths (hash, store_path, nar_file, nar_hash, unsigned, narinfo, uploaded_at,
                            last_access)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT(hash) DO UPDATE SET nar_file = excluded.nar_file,
                                         unsigned = excluded.unsigned,
                                         narinfo = excluded.narinfo,
                                         uploaded_at = excluded.uploaded_at",
    )?
    .execute(params![
        p.hash.as_str(),
        p.store_path,
        p.nar_file,
        &p.nar_hash[..],
        p.unsigned,
        p.narinfo,
        p.now
    ])?;
    let mut add_ref =
        conn.prepare_cached("INSERT OR IGNORE INTO refs (referrer, reference) VALUES (?1, ?2)")?;
    for r in p.references {
        add_ref.execute([p.hash.as_str(), r.as_str()])?;
    }
    Ok(())
}

/// Every published path's `unsigned` narinfo, for re-signing with a new key.
pub fn all_unsigned(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare("SELECT hash, unsigned FROM paths")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

pub fn set_narinfo(conn: &Connection, hash: &str, narinfo: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE paths SET narinfo = ?2 WHERE hash = ?1")?
        .execute([hash, narinfo])?;
    Ok(())
}

pub fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

pub fn touch(conn: &Connection, hashes: &[StoreHash], now: i64) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached("UPDATE paths SET last_access = ?2 WHERE hash = ?1")?;
    for h in hashes {
        stmt.execute(params![h.as_str(), now])?;
    }
    Ok(())
}

/// Replaces the paths of pin `name`.
pub fn set_pin(
    conn: &Connection,
    name: &str,
    hashes: &[StoreHash],
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM pins WHERE name = ?1", [name])?;
    let mut stmt = conn
        .prepare_cached("INSERT OR IGNORE INTO pins (name, hash, pinned_at) VALUES (?1, ?2, ?3)")?;
    for h in hashes {
        stmt.execute(params![name, h.as_str(), now])?;
    }
    Ok(())
}

/// Removes pin `name`; false when there was no such pin.
pub fn remove_pin(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM pins WHERE name = ?1", [name])? > 0)
}

/// What garbage collection needs to know about one path.
pub struct PathAge {
    pub hash: String,
    /// The later of upload and last access, in Unix seconds.
    pub last_used: i64,
}

pub fn path_ages(conn: &Connection) -> rusqlite::Result<Vec<PathAge>> {
    let mut stmt = conn.prepare("SELECT hash, max(uploaded_at, last_access) FROM paths")?;
    let rows = stmt.query_map([], |r| {
        Ok(PathAge {
            hash: r.get(0)?,
            last_used: r.get(1)?,
        })
    })?;
    rows.collect()
}

pub fn all_refs(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare("SELECT referrer, reference FROM refs")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

pub fn pinned_hashes(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT DISTINCT hash FROM pins")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

pub fn delete_path(conn: &Connection, hash: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM paths WHERE hash = ?1")?
        .execute([hash])?;
    Ok(())
}

/// NAR files that no published path uses and that were uploaded at or before `cutoff` (younger
/// ones may be waiting for their narinfo), with their sizes.
pub fn unused_nars(conn: &Connection, cutoff: i64) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT file, file_size FROM nars
         WHERE uploaded_at <= ?1 AND NOT EXISTS (SELECT 1 FROM paths WHERE paths.nar_file = nars.file)",
    )?;
    let rows = stmt.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Deletes the paths served from NAR `file`; answers how many.
pub fn delete_paths_of_nar(conn: &Connection, file: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM paths WHERE nar_file = ?1")?
        .execute([file])
}

pub fn delete_nar(conn: &Connection, file: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM nars WHERE file = ?1")?
        .execute([file])?;
    Ok(())
}

pub fn all_nar_files(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT file FROM nars")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Deletes paths whose NAR row is gone, then, until none is left, paths with a reference to a
/// path that is not published: what makes "every served narinfo has its whole closure" hold
/// again after files went missing behind the cache's back. Returns how many were deleted.
pub fn delete_incomplete(conn: &Connection) -> rusqlite::Result<usize> {
    let mut deleted = conn.execute(
        "DELETE FROM paths WHERE NOT EXISTS (SELECT 1 FROM nars WHERE nars.file = paths.nar_file)",
        [],
    )?;
    loop {
        let n = conn.execute(
            "DELETE FROM paths WHERE hash IN (
                 SELECT referrer FROM refs
                 WHERE NOT EXISTS (SELECT 1 FROM paths p WHERE p.hash = refs.reference))",
            [],
        )?;
        if n == 0 {
            break;
        }
        deleted += n;
    }
    conn.execute(
        "DELETE FROM pins WHERE NOT EXISTS (SELECT 1 FROM paths WHERE paths.hash = pins.hash)",
        [],
    )?;
    Ok(deleted)
}
