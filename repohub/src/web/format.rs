//! Small, pure formatting helpers shared by the pages: times, durations, sizes, short ids.

/// `2026-11-22 20:55:03` (UTC) from milliseconds since the epoch.
pub fn time(ms: u64) -> String {
    if ms == 0 {
        return "—".into();
    }
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian, UTC).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2h 05m`, `3m 07s`, `4.2s`, `350ms`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, ms / 60_000 % 60)
    }
}

/// `3 min ago` relative to `now`.
pub fn ago(ms: u64, now: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    let d = now.saturating_sub(ms) / 1000;
    match d {
        0..=4 => "just now".into(),
        5..=59 => format!("{d}s ago"),
        60..=3599 => format!("{} min ago", d / 60),
        3600..=86_399 => format!("{} h ago", d / 3600),
        _ => format!("{} d ago", d / 86_400),
    }
}

/// `512 MiB`, `1.5 GiB` from mebibytes.
pub fn mib(mb: i64) -> String {
    if mb.abs() >= 10 * 1024 {
        format!("{} GiB", mb / 1024)
    } else if mb.abs() >= 1024 {
        format!("{:.1} GiB", mb as f64 / 1024.0)
    } else {
        format!("{mb} MiB")
    }
}

pub fn bytes(b: u64) -> String {
    mib((b / (1024 * 1024)) as i64)
}

/// First 8 characters of a commit id.
pub fn short(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}

/// The name part of a store path (`/nix/store/<hash>-web` → `web`), with the hash's first
/// characters, for tables where the full path does not fit.
pub fn store_name(path: &str) -> String {
    let base = path.strip_prefix("/nix/store/").unwrap_or(path);
    match base.split_once('-') {
        Some((hash, name)) => format!("{}…-{name}", hash.get(..6).unwrap_or(hash)),
        None => base.to_string(),
    }
}

/// Percent-encodes everything but unreserved characters (for `?next=`).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(time(0), "—");
        assert_eq!(time(1_795_899_303_000), "2026-11-28 20:55:03");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(duration(350), "350ms");
        assert_eq!(duration(4_200), "4.2s");
        assert_eq!(duration(187_000), "3m 07s");
        assert_eq!(duration(7_500_000), "2h 05m");
        assert_eq!(ago(1000, 1000 + 120_000), "2 min ago");
        assert_eq!(mib(512), "512 MiB");
        assert_eq!(mib(1536), "1.5 GiB");
        assert_eq!(short("0123456789abcdef"), "01234567");
        assert_eq!(
            store_name("/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web"),
            "0c9hj2…-web"
        );
    }
}
