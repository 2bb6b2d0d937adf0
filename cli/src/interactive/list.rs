//! One list's state, apart from what it lists: the filter typed after `/`, the fields of a row
//! it matches, and the selection and scroll position over the rows that pass.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// What a filter sees of a row: named columns (matched by `name=value` and by plain words)
/// and labels (matched by `key=value` when no column has that name).
pub struct RowFields<'a> {
    pub fields: Vec<(&'static str, Cow<'a, str>)>,
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl RowFields<'_> {
    /// `Some(true)` when a column (or, if no column has that name, a label) named `key` has
    /// `value` (both compared without case); `None` when the row has nothing named `key`.
    pub fn equals(&self, key: &str, value: &str) -> Option<bool> {
        let mut named = self.fields.iter().filter(|(k, _)| *k == key).peekable();
        if named.peek().is_some() {
            return Some(named.any(|(_, v)| v.eq_ignore_ascii_case(value)));
        }
        let labels = self.labels?;
        labels
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.eq_ignore_ascii_case(value))
    }
}

/// A filter typed after `/`: words are ANDed; `key=value` and `key!=value` match a column
/// named `key` or, when the row has no such column, a label; other words match any column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    raw: String,
    terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Text(String),
    Eq(String, String),
    Ne(String, String),
}

impl Filter {
    pub fn parse(raw: &str) -> Filter {
        let terms = raw
            .split_whitespace()
            .map(|w| {
                let w = w.to_lowercase();
                if let Some((k, v)) = w.split_once("!=") {
                    Term::Ne(k.to_string(), v.to_string())
                } else if let Some((k, v)) = w.split_once('=') {
                    Term::Eq(k.to_string(), v.to_string())
                } else {
                    Term::Text(w)
                }
            })
            .collect();
        Filter {
            raw: raw.trim().to_string(),
            terms,
        }
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether a row with these columns and labels passes.
    pub fn matches(&self, row: &RowFields<'_>) -> bool {
        self.terms.iter().all(|t| match t {
            Term::Text(w) => {
                row.fields.iter().any(|(_, v)| contains_lower(v, w))
                    || row.labels.is_some_and(|l| {
                        l.iter()
                            .any(|(k, v)| contains_lower(k, w) || contains_lower(v, w))
                    })
            }
            Term::Eq(k, v) => row.equals(k, v) == Some(true),
            Term::Ne(k, v) => row.equals(k, v) != Some(true),
        })
    }
}

fn contains_lower(haystack: &str, needle_lower: &str) -> bool {
    if haystack.is_ascii() {
        // No allocation for the common case: ASCII names, phases and closures.
        haystack
            .as_bytes()
            .windows(needle_lower.len().max(1))
            .any(|w| w.eq_ignore_ascii_case(needle_lower.as_bytes()))
            || needle_lower.is_empty()
    } else {
        haystack.to_lowercase().contains(needle_lower)
    }
}

/// Selection, scroll position, filter and the rows that pass it, for one list.
#[derive(Debug, Clone, Default)]
pub struct ListState {
    pub selected: usize,
    pub offset: usize,
    pub filter: Filter,
    /// Indexes into the view's source data, in display order, after the filter.
    pub rows: Vec<usize>,
    /// How many rows the source has before filtering.
    pub total: usize,
}

impl ListState {
    /// Moves `offset` so the selection is inside a window of `height` rows, and keeps the
    /// window full when the list is long enough.
    pub fn scroll_to_fit(&mut self, height: usize) {
        if height == 0 {
            return;
        }
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(self.rows.len().saturating_sub(height));
    }

    pub(super) fn select(&mut self, index: usize) {
        self.selected = index.min(self.rows.len().saturating_sub(1));
    }

    pub(super) fn move_by(&mut self, delta: isize) {
        let target = (self.selected as isize + delta).max(0) as usize;
        self.select(target);
    }

    pub fn selected_row(&self) -> Option<usize> {
        self.rows.get(self.selected).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_terms() {
        let f = Filter::parse("  Web  phase=Running tier!=db ");
        assert_eq!(f.raw(), "Web  phase=Running tier!=db");
        assert_eq!(
            f.terms,
            [
                Term::Text("web".into()),
                Term::Eq("phase".into(), "running".into()),
                Term::Ne("tier".into(), "db".into())
            ]
        );
        assert!(Filter::parse("   ").is_empty());
        assert!(contains_lower("Web-0", "web"));
        assert!(!contains_lower("db", "web"));
        assert!(contains_lower("Ünïcode", "ünï"));
    }
}
