//! The cache itself: storage layout, upload verification and publication, pins and garbage
//! collection, independent of HTTP.
//!
//! Layout of the storage directory:
//! - `index.sqlite` — see [`crate::index`];
//! - `nar/<filehash>.nar.{zst,xz}` — NAR files, only ever created by an atomic rename;
//! - `tmp/` — uploads in progress; whatever is left there after a crash is deleted at startup.
//!
//! Invariants: a NAR file is visible only once complete and verified against its name; a
//! narinfo is published only once its NAR is stored with the hash and size it claims and every
//! path it references is published; garbage collection deletes only sets of paths closed under
//! "is referenced by", so a published narinfo always has its whole closure.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use futures::{Stream, StreamExt};
use rusqlite::TransactionBehavior;
use tokio::sync::mpsc;

use crate::hot::HotCache;
use crate::index::{self, Index, NarRow, NewPath};
use crate::ingest::{self, IngestError};
use crate::metrics::{self, Metrics};
use crate::names::{self, Compression, NarFileName, StoreHash};
use crate::narinfo::{NarInfo, ParseError, Sha256};
use crate::signing::SecretKey;
use crate::Error;

/// Settings of a cache that do not concern HTTP.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub storage: PathBuf,
    /// The Nix store directory the cached paths belong to, `/nix/store` almost always.
    pub store_dir: String,
    pub signing_key: Option<SecretKey>,
    /// How long garbage collection waits between unpublishing paths and deleting their NAR
    /// files, so that a client that fetched a narinfo just before can still fetch its NAR, and
    /// a server in another process notices the change first (see [`Cache::watch_index`]).
    pub gc_grace: Duration,
}

/// The grace period `pcr-cache` uses.
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(5);

/// Why an upload (NAR or narinfo) was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("invalid narinfo")]
    NarInfo(#[from] ParseError),
    #[error("the narinfo of {store_path} must be uploaded as {expected}.narinfo")]
    WrongName {
        store_path: String,
        expected: String,
    },
    #[error("URL {0:?} is not of the form nar/<filehash>.nar[.xz|.zst]")]
    NarUrl(String),
    #[error("{0} has not been uploaded: PUT the NAR before its narinfo")]
    NarMissing(String),
    #[error("{field} in the narinfo is {claimed} but the uploaded NAR has {actual}")]
    Mismatch {
        field: &'static str,
        claimed: String,
        actual: String,
    },
    #[error("references not in the cache (upload them first): {}", .0.join(", "))]
    MissingReferences(Vec<String>),
    #[error("{0} is already in the cache with a different NarHash; a store path's contents cannot change")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] Error),
}

/// Why a pin request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("pin name {0:?} is invalid: use letters, digits, '-', '_' and '.'")]
    Name(String),
    #[error("{0:?} is not a store path in {1}")]
    Path(String, String),
    #[error("not in the cache (push them before pinning): {}", .0.join(", "))]
    NotInCache(Vec<String>),
    #[error("no pin named {0:?}")]
    Unknown(String),
    #[error(transparent)]
    Internal(#[from] Error),
}

/// What one garbage collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub paths_kept: usize,
    pub paths_deleted: usize,
    pub nars_deleted: usize,
    pub bytes_freed: u64,
}

/// A NAR ready to be sent.
pub enum NarBody {
    /// The stored file, as is.
    File { file: std::fs::File, len: u64 },
    /// An upload that arrived uncompressed and is stored as zstd, asked for under its upload
    /// name: decompressed on the fly so that the name keeps meaning what the client sent.
    Decompressed { path: PathBuf, nar_size: u64 },
}

pub struct Cache {
    store_dir: String,
    signing_key: Option<SecretKey>,
    nar_dir: PathBuf,
    spool_dir: PathBuf,
    index: Index,
    /// Paths downloaded since the last flush; written to the index in one transaction every few
    /// seconds, because a write per lookup would cost more than the lookup.
    accessed: Mutex<HashSet<StoreHash>>,
    hot: HotCache,
    /// The index's `data_version` when last looked at: it moves when another connection (our
    /// writer, or another process) commits.
    seen_version: Mutex<Option<i64>>,
    gc_grace: Duration,
    pub metrics: Metrics,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Storage {
        path: path.display().to_string(),
        source,
    }
}

const SIGNING_KEY_META: &str = "signing_public_key";

impl Cache {
    /// Opens the cache for serving: creates the layout, then repairs whatever a crash or a hand
    /// left behind (temporary files, files without index rows and rows without files, paths
    /// with incomplete closures) and re-signs every narinfo if the signing key changed.
    ///
    /// Only one server may run per storage directory.
    pub fn open(config: StoreConfig) -> Result<Cache, Error> {
        let cache = Cache::open_inner(config)?;
        cache.recover()?;
        cache.resign_if_key_changed()?;
        Ok(cache)
    }

    /// Opens the cache for maintenance (GC, pins) next to a possibly running server: no
    /// recovery, which would take a running upload's files for leftovers.
    pub fn open_for_maintenance(config: StoreConfig) -> Result<Cache, Error> {
        Cache::open_inner(config)
    }

    fn open_inner(config: StoreConfig) -> Result<Cache, Error> {
        let nar_dir = config.storage.join("nar");
        let spool_dir = config.storage.join("tmp");
        for dir in [&config.storage, &nar_dir, &spool_dir] {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let index_path = config.storage.join("index.sqlite");
        let readers = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        let index = Index::open(&index_path, readers).map_err(|source| Error::OpenIndex {
            path: index_path.display().to_string(),
            source,
        })?;
        Ok(Cache {
            store_dir: config.store_dir,
            signing_key: config.signing_key,
            nar_dir,
            spool_dir,
            index,
            accessed: Mutex::new(HashSet::new()),
            hot: HotCache::default(),
            seen_version: Mutex::new(None),
            gc_grace: config.gc_grace,
            metrics: Metrics::default(),
        })
    }

    pub fn store_dir(&self) -> &str {
        &self.store_dir
    }

    fn recover(&self) -> Result<(), Error> {
        let spool = std::fs::read_dir(&self.spool_dir).map_err(io_error(&self.spool_dir))?;
        for entry in spool {
            let path = entry.map_err(io_error(&self.spool_dir))?.path();
            std::fs::remove_file(&path).map_err(io_error(&path))?;
        }

        let (indexed, missing, incomplete) = {
            let mut conn = self.index.writer();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let indexed: HashSet<String> = index::all_nar_files(&tx)?.into_iter().collect();
            let mut missing = 0;
            for file in &indexed {
                if !self.nar_dir.join(file).exists() {
                    // Its paths go first (they refer to it); delete_incomplete then removes
                    // every path whose closure lost one of them.
                    index::delete_paths_of_nar(&tx, file)?;
                    index::delete_nar(&tx, file)?;
                    missing += 1;
                }
            }
            let incomplete = index::delete_incomplete(&tx)?;
            tx.commit()?;
            (indexed, missing, incomplete)
        };

        let orphans = std::fs::read_dir(&self.nar_dir)
            .map_err(io_error(&self.nar_dir))?
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_str().is_some_and(|n| indexed.contains(n)))
            .count();
        // A NAR renamed into place whose row was never committed: invisible and unreferenced.
        self.delete_unindexed_files()?;
        if missing + incomplete + orphans > 0 {
            tracing::warn!(
                missing_nar_files = missing,
                incomplete_paths_removed = incomplete,
                orphan_files_removed = orphans,
                "repaired the storage directory"
            );
        }
        Ok(())
    }

    fn resign_if_key_changed(&self) -> Result<(), Error> {
        let current = self
            .signing_key
            .as_ref()
            .map(|k| k.public().to_string())
            .unwrap_or_default();
        let mut conn = self.index.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let recorded = index::meta(&tx, SIGNING_KEY_META)?;
        if recorded.as_deref() == Some(current.as_str()) {
            return Ok(());
        }
        let rows = index::all_unsigned(&tx)?;
        for (hash, unsigned) in &rows {
            let info = NarInfo::parse(&self.store_dir, unsigned).map_err(|source| {
                Error::CorruptIndex(format!("narinfo of {hash} no longer parses: {source}"))
            })?;
            index::set_narinfo(&tx, hash, &self.sign(info).render())?;
        }
        index::set_meta(&tx, SIGNING_KEY_META, &current)?;
        tx.commit()?;
        if !rows.is_empty() {
            tracing::info!(
                paths = rows.len(),
                "re-signed narinfos with the new signing key"
            );
        }
        Ok(())
    }

    /// Adds this cache's signature, replacing any earlier one made under the same key name.
    fn sign(&self, mut info: NarInfo) -> NarInfo {
        if let Some(key) = &self.signing_key {
            let prefix = format!("{}:", key.name());
            info.sigs.retain(|s| !s.starts_with(&prefix));
            info.sigs.push(key.sign(&info.fingerprint(&self.store_dir)));
        }
        info
    }

    /// The signed narinfo of a published path; a GET (`count_access`) counts as a use for
    /// garbage collection.
    pub fn narinfo(&self, hash: &StoreHash, count_access: bool) -> Result<Option<Bytes>, Error> {
        let found = match self.hot.get(hash) {
            Some(text) => Some(text),
            None => {
                let epoch = self.hot.epoch();
                let text = self.index.narinfo(hash)?.map(Bytes::from);
                if let Some(text) = &text {
                    self.hot.insert(epoch, hash.clone(), text.clone());
                }
                text
            }
        };
        if found.is_some() {
            metrics::inc(&self.metrics.narinfo_hits);
            if count_access {
                self.accessed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(hash.clone());
            }
        } else {
            metrics::inc(&self.metrics.narinfo_misses);
        }
        Ok(found)
    }

    /// Drops the in-memory narinfos if the index changed behind this process's back (a
    /// `pcr-cache gc` next to the server); the server calls it a few times a second.
    pub fn watch_index(&self) -> Result<(), Error> {
        let version = self.index.data_version()?;
        let mut seen = self.seen_version.lock().unwrap_or_else(|e| e.into_inner());
        if seen.is_some_and(|v| v != version) {
            self.hot.invalidate();
        }
        *seen = Some(version);
        Ok(())
    }

    /// The index row of a NAR by stored or upload name.
    pub fn nar(&self, name: &str) -> Result<Option<NarRow>, Error> {
        Ok(self.index.nar(name)?)
    }

    /// Opens a NAR for sending.
    pub async fn open_nar(&self, name: &str) -> Result<Option<NarBody>, Error> {
        let Some(row) = self.nar(name)? else {
            return Ok(None);
        };
        let path = self.nar_dir.join(&row.file);
        if row.file != name {
            return Ok(Some(NarBody::Decompressed {
                path,
                nar_size: row.nar_size,
            }));
        }
        // Open and stat in one trip to the blocking pool.
        let opened = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)?;
            let len = file.metadata()?.len();
            Ok::<_, io::Error>((file, len))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        match opened {
            Ok((file, len)) => Ok(Some(NarBody::File { file, len })),
            // Deleted by a GC between the lookup and the open: as good as never there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&self.nar_dir.join(&row.file))(e)),
        }
    }

    /// Receives a NAR upload, verifies it against its name and stores it. Nothing is visible
    /// until the whole body has arrived and checked out.
    pub async fn upload_nar<S, E>(
        self: &Arc<Self>,
        name: NarFileName,
        body: S,
    ) -> Result<NarRow, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let result = self.upload_nar_inner(name, body).await;
        match &result {
            Ok(row) => {
                metrics::inc(&self.metrics.nar_uploads);
                metrics::add(&self.metrics.nar_upload_bytes, row.file_size);
            }
            Err(_) => metrics::inc(&self.metrics.uploads_rejected),
        }
        result
    }

    async fn upload_nar_inner<S, E>(
        self: &Arc<Self>,
        name: NarFileName,
        body: S,
    ) -> Result<NarRow, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // A few chunks in flight keep both the socket and the hashing busy.
        let (tx, rx) = mpsc::channel(16);
        let spool = self.spool_dir.clone();
        let upload_name = name.clone();
        let worker = tokio::task::spawn_blocking(move || ingest::ingest(&spool, &upload_name, rx));
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(io::Error::other);
            let failed = chunk.is_err();
            // A closed channel means the worker already refused the upload; its error says why.
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
        let ingested = worker.await.map_err(|e| Error::Task(e.to_string()))??;

        let this = Arc::clone(self);
        let row = tokio::task::spawn_blocking(move || -> Result<NarRow, Error> {
            let row = NarRow {
                file: ingested.stored.to_string(),
                upload_name: name.to_string(),
                compression: ingested.stored.compression,
                file_hash: ingested.stored.file_hash,
                file_size: ingested.file_size,
                nar_hash: ingested.nar_hash,
                nar_size: ingested.nar_size,
                uploaded_at: now(),
            };
            let target = this.nar_dir.join(&row.file);
            // Rename and row insert happen under the index's write lock, which garbage
            // collection holds while it unlinks: neither can undo the other's work.
            let mut conn = this.index.writer();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            ingested
                .temp
                .persist(&target)
                .map_err(|e| io_error(&target)(e.error))?;
            // The rename is durable only once the directory is: without this a power loss
            // after the commit leaves a row whose file never appeared.
            std::fs::File::open(&this.nar_dir)
                .and_then(|dir| dir.sync_all())
                .map_err(io_error(&this.nar_dir))?;
            index::insert_nar(&tx, &row)?;
            tx.commit()?;
            Ok(row)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        tracing::info!(
            nar = %row.upload_name,
            stored_as = %row.file,
            nar_size = row.nar_size,
            file_size = row.file_size,
            "NAR stored"
        );
        Ok(row)
    }

    /// Verifies an uploaded narinfo against its NAR and references, signs it and publishes it.
    pub async fn upload_narinfo(
        self: &Arc<Self>,
        hash: StoreHash,
        text: String,
    ) -> Result<(), UploadError> {
        let this = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || this.publish_narinfo(&hash, &text))
            .await
            .map_err(|e| UploadError::Internal(Error::Task(e.to_string())))
            .and_then(|r| r);
        match &result {
            Ok(()) => metrics::inc(&self.metrics.narinfo_uploads),
            Err(_) => metrics::inc(&self.metrics.uploads_rejected),
        }
        result
    }

    fn publish_narinfo(&self, hash: &StoreHash, text: &str) -> Result<(), UploadError> {
        let mut info = NarInfo::parse(&self.store_dir, text)?;
        if info.hash().as_ref() != Some(hash) {
            return Err(UploadError::WrongName {
                expected: info.hash().map(|h| h.to_string()).unwrap_or_default(),
                store_path: info.store_path,
            });
        }
        let nar_name = info
            .url
            .strip_prefix("nar/")
            .and_then(NarFileName::parse)
            .ok_or_else(|| UploadError::NarUrl(info.url.clone()))?;
        let nar_name_str = nar_name.to_string();
        let references = info.reference_hashes();

        let mut conn = self.index.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Error::from)?;
        let nar = index::nar_by_name(&tx, &nar_name_str)
            .map_err(Error::from)?
            .ok_or_else(|| UploadError::NarMissing(info.url.clone()))?;

        // What the client saw: the bytes it uploaded, which the cache may have compressed since.
        let (upload_size, upload_compression) = if nar.file == nar_name_str {
            (nar.file_size, nar.compression)
        } else {
            (nar.nar_size, Compression::None)
        };
        let mismatch = |field, claimed: String, actual: String| UploadError::Mismatch {
            field,
            claimed,
            actual,
        };
        if info.compression != upload_compression {
            return Err(mismatch(
                "Compression",
                info.compression.as_str().into(),
                upload_compression.as_str().into(),
            ));
        }
        if let Some(claimed) = info.file_hash {
            if claimed.0 != nar_name.file_hash {
                return Err(mismatch(
                    "FileHash",
                    claimed.to_string(),
                    Sha256(nar_name.file_hash).to_string(),
                ));
            }
        }
        if let Some(claimed) = info.file_size {
            if claimed != upload_size {
                return Err(mismatch(
                    "FileSize",
                    claimed.to_string(),
                    upload_size.to_string(),
                ));
            }
        }
        if info.nar_hash.0 != nar.nar_hash {
            return Err(mismatch(
                "NarHash",
                info.nar_hash.to_string(),
                Sha256(nar.nar_hash).to_string(),
            ));
        }
        if info.nar_size != nar.nar_size {
            return Err(mismatch(
                "NarSize",
                info.nar_size.to_string(),
                nar.nar_size.to_string(),
            ));
        }
        let mut replaced = false;
        let mut missing = Vec::new();
        for r in &info.references {
            // Parsing validated every reference, so the split cannot fail here.
            let Some((h, _)) = names::split_base_name(r) else {
                continue;
            };
            if h != *hash && !index::path_exists(&tx, &h).map_err(Error::from)? {
                missing.push(format!("{}/{r}", self.store_dir));
            }
        }
        if !missing.is_empty() {
            return Err(UploadError::MissingReferences(missing));
        }
        match index::path_nar_hash(&tx, hash).map_err(Error::from)? {
            Some(existing) if existing != nar.nar_hash => {
                return Err(UploadError::Conflict(info.store_path));
            }
            Some(_) => {
                replaced = true;
                // Re-upload of the same contents: keep the signatures collected so far.
                if let Some(old) = index::unsigned_narinfo(&tx, hash).map_err(Error::from)? {
                    if let Ok(old) = NarInfo::parse(&self.store_dir, &old) {
                        for sig in old.sigs {
                            if !info.sigs.contains(&sig) {
                                info.sigs.push(sig);
                            }
                        }
                    }
                }
            }
            None => {}
        }

        // Serve the file as stored, whatever the client uploaded.
        info.url = format!("nar/{}", nar.file);
        info.compression = nar.compression;
        info.file_hash = Some(Sha256(nar.file_hash));
        info.file_size = Some(nar.file_size);
        if let Some(key) = &self.signing_key {
            let prefix = format!("{}:", key.name());
            info.sigs.retain(|s| !s.starts_with(&prefix));
        }
        let unsigned = info.render();
        let signed = self.sign(info.clone()).render();
        index::upsert_path(
            &tx,
            &NewPath {
                hash,
                store_path: &info.store_path,
                nar_file: &nar.file,
                nar_hash: &nar.nar_hash,
                unsigned: &unsigned,
                narinfo: &signed,
                references: &references,
                now: now(),
            },
        )
        .map_err(Error::from)?;
        tx.commit().map_err(Error::from)?;
        if replaced {
            self.hot.invalidate();
        }
        tracing::info!(path = %info.store_path, nar = %nar.file, "narinfo published");
        Ok(())
    }

    /// Writes the access times gathered since the last flush.
    pub fn flush_access(&self) -> Result<(), Error> {
        let hashes: Vec<StoreHash> = {
            let mut set = self.accessed.lock().unwrap_or_else(|e| e.into_inner());
            set.drain().collect()
        };
        if hashes.is_empty() {
            return Ok(());
        }
        let mut conn = self.index.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        index::touch(&tx, &hashes, now())?;
        tx.commit()?;
        Ok(())
    }

    fn parse_pin_paths(&self, paths: &[String]) -> Result<Vec<StoreHash>, PinError> {
        paths
            .iter()
            .map(|p| {
                names::base_name_in(&self.store_dir, p)
                    .and_then(names::split_base_name)
                    .map(|(hash, _)| hash)
                    .ok_or_else(|| PinError::Path(p.clone(), self.store_dir.clone()))
            })
            .collect()
    }

    /// Sets pin `name` to exactly `paths` (full store paths), all of which must be published.
    pub fn pin(&self, name: &str, paths: &[String]) -> Result<(), PinError> {
        if !names::is_valid_pin_name(name) {
            return Err(PinError::Name(name.to_owned()));
        }
        let hashes = self.parse_pin_paths(paths)?;
        let mut conn = self.index.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Error::from)?;
        let mut missing = Vec::new();
        for (path, hash) in paths.iter().zip(&hashes) {
            if !index::path_exists(&tx, hash).map_err(Error::from)? {
                missing.push(path.clone());
            }
        }
        if !missing.is_empty() {
            return Err(PinError::NotInCache(missing));
        }
        index::set_pin(&tx, name, &hashes, now()).map_err(Error::from)?;
        tx.commit().map_err(Error::from)?;
        tracing::info!(pin = name, paths = hashes.len(), "pinned");
        Ok(())
    }

    pub fn unpin(&self, name: &str) -> Result<(), PinError> {
        if !names::is_valid_pin_name(name) {
            return Err(PinError::Name(name.to_owned()));
        }
        let removed = index::remove_pin(&self.index.writer(), name).map_err(Error::from)?;
        if !removed {
            return Err(PinError::Unknown(name.to_owned()));
        }
        tracing::info!(pin = name, "unpinned");
        Ok(())
    }

    pub fn pins(&self) -> Result<Vec<(String, Vec<String>)>, Error> {
        Ok(self.index.pins()?)
    }

    pub fn totals(&self) -> Result<(u64, u64), Error> {
        Ok(self.index.totals()?)
    }

    /// Deletes every path neither pinned nor used within `retention`, nor referenced by one
    /// that is, and every NAR file no remaining path uses. Blocking: run it off the runtime.
    ///
    /// Two phases: first the paths are unpublished (one transaction), then, after the grace
    /// period, the NAR files that still have no index row are unlinked, under the index's write
    /// lock so that an upload cannot rename a file into place in between.
    pub fn gc(&self, retention: Duration) -> Result<GcReport, Error> {
        self.flush_access()?;
        let cutoff = now() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        let mut report = GcReport::default();
        {
            let mut conn = self.index.writer();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let ages = index::path_ages(&tx)?;
            let refs = index::all_refs(&tx)?;
            let pins = index::pinned_hashes(&tx)?;
            let live = crate::gc::live_set(
                ages.iter().map(|a| (a.hash.as_str(), a.last_used)),
                &refs,
                &pins,
                cutoff,
            );
            report.paths_kept = live.len();
            for age in ages.iter().filter(|a| !live.contains(a.hash.as_str())) {
                index::delete_path(&tx, &age.hash)?;
                report.paths_deleted += 1;
            }
            for (file, size) in index::unused_nars(&tx, cutoff)? {
                index::delete_nar(&tx, &file)?;
                report.nars_deleted += 1;
                report.bytes_freed += size;
            }
            tx.commit()?;
        }
        self.hot.invalidate();
        if report.nars_deleted > 0 {
            std::thread::sleep(self.gc_grace);
        }
        self.delete_unindexed_files()?;

        metrics::inc(&self.metrics.gc_runs);
        metrics::add(&self.metrics.gc_deleted_paths, report.paths_deleted as u64);
        metrics::add(&self.metrics.gc_freed_bytes, report.bytes_freed);
        tracing::info!(
            kept = report.paths_kept,
            deleted = report.paths_deleted,
            nars_deleted = report.nars_deleted,
            bytes_freed = report.bytes_freed,
            "garbage collection done"
        );
        Ok(report)
    }

    /// Unlinks files under `nar/` that have no index row: those garbage collection unpublished,
    /// and any left by a crash between an upload's rename and its commit.
    fn delete_unindexed_files(&self) -> Result<(), Error> {
        let mut conn = self.index.writer();
        // Held while unlinking: uploads rename files into place only inside such a transaction.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let indexed: HashSet<String> = index::all_nar_files(&tx)?.into_iter().collect();
        let dir = std::fs::read_dir(&self.nar_dir).map_err(io_error(&self.nar_dir))?;
        for entry in dir {
            let entry = entry.map_err(io_error(&self.nar_dir))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| indexed.contains(n))
            {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&entry.path())(e)),
            }
        }
        tx.commit()?;
        Ok(())
    }
}
