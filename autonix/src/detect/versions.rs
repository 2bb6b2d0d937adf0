//! Tool versions: parsing what files ask for, and choosing what nixpkgs can deliver.
//!
//! # Precedence
//!
//! Hints are collected in a fixed order per tool, most specific first; the first *pin* wins.
//! Ranges never select a version, they only constrain it.
//!
//! | tool   | pins, in precedence order | ranges |
//! |--------|---------------------------|--------|
//! | rust   | `rust-toolchain.toml` `channel`, `rust-toolchain`, `.tool-versions` | `Cargo.toml` `rust-version` (enforced by cargo) |
//! | node   | `.nvmrc`, `.node-version`, `.tool-versions`, `package.json` `volta.node` | `package.json` `engines.node` (npm only warns) |
//! | python | `.python-version`, `.tool-versions`, `runtime.txt`, `Pipfile` `python_version` | `requires-python`, Poetry's `python` dependency (enforced by pip) |
//! | go     | `go.mod` `toolchain`, `.tool-versions` | `go.mod` `go` (enforced by go) |
//! | ruby   | `.ruby-version`, `.tool-versions` | `Gemfile` `ruby "x"` or `ruby file: ".ruby-version"` (enforced by bundler) |
//! | php    | `.tool-versions` | `composer.json` `require.php` (enforced by composer) |
//! | java   | `.java-version`, `.tool-versions` | Maven/Gradle release level (enforced by javac) |
//! | elixir | `.tool-versions` | `mix.exs` `elixir:` (enforced by mix) |
//! | zig    | `.tool-versions` | `build.zig.zon` `minimum_zig_version` (enforced by zig) |
//!
//! Version managers' files come first because they are what developers actually run;
//! manifest fields describe what the package tolerates.
//!
//! # Resolution
//!
//! * Two pins selecting different release lines: a warning naming both; the first wins.
//! * A pin outside a range: an error when the tool enforces the range (the build would fail),
//!   a warning when it only advises.
//! * No pin: nixpkgs' default line if every range allows it, else the newest line that does.
//! * Nothing nixpkgs provides satisfies the hints: an error listing what was asked and what
//!   exists. Autonix never substitutes a different release line silently.
//!
//! Release lines are those of a nixpkgs branch ([`branches`], tables kept as data in
//! `data/nixpkgs.json`); the analysis pins the oldest branch that satisfies every project.
//! nixpkgs ships one patch release per line, so a pin of `18.17.0` is served by 18.20.x and
//! the generated flake says so.

use std::fmt;

/// A release version; missing parts are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    pub const fn new(major: u64, minor: u64, patch: u64) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version as written, possibly partial: `18`, `3.11`, `1.75.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial(Vec<u64>);

impl Partial {
    /// Parses `v18`, `18`, `3.11.4`, `go1.22.1`, `python-3.11.4`, `3.12.0rc1` (pre-release
    /// suffixes are dropped: nixpkgs ships releases only).
    pub fn parse(text: &str) -> Option<Partial> {
        let t = text.trim();
        let t = t
            .trim_start_matches("python-")
            .trim_start_matches("ruby-")
            .trim_start_matches("go")
            .trim_start_matches(['v', 'V']);
        let mut parts = Vec::new();
        for piece in t.split('.') {
            let digits: String = piece.chars().take_while(|c| c.is_ascii_digit()).collect();
            if digits.is_empty() {
                break;
            }
            parts.push(digits.parse().ok()?);
            if digits.len() != piece.len() {
                break;
            }
            if parts.len() == 3 {
                break;
            }
        }
        if parts.is_empty() {
            None
        } else {
            Some(Partial(parts))
        }
    }

    pub fn parts(&self) -> &[u64] {
        &self.0
    }

    /// The smallest full version this partial version names.
    pub fn floor(&self) -> Version {
        Version::new(
            self.0.first().copied().unwrap_or(0),
            self.0.get(1).copied().unwrap_or(0),
            self.0.get(2).copied().unwrap_or(0),
        )
    }

    /// Whether `v` is one of the versions this partial version names (`3.11` names 3.11.x).
    pub fn contains(&self, v: Version) -> bool {
        let full = [v.major, v.minor, v.patch];
        self.0.iter().zip(full).all(|(a, b)| *a == b)
    }

    /// The first version after every version this one names (`3.11` → 3.12.0).
    fn next_after(&self) -> Version {
        let f = self.floor();
        match self.0.len() {
            1 => Version::new(f.major + 1, 0, 0),
            2 => Version::new(f.major, f.minor + 1, 0),
            _ => Version::new(f.major, f.minor, f.patch + 1),
        }
    }
}

impl fmt::Display for Partial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// `=`, `==`, bare version or wildcard: every version the partial one names.
    Eq,
    Ne,
    Ge,
    Gt,
    Le,
    Lt,
    /// npm `^`: same leftmost non-zero part.
    Caret,
    /// npm `~`: same minor if given, else same major.
    Tilde,
    /// PEP 440 `~=` and Ruby/Elixir `~>`: may raise the last given part only.
    Compatible,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    op: Op,
    version: Partial,
}

impl Comparator {
    fn matches(&self, v: Version) -> bool {
        let p = &self.version;
        let floor = p.floor();
        match self.op {
            Op::Eq => p.contains(v),
            Op::Ne => !p.contains(v),
            Op::Ge => v >= floor,
            // npm reading: `>1.2` excludes every 1.2.x, which is also what people mean.
            Op::Gt => v >= p.next_after(),
            Op::Le => v < p.next_after(),
            Op::Lt => v < floor,
            Op::Caret => {
                let upper = match (floor.major, floor.minor, p.parts().len()) {
                    (0, 0, 3) => Version::new(0, 0, floor.patch + 1),
                    (0, 0, 2) => Version::new(0, 1, 0),
                    (0, minor, n) if n >= 2 => Version::new(0, minor + 1, 0),
                    (major, _, _) => Version::new(major + 1, 0, 0),
                };
                v >= floor && v < upper
            }
            Op::Tilde => {
                let upper = if p.parts().len() >= 2 {
                    Version::new(floor.major, floor.minor + 1, 0)
                } else {
                    Version::new(floor.major + 1, 0, 0)
                };
                v >= floor && v < upper
            }
            Op::Compatible => {
                let upper = match p.parts().len() {
                    3 => Version::new(floor.major, floor.minor + 1, 0),
                    _ => Version::new(floor.major + 1, 0, 0),
                };
                v >= floor && v < upper
            }
        }
    }
}

/// A version range: alternatives (`||`) of conjunctions (`,` or spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    alternatives: Vec<Vec<Comparator>>,
}

/// A requirement that is not understood is reported, never ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read version requirement `{0}`")]
pub struct RangeError(pub String);

impl Range {
    /// Parses npm, PEP 440, Cargo, Bundler and Mix style requirements.
    pub fn parse(text: &str) -> Result<Range, RangeError> {
        let err = || RangeError(text.to_string());
        let mut alternatives = Vec::new();
        for alt in text.split("||") {
            let alt = alt.trim();
            let mut comparators = Vec::new();
            if alt.is_empty() || alt == "*" || alt == "x" || alt == "X" {
                alternatives.push(comparators);
                continue;
            }
            // npm hyphen range: `1.2 - 2.3`.
            if let Some((lo, hi)) = alt.split_once(" - ") {
                comparators.push(Comparator {
                    op: Op::Ge,
                    version: Partial::parse(lo).ok_or_else(err)?,
                });
                comparators.push(Comparator {
                    op: Op::Le,
                    version: Partial::parse(hi).ok_or_else(err)?,
                });
                alternatives.push(comparators);
                continue;
            }
            // Glue operators to their versions (`>= 18` → `>=18`), then split.
            let mut glued = String::new();
            let mut pending_op = false;
            for token in alt.split(|c: char| c == ',' || c.is_whitespace()) {
                if token.is_empty() {
                    continue;
                }
                let is_op = token.chars().all(|c| "<>=!~^".contains(c));
                if !glued.is_empty() && !pending_op {
                    glued.push(' ');
                }
                glued.push_str(token);
                pending_op = is_op;
            }
            for token in glued.split(' ') {
                comparators.push(parse_comparator(token).ok_or_else(err)?);
            }
            alternatives.push(comparators);
        }
        Ok(Range { alternatives })
    }

    pub fn matches(&self, v: Version) -> bool {
        self.alternatives
            .iter()
            .any(|all| all.iter().all(|c| c.matches(v)))
    }
}

fn parse_comparator(token: &str) -> Option<Comparator> {
    let ops: [(&str, Op); 11] = [
        ("~>", Op::Compatible),
        ("~=", Op::Compatible),
        ("===", Op::Eq),
        ("==", Op::Eq),
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("!=", Op::Ne),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("^", Op::Caret),
        ("~", Op::Tilde),
    ];
    let (op, rest) = ops
        .into_iter()
        .find_map(|(prefix, op)| token.strip_prefix(prefix).map(|rest| (op, rest)))
        .unwrap_or_else(|| (Op::Eq, token.strip_prefix('=').unwrap_or(token)));
    // Wildcards end a version: `3.11.*`, `18.x`.
    let rest = rest.trim();
    let trimmed: Vec<&str> = rest
        .split('.')
        .take_while(|p| !matches!(*p, "*" | "x" | "X"))
        .collect();
    if trimmed.is_empty() {
        // `*` alone, or `>=*`: anything.
        return Some(Comparator {
            op: Op::Ge,
            version: Partial(vec![0]),
        });
    }
    let version = Partial::parse(&trimmed.join("."))?;
    // A bare major with Cargo semantics (`rust-version = "1.70"`) is handled by callers,
    // which build `>=` ranges themselves.
    Some(Comparator { op, version })
}

/// One release line nixpkgs provides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The version nixpkgs ships on this line.
    pub version: Version,
    /// The attribute that selects it.
    pub attr: String,
}

/// What one nixpkgs branch provides for one tool.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Oldest line first.
    pub lines: Vec<Line>,
    /// How many version parts name a line (node: 1 for `20`; python: 2 for `3.12`).
    pub line_parts: usize,
    /// Index of nixpkgs' default line in `lines`; `None` when the branch has none.
    pub default: Option<usize>,
}

impl Catalog {
    pub fn default_line(&self) -> Option<&Line> {
        self.default.and_then(|i| self.lines.get(i))
    }

    /// The line a pin selects.
    pub fn line_for(&self, pin: &Partial) -> Option<&Line> {
        let parts = pin.parts();
        self.lines.iter().find(|l| {
            let full = [l.version.major, l.version.minor, l.version.patch];
            parts
                .iter()
                .zip(full)
                .take(self.line_parts)
                .all(|(a, b)| *a == b)
                && !parts.is_empty()
        })
    }

    /// The line names, for error messages: `18, 20, 22, 23`.
    pub fn describe(&self) -> String {
        if self.lines.is_empty() {
            return "none".to_string();
        }
        let names: Vec<String> = self
            .lines
            .iter()
            .map(|l| {
                let full = [l.version.major, l.version.minor, l.version.patch];
                full[..self.line_parts]
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .collect();
        names.join(", ")
    }
}

/// A tool autonix resolves against a branch's tables: the name of its table in
/// `data/nixpkgs.json` and how many version parts name one of its release lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Node,
    Python,
    Go,
    Ruby,
    Php,
    Java,
    Elixir,
    Zig,
    Pnpm,
    Postgresql,
    Mysql,
}

impl Table {
    const ALL: [Table; 11] = [
        Table::Node,
        Table::Python,
        Table::Go,
        Table::Ruby,
        Table::Php,
        Table::Java,
        Table::Elixir,
        Table::Zig,
        Table::Pnpm,
        Table::Postgresql,
        Table::Mysql,
    ];

    fn key(self) -> &'static str {
        match self {
            Table::Node => "node",
            Table::Python => "python",
            Table::Go => "go",
            Table::Ruby => "ruby",
            Table::Php => "php",
            Table::Java => "java",
            Table::Elixir => "elixir",
            Table::Zig => "zig",
            Table::Pnpm => "pnpm",
            Table::Postgresql => "postgresql",
            Table::Mysql => "mysql",
        }
    }

    fn line_parts(self) -> usize {
        match self {
            Table::Node | Table::Java | Table::Pnpm | Table::Postgresql => 1,
            _ => 2,
        }
    }
}

/// One nixpkgs branch a generated flake may pin, with what it provides.
#[derive(Debug, Clone)]
pub struct Branch {
    /// `nixos-24.11`, `nixos-unstable`.
    pub name: String,
    /// Where the tables came from and when (see `data/nixpkgs.json`).
    pub source: String,
    /// The rustc of the branch's `rustPlatform`; newer or pinned toolchains come from
    /// rust-overlay.
    pub rustc: Version,
    catalogs: Vec<(Table, Catalog)>,
}

impl Branch {
    pub fn catalog(&self, table: Table) -> &Catalog {
        static EMPTY: Catalog = Catalog {
            lines: Vec::new(),
            line_parts: 1,
            default: None,
        };
        self.catalogs
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(&EMPTY, |(_, c)| c)
    }
}

/// The branches' tables, kept as data so one command refreshes them
/// (`autonix/scripts/update-nixpkgs-tables`); oldest branch first.
const BRANCHES_JSON: &str = include_str!("../../data/nixpkgs.json");

/// Every branch autonix knows, oldest first. autonix pins the oldest that satisfies every
/// project (see [`crate::analysis`]).
pub fn branches() -> &'static [Branch] {
    static BRANCHES: std::sync::OnceLock<Vec<Branch>> = std::sync::OnceLock::new();
    BRANCHES.get_or_init(|| {
        // The file is part of the crate, not input: a unit test parses it, so a broken
        // table fails the tests rather than a user's run.
        parse_branches(BRANCHES_JSON).expect("data/nixpkgs.json is valid (checked by tests)")
    })
}

/// The oldest branch: what a repository without version requirements gets.
pub fn oldest_branch() -> &'static Branch {
    branches()
        .first()
        .expect("data/nixpkgs.json lists a branch (checked by tests)")
}

fn parse_branches(text: &str) -> Result<Vec<Branch>, String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let list = json
        .get("branches")
        .and_then(|b| b.as_array())
        .ok_or("no branches list")?;
    let mut out = Vec::new();
    for b in list {
        let name = b
            .get("branch")
            .and_then(|v| v.as_str())
            .ok_or("a branch without a name")?
            .to_string();
        let field = |key: &str| {
            b.get(key)
                .and_then(|v| v.as_str())
                .ok_or(format!("{name}: no {key}"))
        };
        let source = field("source")?.to_string();
        let rustc = Partial::parse(field("rustc")?)
            .ok_or(format!("{name}: unreadable rustc"))?
            .floor();
        let mut catalogs = Vec::new();
        for table in Table::ALL {
            let Some(t) = b.get("tools").and_then(|t| t.get(table.key())) else {
                continue;
            };
            let mut lines = Vec::new();
            for (attr, version) in t
                .get("lines")
                .and_then(|l| l.as_object())
                .ok_or(format!("{name}: {} has no lines", table.key()))?
            {
                let version = version
                    .as_str()
                    .and_then(Partial::parse)
                    .ok_or(format!("{name}: unreadable version of {attr}"))?
                    .floor();
                lines.push(Line {
                    version,
                    attr: attr.clone(),
                });
            }
            lines.sort_by_key(|l| l.version);
            let default = match t.get("default").and_then(|d| d.as_str()) {
                Some(d) => Some(
                    lines
                        .iter()
                        .position(|l| l.attr == d)
                        .ok_or(format!("{name}: default {d} is not among the lines"))?,
                ),
                None => None,
            };
            catalogs.push((
                table,
                Catalog {
                    lines,
                    line_parts: table.line_parts(),
                    default,
                },
            ));
        }
        out.push(Branch {
            name,
            source,
            rustc,
            catalogs,
        });
    }
    if out.is_empty() {
        return Err("no branches".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Partial::parse(s).expect("version").floor()
    }

    #[test]
    fn partial_versions() {
        let cases = [
            ("18", vec![18]),
            ("v20.1", vec![20, 1]),
            ("3.11.4", vec![3, 11, 4]),
            ("go1.22.1", vec![1, 22, 1]),
            ("python-3.11.4", vec![3, 11, 4]),
            ("3.12.0rc1", vec![3, 12, 0]),
            ("lts/hydrogen", vec![]),
            ("1.75.0-nightly", vec![1, 75, 0]),
        ];
        for (text, want) in cases {
            let got = Partial::parse(text)
                .map(|p| p.parts().to_vec())
                .unwrap_or_default();
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn ranges() {
        let cases = [
            (">=18", "20.1.0", true),
            (">=18", "16.20.0", false),
            (">= 18 < 21", "20.18.1", true),
            (">=18 <21", "22.0.0", false),
            ("^18.17", "18.20.5", true),
            ("^18.17", "20.0.0", false),
            ("~18.17", "18.20.5", false),
            ("18.x", "18.20.5", true),
            ("18 || 20", "20.18.1", true),
            ("16 || 18", "20.18.1", false),
            ("16 - 18", "18.20.5", true),
            (">=3.10,<3.13", "3.12.7", true),
            (">=3.10,<3.13", "3.13.0", false),
            ("~=3.11", "3.13.0", true),
            ("~=3.11.2", "3.12.0", false),
            ("==3.11.*", "3.11.10", true),
            ("!=3.9.*", "3.9.20", false),
            (">3.8", "3.8.20", false),
            (">3.8", "3.9.0", true),
            ("<=3.11", "3.11.10", true),
            ("~> 1.15", "1.17.3", true),
            ("~> 1.15", "2.0.0", false),
            ("~> 1.15.2", "1.16.0", false),
            ("^8.1", "8.3.14", true),
            ("^0.2.3", "0.3.0", false),
            ("*", "1.0.0", true),
            ("", "1.0.0", true),
        ];
        for (range, version, want) in cases {
            let r = Range::parse(range).expect(range);
            assert_eq!(r.matches(v(version)), want, "{range} vs {version}");
        }
    }

    #[test]
    fn unreadable_ranges_are_errors() {
        assert!(Range::parse(">=banana").is_err());
        assert!(Range::parse("lts/*").is_err());
    }

    #[test]
    fn catalog_lines() {
        let b = &branches()[0];
        let (node, python) = (b.catalog(Table::Node), b.catalog(Table::Python));
        let pin = Partial::parse("18.17.0").expect("pin");
        assert_eq!(
            node.line_for(&pin).map(|l| l.attr.as_str()),
            Some("nodejs_18")
        );
        assert_eq!(node.line_for(&Partial::parse("14").expect("pin")), None);
        let py = Partial::parse("3.11").expect("pin");
        assert_eq!(
            python.line_for(&py).map(|l| l.attr.as_str()),
            Some("python311")
        );
        assert_eq!(node.describe(), "18, 20, 22, 23");
        assert_eq!(python.describe(), "3.9, 3.10, 3.11, 3.12, 3.13");
    }

    /// The shipped tables parse, oldest branch first, the branches the README names are
    /// there, and every table has a default among its lines.
    #[test]
    fn branch_tables_are_complete() {
        let names: Vec<&str> = branches().iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "nixos-24.11",
                "nixos-25.05",
                "nixos-25.11",
                "nixos-unstable"
            ]
        );
        for b in branches() {
            assert!(
                !b.source.is_empty(),
                "{}: say where the values came from",
                b.name
            );
            for t in Table::ALL {
                let c = b.catalog(t);
                assert!(!c.lines.is_empty(), "{}: no {} lines", b.name, t.key());
                assert!(
                    c.default_line().is_some(),
                    "{}: no {} default",
                    b.name,
                    t.key()
                );
            }
        }
    }

    #[test]
    fn broken_tables_are_refused() {
        assert!(parse_branches("{}").is_err());
        let bad_default = r#"{"branches":[{"branch":"b","source":"s","rustc":"1.80",
            "tools":{"go":{"default":"go_1_99","lines":{"go_1_22":"1.22.1"}}}}]}"#;
        assert_eq!(
            parse_branches(bad_default).err().as_deref(),
            Some("b: default go_1_99 is not among the lines")
        );
    }
}
