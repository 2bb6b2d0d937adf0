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
//! Release lines are those of the nixpkgs the generated flake pins ([`NIXPKGS_BRANCH`]);
//! nixpkgs ships one patch release per line, so a pin of `18.17.0` is served by 18.20.x and
//! the generated flake says so.

use std::fmt;

/// The nixpkgs branch generated flakes pin; the tables below describe it.
pub const NIXPKGS_BRANCH: &str = "nixos-24.11";

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// The version nixpkgs ships on this line.
    pub version: Version,
    /// The attribute that selects it.
    pub attr: &'static str,
}

const fn line(major: u64, minor: u64, patch: u64, attr: &'static str) -> Line {
    Line {
        version: Version::new(major, minor, patch),
        attr,
    }
}

/// What nixpkgs provides for one tool.
#[derive(Debug, Clone, Copy)]
pub struct Catalog {
    pub lines: &'static [Line],
    /// How many version parts name a line (node: 1 for `20`; python: 2 for `3.12`).
    pub line_parts: usize,
    /// Index of nixpkgs' default line in `lines`.
    pub default: usize,
}

impl Catalog {
    pub fn default_line(&self) -> Line {
        self.lines[self.default]
    }

    /// The line a pin selects.
    pub fn line_for(&self, pin: &Partial) -> Option<Line> {
        let parts = pin.parts();
        self.lines.iter().copied().find(|l| {
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

/// Node.js lines in nixos-24.11.
pub const NODE: Catalog = Catalog {
    lines: &[
        line(18, 20, 5, "nodejs_18"),
        line(20, 18, 1, "nodejs_20"),
        line(22, 11, 0, "nodejs_22"),
        line(23, 2, 0, "nodejs_23"),
    ],
    line_parts: 1,
    default: 1,
};

/// CPython lines in nixos-24.11.
pub const PYTHON: Catalog = Catalog {
    lines: &[
        line(3, 9, 20, "python39"),
        line(3, 10, 15, "python310"),
        line(3, 11, 10, "python311"),
        line(3, 12, 7, "python312"),
        line(3, 13, 0, "python313"),
    ],
    line_parts: 2,
    default: 3,
};

/// Go lines in nixos-24.11; the attribute is the matching `buildGoModule` variant's suffix.
pub const GO: Catalog = Catalog {
    lines: &[line(1, 22, 9, "go_1_22"), line(1, 23, 3, "go_1_23")],
    line_parts: 2,
    default: 1,
};

pub const RUBY: Catalog = Catalog {
    lines: &[
        line(3, 1, 6, "ruby_3_1"),
        line(3, 2, 6, "ruby_3_2"),
        line(3, 3, 6, "ruby_3_3"),
    ],
    line_parts: 2,
    default: 2,
};

pub const PHP: Catalog = Catalog {
    lines: &[
        line(8, 1, 31, "php81"),
        line(8, 2, 26, "php82"),
        line(8, 3, 14, "php83"),
        line(8, 4, 1, "php84"),
    ],
    line_parts: 2,
    default: 2,
};

pub const JAVA: Catalog = Catalog {
    lines: &[
        line(8, 0, 432, "jdk8"),
        line(11, 0, 25, "jdk11"),
        line(17, 0, 13, "jdk17"),
        line(21, 0, 5, "jdk21"),
        line(23, 0, 1, "jdk23"),
    ],
    line_parts: 1,
    default: 3,
};

pub const ELIXIR: Catalog = Catalog {
    lines: &[
        line(1, 14, 5, "elixir_1_14"),
        line(1, 15, 8, "elixir_1_15"),
        line(1, 16, 3, "elixir_1_16"),
        line(1, 17, 3, "elixir_1_17"),
    ],
    line_parts: 2,
    default: 2,
};

pub const ZIG: Catalog = Catalog {
    lines: &[
        line(0, 11, 0, "zig_0_11"),
        line(0, 12, 1, "zig_0_12"),
        line(0, 13, 0, "zig_0_13"),
    ],
    line_parts: 2,
    default: 2,
};

/// The rustc of nixpkgs' `rustPlatform`; newer or pinned toolchains come from rust-overlay.
pub const NIXPKGS_RUSTC: Version = Version::new(1, 82, 0);

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
        let pin = Partial::parse("18.17.0").expect("pin");
        assert_eq!(NODE.line_for(&pin).map(|l| l.attr), Some("nodejs_18"));
        assert_eq!(NODE.line_for(&Partial::parse("14").expect("pin")), None);
        let py = Partial::parse("3.11").expect("pin");
        assert_eq!(PYTHON.line_for(&py).map(|l| l.attr), Some("python311"));
        // A pin naming only the major of a two-part line picks the first of that major;
        // resolution treats such a pin as a range instead (see detect::toolchains).
        assert_eq!(NODE.describe(), "18, 20, 22, 23");
        assert_eq!(PYTHON.describe(), "3.9, 3.10, 3.11, 3.12, 3.13");
    }
}
