//! Walking a repository: one parallel pass that classifies every file, counts the lines of
//! source files and keeps the text of the few files detection needs (manifests, lockfile
//! headers, CI configs, Dockerfiles).
//!
//! The walk respects `.gitignore`/`.ignore` even outside a git checkout, skips vendored and
//! generated trees, and never follows symbolic links: following them could leave the
//! repository (a link to `/` would make a CI service read the host) and is how loops happen.
//! Only regular files are opened — a FIFO would block a reader forever — and at most
//! [`ScanOptions::max_read_bytes`] of each is read. Files that cannot be read are recorded
//! and the scan goes on.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ignore::{DirEntry, ParallelVisitor, ParallelVisitorBuilder, WalkBuilder, WalkState};
use serde::{Deserialize, Serialize};

use crate::mapping::languages::{self, Language};
use crate::mapping::manifests;

/// Directory names that hold vendored dependencies, build output or tool state. Their
/// contents say nothing about how the project itself is built and they are often huge.
pub const SKIPPED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".direnv",
    ".venv",
    "venv",
    ".tox",
    ".mypy_cache",
    ".pytest_cache",
    "__pycache__",
    "node_modules",
    "bower_components",
    ".next",
    ".nuxt",
    ".svelte-kit",
    ".turbo",
    ".gradle",
    ".idea",
    ".vscode",
    "target",
    "vendor",
    "dist",
    "_build",
    "zig-cache",
    ".zig-cache",
    "zig-out",
    ".bundle",
    "coverage",
];

/// How much of one file is read at most. Larger files are counted up to this point and
/// recorded as truncated; lockfiles and manifests never come close.
pub const DEFAULT_MAX_READ_BYTES: usize = 1024 * 1024;

/// How far into a file the binary check looks for a NUL byte, like git and ripgrep do.
const BINARY_SNIFF_BYTES: usize = 8 * 1024;

/// How many problem paths are listed in [`ScanStats`]; the counts are always complete.
const LISTED_PROBLEMS: usize = 20;

/// Settings for one scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Bytes read per file at most.
    pub max_read_bytes: usize,
    /// Walker threads; 0 picks one per available core.
    pub threads: usize,
    /// Count the lines of every source file. Reading each file is most of a scan's cost
    /// (see the `scan` benchmark); without it languages are still found by name and
    /// shebang, with line counts of 0, and only the files detection needs are read.
    pub count_lines: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            max_read_bytes: DEFAULT_MAX_READ_BYTES,
            threads: 0,
            count_lines: true,
        }
    }
}

/// One regular file the walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Path relative to the scanned root, `/`-separated.
    pub path: String,
    pub language: Option<Language>,
    /// Newline count of the part that was read (source files only).
    pub lines: u64,
    pub binary: bool,
}

/// What the walk saw besides files: counts a reader can use to judge the scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStats {
    pub files: u64,
    /// Files holding a NUL byte near the start: not counted as source.
    pub binary_files: u64,
    /// Symbolic links seen and not followed.
    pub symlinks: u64,
    /// FIFOs, sockets and devices: never opened.
    pub special_files: u64,
    /// Files larger than the read cap; only their beginning was looked at.
    pub truncated_files: u64,
    /// Vendored or generated directories skipped by name (first few listed).
    pub skipped_dirs: u64,
    pub skipped_dir_examples: Vec<String>,
    /// Files or directories that could not be read, with the reason (first few listed).
    pub unreadable: u64,
    pub unreadable_examples: Vec<String>,
}

/// Everything the walk learnt, in path order.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub root: PathBuf,
    pub files: Vec<FileRecord>,
    /// Text of the files detection reads, by relative path (invalid UTF-8 replaced).
    pub texts: BTreeMap<String, String>,
    /// Skipped vendored/generated directories, relative and sorted (`vendor/` matters to Go).
    pub skipped_dirs: Vec<String>,
    pub stats: ScanStats,
}

impl Inventory {
    pub fn text(&self, path: &str) -> Option<&str> {
        self.texts.get(path).map(String::as_str)
    }

    pub fn has_file(&self, path: &str) -> bool {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .is_ok()
    }
}

/// Errors that stop a scan before it starts; problems inside the tree never do.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot open {}", .path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Walks `root` and returns its inventory.
pub fn scan(root: &Path, options: &ScanOptions) -> Result<Inventory, ScanError> {
    let meta = std::fs::metadata(root).map_err(|source| ScanError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(ScanError::NotADirectory(root.to_path_buf()));
    }
    let skipped = Arc::new(Mutex::new(SkipLog::default()));
    let skipped_in_filter = Arc::clone(&skipped);
    let mut builder = WalkBuilder::new(root);
    builder
        .hidden(false)
        .follow_links(false)
        // Reproducible results: only the repository's own ignore files count, not the
        // scanning user's global gitignore nor those of directories above the root.
        .git_global(false)
        .parents(false)
        .require_git(false)
        .threads(options.threads)
        .filter_entry(move |entry| {
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            if !is_dir || entry.depth() == 0 {
                return true;
            }
            let name = entry.file_name().to_string_lossy();
            if SKIPPED_DIRS.contains(&name.as_ref()) {
                if let Ok(mut log) = skipped_in_filter.lock() {
                    log.paths.push(entry.path().to_path_buf());
                }
                return false;
            }
            true
        });
    let mut collector = Collector {
        root: root.to_path_buf(),
        max_read: options.max_read_bytes.max(BINARY_SNIFF_BYTES),
        count_lines: options.count_lines,
        results: Arc::new(Mutex::new(Vec::new())),
    };
    builder.build_parallel().visit(&mut collector);

    let mut files = Vec::new();
    let mut texts = BTreeMap::new();
    let mut stats = ScanStats::default();
    let mut unreadable = Vec::new();
    let parts = match Arc::try_unwrap(collector.results) {
        Ok(mutex) => mutex.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(shared) => shared.lock().map(|v| v.clone()).unwrap_or_default(),
    };
    for part in parts {
        files.extend(part.files);
        texts.extend(part.texts);
        stats.binary_files += part.stats.binary_files;
        stats.symlinks += part.stats.symlinks;
        stats.special_files += part.stats.special_files;
        stats.truncated_files += part.stats.truncated_files;
        stats.unreadable += part.stats.unreadable;
        unreadable.extend(part.unreadable);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    stats.files = files.len() as u64;
    unreadable.sort();
    unreadable.truncate(LISTED_PROBLEMS);
    stats.unreadable_examples = unreadable;
    let mut skipped_dirs: Vec<String> = match skipped.lock() {
        Ok(log) => log.paths.iter().map(|p| relative(root, p)).collect(),
        Err(_) => Vec::new(),
    };
    skipped_dirs.sort();
    stats.skipped_dirs = skipped_dirs.len() as u64;
    stats.skipped_dir_examples = skipped_dirs.iter().take(LISTED_PROBLEMS).cloned().collect();
    Ok(Inventory {
        root: root.to_path_buf(),
        files,
        texts,
        skipped_dirs,
        stats,
    })
}

#[derive(Default)]
struct SkipLog {
    paths: Vec<PathBuf>,
}

/// The part of the inventory one walker thread collected.
#[derive(Default, Clone)]
struct Part {
    files: Vec<FileRecord>,
    texts: Vec<(String, String)>,
    stats: ScanStats,
    unreadable: Vec<String>,
}

struct Collector {
    root: PathBuf,
    max_read: usize,
    count_lines: bool,
    results: Arc<Mutex<Vec<Part>>>,
}

impl<'s> ParallelVisitorBuilder<'s> for Collector {
    fn build(&mut self) -> Box<dyn ParallelVisitor + 's> {
        Box::new(Visitor {
            root: self.root.clone(),
            max_read: self.max_read,
            count_lines: self.count_lines,
            buf: Vec::with_capacity(64 * 1024),
            part: Part::default(),
            results: Arc::clone(&self.results),
        })
    }
}

/// One walker thread's state; it hands its part over when the walk drops it.
struct Visitor {
    root: PathBuf,
    max_read: usize,
    count_lines: bool,
    buf: Vec<u8>,
    part: Part,
    results: Arc<Mutex<Vec<Part>>>,
}

impl Drop for Visitor {
    fn drop(&mut self) {
        let part = std::mem::take(&mut self.part);
        if let Ok(mut results) = self.results.lock() {
            results.push(part);
        }
    }
}

impl ParallelVisitor for Visitor {
    fn visit(&mut self, entry: Result<DirEntry, ignore::Error>) -> WalkState {
        match entry {
            Ok(entry) => self.visit_entry(&entry),
            Err(err) => {
                self.part.stats.unreadable += 1;
                self.part.unreadable.push(err.to_string());
            }
        }
        WalkState::Continue
    }
}

impl Visitor {
    fn visit_entry(&mut self, entry: &DirEntry) {
        let Some(file_type) = entry.file_type() else {
            // Only stdin has no file type; a walk never yields it.
            return;
        };
        if file_type.is_dir() {
            return;
        }
        if file_type.is_symlink() {
            self.part.stats.symlinks += 1;
            return;
        }
        if !file_type.is_file() {
            self.part.stats.special_files += 1;
            return;
        }
        let rel = relative(&self.root, entry.path());
        let name = entry.file_name().to_string_lossy();
        let keep_text = manifests::is_interesting(&rel, &name);
        let by_name = languages::by_name(&name);
        // Files with an unknown extension are not opened at all: most of a large tree is
        // data, images and docs, and reading them would dominate the scan.
        let has_extension = name.contains('.') && !name.starts_with('.');
        let needs_read = keep_text
            || (self.count_lines && by_name.is_some())
            || (!has_extension && by_name.is_none());
        let mut record = FileRecord {
            path: rel.clone(),
            language: by_name,
            lines: 0,
            binary: false,
        };
        if !needs_read {
            self.part.files.push(record);
            return;
        }
        // Extension-less files only need their first line for a shebang, unless detection
        // wants their text (Makefile, Procfile, Gemfile...).
        let limit = if by_name.is_none() && !keep_text {
            256
        } else {
            self.max_read
        };
        match read_prefix(entry.path(), limit, &mut self.buf) {
            Ok(truncated) => {
                let head = &self.buf[..self.buf.len().min(BINARY_SNIFF_BYTES)];
                record.binary = memchr::memchr(0, head).is_some();
                if record.binary {
                    self.part.stats.binary_files += 1;
                    record.language = None;
                } else {
                    if record.language.is_none() {
                        record.language = languages::by_shebang(head);
                        if record.language.is_some() && limit < self.max_read && self.count_lines {
                            // A script found by its shebang: read the rest to count lines.
                            if let Ok(t) = read_prefix(entry.path(), self.max_read, &mut self.buf) {
                                if t {
                                    self.part.stats.truncated_files += 1;
                                }
                            }
                        }
                    } else if truncated {
                        self.part.stats.truncated_files += 1;
                    }
                    if record.language.is_some() && self.count_lines {
                        record.lines = count_lines(&self.buf);
                    }
                    if keep_text {
                        let text = String::from_utf8_lossy(&self.buf).into_owned();
                        self.part.texts.push((rel, text));
                    }
                }
            }
            Err(err) => {
                self.part.stats.unreadable += 1;
                self.part.unreadable.push(format!("{rel}: {err}"));
            }
        }
        self.part.files.push(record);
    }
}

/// Reads at most `limit` bytes of `path` into `buf`; says whether the file had more.
///
/// Most source files are small: one `read` into a buffer larger than the file returns
/// all of it, and a second `read` returning 0 confirms the end. `read_to_end` would add an
/// `fstat` and more reads per file, which shows on trees of 100,000 files.
fn read_prefix(path: &Path, limit: usize, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    const FIRST_READ: usize = 64 * 1024;
    buf.clear();
    let mut file = File::open(path)?;
    // One byte more than the limit tells a file of exactly `limit` bytes from a longer one.
    let want = limit + 1;
    buf.resize(want.min(FIRST_READ), 0);
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= want {
                break;
            }
            let grow = (buf.len() * 2).min(want);
            buf.resize(grow, 0);
        }
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.clear();
                return Err(e);
            }
        }
    }
    buf.truncate(filled);
    if filled > limit {
        buf.truncate(limit);
        return Ok(true);
    }
    Ok(false)
}

/// Lines as editors count them: a last line without a newline still counts.
fn count_lines(bytes: &[u8]) -> u64 {
    let newlines = memchr::memchr_iter(b'\n', bytes).count() as u64;
    match bytes.last() {
        Some(b'\n') | None => newlines,
        Some(_) => newlines + 1,
    }
}

fn relative(root: &Path, path: &Path) -> String {
    // Unix paths are already `/`-separated: the stripped path is the answer as it is.
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_counting() {
        assert_eq!(count_lines(b""), 0);
        assert_eq!(count_lines(b"a"), 1);
        assert_eq!(count_lines(b"a\n"), 1);
        assert_eq!(count_lines(b"a\nb"), 2);
        assert_eq!(count_lines(b"\n\n"), 2);
    }

    #[test]
    fn read_prefix_reports_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").expect("write");
        let mut buf = Vec::new();
        assert!(!read_prefix(&path, 10, &mut buf).expect("read"));
        assert_eq!(buf.len(), 10);
        assert!(read_prefix(&path, 4, &mut buf).expect("read"));
        assert_eq!(buf, b"0123");
    }
}
