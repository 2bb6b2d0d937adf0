//! What the worker reads from `/proc` and `/sys`: process identity and usage, host totals.
//!
//! A pid alone does not identify a process across worker restarts (pids are reused), so every
//! process the worker starts is recorded as a [`ProcRef`]: pid plus the start time the kernel
//! reports in `/proc/<pid>/stat`. Two processes never share both.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Linux reports process times in USER_HZ, which is 100 on every architecture the kernel ABI
/// guarantees for userspace (`sysconf(_SC_CLK_TCK)`), so no libc call is needed.
pub const CLOCK_TICKS_PER_SEC: u64 = 100;

/// A process the worker started, identified beyond pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot at which the process started.
    pub start_time: u64,
}

impl ProcRef {
    /// Reads the start time of a live pid.
    pub fn of(pid: u32) -> io::Result<ProcRef> {
        let stat = ProcStat::read(pid)?;
        Ok(ProcRef {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether this very process still runs: same start time, and not a zombie waiting for a
    /// parent that will never reap it (orphans of a killed worker may end up like that).
    pub fn is_alive(&self) -> bool {
        match ProcStat::read(self.pid) {
            Ok(stat) => stat.start_time == self.start_time && !matches!(stat.state, 'Z' | 'X'),
            Err(_) => false,
        }
    }
}

/// The fields of `/proc/<pid>/stat` the worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub pgrp: i32,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    pub start_time: u64,
    pub rss_pages: u64,
}

impl ProcStat {
    pub fn read(pid: u32) -> io::Result<ProcStat> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        ProcStat::parse(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected /proc/{pid}/stat format"),
            )
        })
    }

    /// The command name (field 2) may contain spaces and parentheses, so fields are counted
    /// from the last `)`.
    pub fn parse(text: &str) -> Option<ProcStat> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state); field n is at index n - 3.
        let field = |n: usize| fields.get(n - 3).copied();
        let num = |n: usize| field(n).and_then(|f| f.parse::<u64>().ok());
        Some(ProcStat {
            state: field(3)?.chars().next()?,
            pgrp: field(5)?.parse().ok()?,
            cpu_ticks: num(14)? + num(15)?,
            start_time: num(22)?,
            rss_pages: num(24)?,
        })
    }
}

/// Resident memory of a process in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Seconds since boot, from `/proc/uptime`.
pub fn uptime_secs() -> Option<f64> {
    fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How long a process has been running, in milliseconds.
pub fn process_age_ms(start_time: u64) -> Option<u64> {
    let now = uptime_secs()?;
    let started = start_time as f64 / CLOCK_TICKS_PER_SEC as f64;
    Some(((now - started).max(0.0) * 1000.0) as u64)
}

/// CPUs this worker may use: the affinity mask if readable, else `/proc/cpuinfo`.
pub fn cpu_count() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Host memory as `(total, available)` bytes from `/proc/meminfo`.
pub fn meminfo() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// Aggregate CPU time from the first line of `/proc/stat` as `(busy, total)` jiffies.
pub fn cpu_times() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// One-minute load average.
pub fn load_average() -> Option<f32> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Free bytes for unprivileged users on the file system holding `path`.
pub fn disk_free(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The host name, as the default worker id.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parses_names_with_spaces_and_parens() {
        let line = "4242 (my (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 \
                    123456 1000000 250 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let stat = ProcStat::parse(line).expect("parses");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.pgrp, 4242);
        assert_eq!(stat.cpu_ticks, 10);
        assert_eq!(stat.start_time, 123456);
        assert_eq!(stat.rss_pages, 250);
        assert!(ProcStat::parse("garbage").is_none());
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = ProcRef::of(std::process::id()).expect("own stat");
        assert!(me.is_alive());
        let reused = ProcRef {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.is_alive(), "pid reuse must not look alive");
        assert!(rss_bytes(me.pid).unwrap_or(0) > 0);
    }
}
