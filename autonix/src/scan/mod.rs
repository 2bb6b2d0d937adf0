//! Walking a repository: one parallel pass that classifies every file, keeps the text of the
//! few files detection needs (manifests, lockfile headers, CI configs, Dockerfiles) and, when
//! asked ([`ScanOptions::count_lines`]), counts the lines of source files.
//!
//! The walk respects `.gitignore`/`.ignore` even outside a git checkout, skips vendored and
//! generated trees, and never follows symbolic links: following them could leave the
//! repository (a link to `/` would make a CI service read the host) and is how loops happen.
//! Only regular files are opened — a FIFO would block a reader forever — and at most
//! [`ScanOptions::max_read_bytes`] of each is read. Files that cannot be read are recorded
//! and the scan goes on.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ignore::{DirEntry, ParallelVisitor, ParallelVisitorBuilder, WalkBuilder, WalkState};
use rustix::fs::{Mode, OFlags};

pub mod languages;
pub mod manifests;

use crate::model::{Language, ScanStats};

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

/// How much of an extension-less file is read to look for a shebang line.
const SHEBANG_SNIFF_BYTES: usize = 256;

/// A worker's read buffer to begin with: larger than nearly every source file, so one
/// `read` takes a whole file.
const FIRST_READ_BYTES: usize = 64 * 1024;

/// How many problem paths are listed in [`ScanStats`]; the counts are always complete.
const LISTED_PROBLEMS: usize = 20;

/// Settings for one scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Bytes read per file at most.
    pub max_read_bytes: usize,
    /// Walker threads; 0 picks one per available core.
    pub threads: usize,
    /// Count the lines of every source file. Off by default: nothing autonix decides
    /// depends on line counts, and reading every source file to count them was most of a
    /// scan's time (3.4× a bare walk; see the `scan` benchmark). Without it languages are
    /// still found by name and shebang, and only the files detection needs are read.
    pub count_lines: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            max_read_bytes: DEFAULT_MAX_READ_BYTES,
            threads: 0,
            count_lines: false,
        }
    }
}

/// One regular file the walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Path relative to the scanned root, `/`-separated.
    pub path: String,
    pub language: Option<Language>,
    /// Newline count of the part that was read (source files, when lines are counted).
    pub lines: u64,
    pub binary: bool,
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
    /// Kept texts that were cut off at the read cap, sorted: they may not parse.
    pub truncated_texts: Vec<String>,
    /// How many bytes of one file the scan reads at most.
    pub read_cap: usize,
    /// Whether [`FileRecord::lines`] were counted ([`ScanOptions::count_lines`]).
    pub lines_counted: bool,
    pub stats: ScanStats,
}

impl Inventory {
    pub fn text(&self, path: &str) -> Option<&str> {
        self.texts.get(path).map(String::as_str)
    }

    /// Whether the kept text of `path` is only the first [`Inventory::read_cap`] bytes.
    pub fn is_truncated(&self, path: &str) -> bool {
        self.truncated_texts
            .binary_search_by(|p| p.as_str().cmp(path))
            .is_ok()
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
    // The walk reports an unreadable root as one problem among its files and finds
    // nothing; that would read as an empty repository.
    std::fs::read_dir(root).map_err(|source| ScanError::Root {
        path: root.to_path_buf(),
        source,
    })?;
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
    let mut truncated_texts = Vec::new();
    let mut stats = ScanStats::default();
    let mut unreadable = Vec::new();
    let parts = match Arc::try_unwrap(collector.results) {
        Ok(mutex) => mutex.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(shared) => shared.lock().map(|v| v.clone()).unwrap_or_default(),
    };
    for part in parts {
        files.extend(part.files);
        texts.extend(part.texts);
        truncated_texts.extend(part.truncated_texts);
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
    truncated_texts.sort();
    Ok(Inventory {
        root: root.to_path_buf(),
        files,
        texts,
        skipped_dirs,
        truncated_texts,
        read_cap: collector.max_read,
        lines_counted: options.count_lines,
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
    truncated_texts: Vec<String>,
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
            buf: vec![0; FIRST_READ_BYTES],
            dir: None,
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
    /// The directory of the last file opened, held open so that the next file in it is
    /// opened by name alone; see [`Visitor::open`].
    dir: Option<(PathBuf, OwnedFd)>,
    part: Part,
    results: Arc<Mutex<Vec<Part>>>,
}

impl Drop for Visitor {
    fn drop(&mut self) {
        let mut part = std::mem::take(&mut self.part);
        // Sorted here, on the walker threads in parallel, the parts need only merging on
        // the thread that waits for the walk (the stable sort there finds the runs).
        part.files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
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
            SHEBANG_SNIFF_BYTES
        } else {
            self.max_read
        };
        let read = self.open(entry.path()).and_then(|mut file| {
            let end = if keep_text {
                End::Confirmed
            } else {
                End::ShortRead
            };
            let mut filled = fill(&mut file, &mut self.buf, 0, limit, end)?;
            let head = &self.buf[..filled.min(limit).min(BINARY_SNIFF_BYTES)];
            if by_name.is_none() && memchr::memchr(0, head).is_none() {
                record.language = languages::by_shebang(head);
                if record.language.is_some() && limit < self.max_read && self.count_lines {
                    // A script found by its shebang: read on from where the sniff stopped
                    // to count its lines, unless the sniff already took all of it.
                    if filled > limit {
                        filled = fill(&mut file, &mut self.buf, filled, self.max_read, end)?;
                    }
                    return Ok((filled, self.max_read));
                }
            }
            Ok((filled, limit))
        });
        match read {
            Ok((filled, limit)) => {
                let bytes = &self.buf[..filled.min(limit)];
                let head = &bytes[..bytes.len().min(BINARY_SNIFF_BYTES)];
                record.binary = memchr::memchr(0, head).is_some();
                if record.binary {
                    self.part.stats.binary_files += 1;
                    record.language = None;
                } else {
                    // Only a read up to the cap is a look at the whole file; the shebang
                    // sniff of an extension-less file never meant to be one.
                    let truncated = filled > limit && limit == self.max_read;
                    if truncated {
                        self.part.stats.truncated_files += 1;
                    }
                    if record.language.is_some() && self.count_lines {
                        record.lines = count_lines(bytes);
                    }
                    if keep_text {
                        if truncated {
                            self.part.truncated_texts.push(rel.clone());
                        }
                        let text = String::from_utf8_lossy(bytes).into_owned();
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

impl Visitor {
    /// Opens a regular file the walk found, for reading.
    ///
    /// `open` was a third of a scan's time, and opening by full path makes the kernel look
    /// up every directory on the way again for each file. The walker hands a thread runs
    /// of files from one directory, so that directory is held open and its files are
    /// opened by name with `openat`. `O_NOFOLLOW` and `O_NONBLOCK` keep the promises the file type checked
    /// before made, even if the file is swapped meanwhile: a symbolic link put in its
    /// place is refused rather than followed, and a FIFO does not block the scan.
    fn open(&mut self, path: &Path) -> io::Result<File> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return File::open(path);
        };
        let cached = self.dir.as_ref().is_some_and(|(dir, _)| {
            dir.as_os_str().as_encoded_bytes() == parent.as_os_str().as_encoded_bytes()
        });
        if !cached {
            // `O_PATH` is enough to resolve names against and needs no read permission.
            // A file directly under a relative root "" has the parent "".
            let dir = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            let fd = rustix::fs::open(
                dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            self.dir = Some((parent.to_path_buf(), fd));
        }
        let Some((_, dir)) = &self.dir else {
            return File::open(path);
        };
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }
}

/// How [`fill`] decides that a file has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Only a `read` returning 0 ends the file: for text detection parses, which must be
    /// whole.
    Confirmed,
    /// A `read` returning less than asked for ends it too. On local filesystems that is
    /// exactly the end of a regular file, and it saves one of the four system calls a
    /// file costs (open, read, read, close). Used where a file is only sniffed or its lines counted,
    /// so a filesystem that returns short reads (FUSE `direct_io`) can at worst make a
    /// line count low, never make detection read half a manifest.
    ShortRead,
}

/// Reads `file` into `buf` from offset `filled` on, until the end of the file or until one
/// byte past `limit` (which tells a file of exactly `limit` bytes from a longer one).
/// Returns how many bytes of `buf` now hold the file: more than `limit` means it has more.
///
/// `buf` belongs to one walker thread and is reused for every file it reads: its length is
/// how much of it is initialised, grown when a file needs more and never cleared. Zeroing
/// a fresh 64 KiB for each file was a sixth of a scan's time (see the `scan` benchmark).
/// Most source files are small: one `read` into the buffer returns all of it; `read_to_end`
/// would add an `fstat` and more reads.
fn fill(
    file: &mut File,
    buf: &mut Vec<u8>,
    mut filled: usize,
    limit: usize,
    end: End,
) -> io::Result<usize> {
    let want = limit.saturating_add(1);
    while filled < want {
        if filled == buf.len() {
            let grow = buf.len().saturating_mul(2).clamp(FIRST_READ_BYTES, want);
            buf.resize(grow, 0);
        }
        let stop = buf.len().min(want);
        match file.read(&mut buf[filled..stop]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if end == End::ShortRead && filled < stop {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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
    // The walker builds every path by joining names onto `root`, so the root is a byte
    // prefix; `Path::strip_prefix` would re-parse both into components for each file.
    let bytes = path.as_os_str().as_encoded_bytes();
    let prefix = root.as_os_str().as_encoded_bytes();
    if let Some(rest) = bytes.strip_prefix(prefix) {
        if rest.first() == Some(&b'/') || prefix.ends_with(b"/") {
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            return String::from_utf8_lossy(rest).into_owned();
        }
    }
    // Unix paths are already `/`-separated: the stripped path is the answer as it is.
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let cases = [
            ("/r", "/r/a/b.rs", "a/b.rs"),
            ("/r/", "/r/a/b.rs", "a/b.rs"),
            ("r", "r/a", "a"),
            ("/r", "/rx/a", "/rx/a"),
            ("/r/.", "/r/./a", "a"),
        ];
        for (root, path, want) in cases {
            assert_eq!(
                relative(Path::new(root), Path::new(path)),
                want,
                "{root} {path}"
            );
        }
    }

    #[test]
    fn line_counting() {
        assert_eq!(count_lines(b""), 0);
        assert_eq!(count_lines(b"a"), 1);
        assert_eq!(count_lines(b"a\n"), 1);
        assert_eq!(count_lines(b"a\nb"), 2);
        assert_eq!(count_lines(b"\n\n"), 2);
    }

    #[test]
    fn fill_reports_truncation_and_reads_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").expect("write");
        // A buffer holding an earlier, longer file: only the filled part counts.
        let mut buf = vec![b'x'; 16];
        let mut file = File::open(&path).expect("open");
        assert_eq!(
            fill(&mut file, &mut buf, 0, 10, End::Confirmed).expect("read"),
            10
        );
        assert_eq!(&buf[..10], b"0123456789");

        let mut file = File::open(&path).expect("open");
        let filled = fill(&mut file, &mut buf, 0, 4, End::Confirmed).expect("read");
        assert_eq!(filled, 5, "one byte past the limit says the file has more");
        assert_eq!(
            fill(&mut file, &mut buf, filled, 100, End::ShortRead).expect("read"),
            10
        );
        assert_eq!(&buf[..10], b"0123456789");

        // Growing past the first buffer keeps what was read.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &big).expect("write");
        let mut buf = vec![0; 8];
        let mut file = File::open(&path).expect("open");
        assert_eq!(
            fill(&mut file, &mut buf, 0, 1 << 20, End::ShortRead).expect("read"),
            big.len()
        );
        assert_eq!(&buf[..big.len()], &big[..]);
    }
}
