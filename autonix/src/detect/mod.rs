//! Detection: mapping what files say to detections, one module per ecosystem or concern, each
//! a pure function from a project's files ([`Ctx`]) to detections collected in [`Out`]. Uses
//! only the model and the scan's inventory; the analysis above runs it once per project.

pub mod backing;
pub mod ci;
pub mod containers;
pub mod elixir;
pub mod frameworks;
pub mod go;
pub mod java;
pub mod listen;
pub mod native;
pub mod nix;
pub mod node;
pub mod php;
pub mod python;
pub mod ruby;
pub mod rust;
pub mod toolchains;
pub mod unsupported;
pub mod versions;

use std::fmt;

use crate::model::{Detection, Evidence, Facts, Finding};
use crate::scan::{FileRecord, Inventory};

/// One project's view of the inventory.
pub struct Ctx<'a> {
    pub inv: &'a Inventory,
    /// Project root relative to the repository root; empty for the root itself.
    pub dir: String,
    /// Files of this project, excluding those of nested projects.
    pub files: Vec<&'a FileRecord>,
    /// For a JavaScript workspace member: the workspace root's directory (empty for the
    /// repository root), whose lockfile and package manager the member uses.
    pub workspace: Option<String>,
}

impl<'a> Ctx<'a> {
    /// Repository-relative path of `rel`, a path relative to the project root.
    pub fn path(&self, rel: &str) -> String {
        if self.dir.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.dir)
        }
    }

    /// Repository-relative path of `name` in the workspace root of a JavaScript workspace
    /// member; `None` for a project that is no member.
    pub fn workspace_path(&self, name: &str) -> Option<String> {
        self.workspace.as_deref().map(|ws| {
            if ws.is_empty() {
                name.to_string()
            } else {
                format!("{ws}/{name}")
            }
        })
    }

    /// Text of a file relative to the project root, when the scan kept it.
    pub fn text(&self, rel: &str) -> Option<&'a str> {
        self.inv.text(&self.path(rel))
    }

    pub fn has(&self, rel: &str) -> bool {
        self.inv.has_file(&self.path(rel))
    }

    /// Project-relative form of a repository-relative path.
    pub fn local<'p>(&self, path: &'p str) -> &'p str {
        if self.dir.is_empty() {
            return path;
        }
        path.strip_prefix(&self.dir)
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or(path)
    }

    /// The nearest file named `name` in the project root or a directory above it, the way
    /// rustup, nvm, pyenv and asdf look for their version files.
    pub fn find_upward(&self, name: &str) -> Option<(String, &'a str)> {
        let mut dir = self.dir.as_str();
        loop {
            let path = if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            };
            if let Some(text) = self.inv.text(&path) {
                return Some((path, text));
            }
            if dir.is_empty() {
                return None;
            }
            dir = dir.rsplit_once('/').map_or("", |(parent, _)| parent);
        }
    }

    /// Whether a vendored directory was skipped at `rel` (Go's `vendor/`...).
    pub fn skipped_dir(&self, rel: &str) -> bool {
        let path = self.path(rel);
        self.inv.skipped_dirs.binary_search(&path).is_ok()
    }

    /// Files of this project whose project-relative path satisfies `pred`.
    pub fn find<'s>(
        &'s self,
        pred: impl Fn(&str) -> bool + 's,
    ) -> impl Iterator<Item = &'a FileRecord> + 's {
        self.files
            .iter()
            .copied()
            .filter(move |f| pred(self.local(&f.path)))
    }
}

/// What detectors produce for one project.
#[derive(Debug, Default)]
pub struct Out {
    pub detections: Vec<Detection>,
    pub warnings: Vec<Finding>,
    pub errors: Vec<Finding>,
}

impl Out {
    pub fn add(
        &mut self,
        what: impl Into<String>,
        confidence: f32,
        evidence: Vec<Evidence>,
        facts: Facts,
    ) {
        self.detections.push(Detection {
            what: what.into(),
            confidence,
            evidence,
            facts,
        });
    }

    pub fn warn(&mut self, message: impl Into<String>, evidence: Vec<Evidence>) {
        self.warnings.push(Finding {
            message: message.into(),
            evidence,
        });
    }

    pub fn error(&mut self, message: impl Into<String>, evidence: Vec<Evidence>) {
        self.errors.push(Finding {
            message: message.into(),
            evidence,
        });
    }

    pub fn has(&self, pred: impl Fn(&Facts) -> bool) -> bool {
        self.detections.iter().any(|d| pred(&d.facts))
    }
}

/// Evidence pointing at a whole file.
pub fn ev(file: impl Into<String>, reason: impl Into<String>) -> Evidence {
    Evidence {
        file: file.into(),
        line: None,
        reason: reason.into(),
    }
}

/// Evidence pointing at one line of a file.
pub fn ev_line(file: impl Into<String>, line: Option<u32>, reason: impl Into<String>) -> Evidence {
    Evidence {
        file: file.into(),
        line,
        reason: reason.into(),
    }
}

/// The 1-based number of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> Option<u32> {
    text.lines()
        .position(|l| l.contains(needle))
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// The 1-based number of the first line whose trimmed start begins with `prefix`.
pub fn line_starting(text: &str, prefix: &str) -> Option<u32> {
    text.lines()
        .position(|l| l.trim_start().starts_with(prefix))
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// `.tool-versions` (asdf/mise): the first version listed for `tool`, with its line.
pub fn tool_versions<'t>(text: &'t str, names: &[&str]) -> Option<(&'t str, u32)> {
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if let (Some(name), Some(version)) = (words.next(), words.next()) {
            if names.contains(&name) {
                return Some((version, u32::try_from(i + 1).ok()?));
            }
        }
    }
    None
}

/// Why the text of `path` did not parse as `format`: cut off at the read cap (then the
/// parser's complaint is about the cut, not the file), or the parser's own message.
pub fn parse_failure(
    inv: &Inventory,
    path: &str,
    format: &str,
    detail: impl fmt::Display,
) -> String {
    if inv.is_truncated(path) {
        format!(
            "{path} is larger than the {} KiB autonix reads of a file, so it was cut off and cannot be read as {format}",
            inv.read_cap / 1024
        )
    } else {
        format!("{path} is not valid {format} ({detail})")
    }
}

/// Whether a project-relative file lies in a directory of examples or test data, or one
/// the Go tool ignores (`_x`, `.x`, `testdata`): programs there are not the project's own.
pub fn in_example_or_test_dir(rel: &str) -> bool {
    let Some((dir, _)) = rel.rsplit_once('/') else {
        return false;
    };
    dir.split('/').any(|part| {
        matches!(
            part,
            "example" | "examples" | "testdata" | "test" | "tests" | "fixtures" | "benches"
        ) || part.starts_with('_')
            || part.starts_with('.')
    })
}
