//! Plain aligned tables for terminal output, and the small formatting helpers they use.

use std::fmt::Write;

/// Columns separated by two spaces, each as wide as its widest cell. The last column is not
/// padded, so long notes do not push trailing spaces.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths = vec![0usize; n];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(n) {
                if i + 1 == n {
                    line.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `/nix/store/abc…-web-1.0` → `abc4567-web-1.0`: enough of the hash to tell closures apart.
pub fn short_path(path: &str) -> String {
    match path.strip_prefix("/nix/store/") {
        Some(base) if base.len() > 33 => format!("{}-{}", &base[..7], &base[33..]),
        _ => path.to_string(),
    }
}

pub fn ago(ms: u64, now_ms: u64) -> String {
    if ms == 0 {
        return "never".to_string();
    }
    let s = now_ms.saturating_sub(ms) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn aligns_and_trims() {
        let mut t = Table::new(&["A", "LONGER", "NOTE"]);
        t.row(vec!["xx".into(), "y".into(), "".into()]);
        t.row(vec!["x".into(), "yyyyyyy".into(), "z".into()]);
        assert_eq!(t.render(), "A   LONGER   NOTE\nxx  y\nx   yyyyyyy  z\n");
    }

    #[test]
    fn short_paths() {
        assert_eq!(
            short_path("/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web-1.0"),
            "0c9hj2b-web-1.0"
        );
        assert_eq!(short_path(""), "");
    }
}
