//! What garbage collection keeps: a pure function of the reference graph, the pins and the
//! paths' ages, so that the rule can be read (and tested) apart from the deleting.
//!
//! The rule: keep every pinned path, every path used (uploaded or downloaded) within the
//! retention window, and everything those reference, transitively. The kept set is closed
//! under references, so every narinfo that survives still has its whole closure.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// The hashes to keep: paths last used after `cutoff` (so a zero retention keeps only what is
/// pinned), pinned paths, and their closures.
pub fn live_set<'a>(
    ages: impl IntoIterator<Item = (&'a str, i64)>,
    refs: &'a [(String, String)],
    pins: &'a [String],
    cutoff: i64,
) -> HashSet<&'a str> {
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for (from, to) in refs {
        edges.entry(from.as_str()).or_default().push(to.as_str());
    }
    let mut stack: Vec<&str> = pins.iter().map(String::as_str).collect();
    stack.extend(
        ages.into_iter()
            .filter(|(_, last_used)| *last_used > cutoff)
            .map(|(hash, _)| hash),
    );
    let mut live = HashSet::new();
    while let Some(hash) = stack.pop() {
        if live.insert(hash) {
            stack.extend(edges.get(hash).into_iter().flatten().copied());
        }
    }
    live
}

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration: write e.g. 30d, 12h, 15m or 90s")]
    NotANumber(String),
    #[error("{0:?} has no known unit: write e.g. 30d, 12h, 15m or 90s")]
    Unit(String),
}

/// Parses a duration such as `30d`, `12h`, `15m`, `90s` or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| DurationError::NotANumber(s.to_string()))?;
    let seconds = match unit {
        "" if n == 0 => 0,
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "w" => n * 7 * 86_400,
        _ => return Err(DurationError::Unit(s.to_string())),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn keeps_closures_of_pins_and_recent_paths() {
        // app -> lib -> libc, tool -> libc, old -> oldlib, self-reference on lib.
        let graph = refs(&[
            ("app", "lib"),
            ("lib", "libc"),
            ("lib", "lib"),
            ("tool", "libc"),
            ("old", "oldlib"),
        ]);
        let ages = [
            ("app", 10),
            ("lib", 10),
            ("libc", 10),
            ("tool", 100),
            ("old", 10),
            ("oldlib", 10),
            ("stray", 10),
        ];
        let table: &[(&[&str], i64, &[&str])] = &[
            // pins, cutoff, expected live set
            (&[], 50, &["tool", "libc"]),
            (&["app"], 50, &["app", "lib", "libc", "tool"]),
            (
                &["app", "old"],
                200,
                &["app", "lib", "libc", "old", "oldlib"],
            ),
            (
                &[],
                0,
                &["app", "lib", "libc", "tool", "old", "oldlib", "stray"],
            ),
            (&[], 200, &[]),
        ];
        for (pins, cutoff, expected) in table {
            let pins: Vec<String> = pins.iter().map(|p| p.to_string()).collect();
            let mut got: Vec<&str> = live_set(ages, &graph, &pins, *cutoff).into_iter().collect();
            got.sort();
            let mut expected = expected.to_vec();
            expected.sort();
            assert_eq!(got, expected, "pins {pins:?}, cutoff {cutoff}");
        }
    }

    #[test]
    fn durations() {
        for (text, secs) in [
            ("0", 0),
            ("90s", 90),
            ("15m", 900),
            ("12h", 43_200),
            ("30d", 2_592_000),
            ("2w", 1_209_600),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in ["", "d", "10", "10y", "-1d", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
