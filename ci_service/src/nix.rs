//! Calling nix: the settings every invocation gets, the flake attributes CI reads, and a reader
//! of nix's `--log-format internal-json` that turns it into readable log lines with build and
//! copy progress (`building web (1/3)`), since plain `nix build` output says neither how many
//! builds there are nor which one a line belongs to.

use std::collections::HashMap;

use serde::Deserialize;

pub use support::nix::{command, nix_config, strip_ansi};

/// The system whose checks CI builds.
pub const SYSTEM: &str = "x86_64-linux";

/// What `nix build --json` printed is not the list of what it built.
#[derive(Debug, thiserror::Error)]
#[error("nix build --json printed something else than its list")]
pub struct NotABuildList(#[source] serde_json::Error);

/// The output paths `nix build --json` printed, in the order nix printed them (not the order
/// of the arguments).
pub fn built_paths(json: &str) -> Result<Vec<String>, NotABuildList> {
    #[derive(Deserialize)]
    struct Built {
        outputs: HashMap<String, String>,
    }
    let built: Vec<Built> = serde_json::from_str(json).map_err(NotABuildList)?;
    Ok(built
        .into_iter()
        .flat_map(|b| b.outputs.into_values())
        .collect())
}

/// `/nix/store/<hash>-web.drv` → `web`.
pub fn store_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    let name = base.split_once('-').map(|(_, n)| n).unwrap_or(base);
    name.strip_suffix(".drv").unwrap_or(name)
}

// Activity and result types of nix's internal-json logger (libutil/logging.hh).
const ACT_COPY_PATH: u64 = 100;
const ACT_COPY_PATHS: u64 = 103;
const ACT_BUILDS: u64 = 104;
const ACT_BUILD: u64 = 105;
const RES_BUILD_LOG_LINE: u64 = 101;
const RES_PROGRESS: u64 = 105;
/// Verbosity of `lvlInfo`: messages at or below it are what nix prints without `-v`.
const LVL_INFO: u64 = 3;

#[derive(Deserialize)]
struct JsonLine {
    action: String,
    #[serde(default)]
    id: u64,
    #[serde(default, rename = "type")]
    kind: u64,
    #[serde(default)]
    level: u64,
    #[serde(default)]
    text: String,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    fields: Vec<serde_json::Value>,
}

/// Reads nix's internal-json log, one line at a time, and says what a person should see.
#[derive(Debug, Default)]
pub struct LogReader {
    /// Running activities we name lines after: id → (type, short name).
    activities: HashMap<u64, (u64, String)>,
    builds_started: u64,
    builds_done: u64,
    builds_expected: u64,
    copies_started: u64,
    copies_expected: u64,
}

impl LogReader {
    pub fn new() -> LogReader {
        LogReader::default()
    }

    /// Builds that finished, and how many nix expected (0 when it built nothing).
    pub fn builds(&self) -> (u64, u64) {
        (self.builds_done, self.builds_expected.max(self.builds_done))
    }

    /// Paths copied.
    pub fn copies(&self) -> u64 {
        self.copies_started
    }

    /// The readable lines one line of nix's stderr stands for (often none).
    pub fn feed(&mut self, line: &str) -> Vec<String> {
        let Some(json) = line.strip_prefix("@nix ") else {
            return vec![strip_ansi(line)];
        };
        let Ok(entry) = serde_json::from_str::<JsonLine>(json) else {
            return vec![strip_ansi(line)];
        };
        let field_str = |i: usize| entry.fields.get(i).and_then(|v| v.as_str()).unwrap_or("");
        let field_u64 = |i: usize| entry.fields.get(i).and_then(|v| v.as_u64()).unwrap_or(0);
        match entry.action.as_str() {
            "msg" if entry.level <= LVL_INFO => {
                strip_ansi(&entry.msg).lines().map(str::to_string).collect()
            }
            "start" => match entry.kind {
                ACT_BUILD => {
                    let name = store_name(field_str(0)).to_string();
                    self.builds_started += 1;
                    let expected = self.builds_expected.max(self.builds_started);
                    let line = format!("building {name} ({}/{expected})", self.builds_started);
                    self.activities.insert(entry.id, (ACT_BUILD, name));
                    vec![line]
                }
                ACT_COPY_PATH => {
                    let path = field_str(0).to_string();
                    self.copies_started += 1;
                    let expected = self.copies_expected.max(self.copies_started);
                    let line = format!("copying {path} ({}/{expected})", self.copies_started);
                    self.activities
                        .insert(entry.id, (ACT_COPY_PATH, store_name(&path).to_string()));
                    vec![line]
                }
                ACT_BUILDS | ACT_COPY_PATHS => {
                    self.activities
                        .insert(entry.id, (entry.kind, String::new()));
                    Vec::new()
                }
                _ if entry.level <= LVL_INFO && !entry.text.is_empty() => {
                    vec![strip_ansi(&entry.text)]
                }
                _ => Vec::new(),
            },
            "stop" => match self.activities.remove(&entry.id) {
                Some((ACT_BUILD, name)) => {
                    self.builds_done += 1;
                    let expected = self.builds_expected.max(self.builds_done);
                    vec![format!("built {name} ({}/{expected})", self.builds_done)]
                }
                _ => Vec::new(),
            },
            "result" => match (entry.kind, self.activities.get(&entry.id)) {
                (RES_BUILD_LOG_LINE, Some((_, name))) => {
                    vec![format!("{name}> {}", strip_ansi(field_str(0)))]
                }
                (RES_PROGRESS, Some((ACT_BUILDS, _))) => {
                    self.builds_expected = self.builds_expected.max(field_u64(1));
                    Vec::new()
                }
                (RES_PROGRESS, Some((ACT_COPY_PATHS, _))) => {
                    self.copies_expected = self.copies_expected.max(field_u64(1));
                    Vec::new()
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_log_becomes_progress_and_named_lines() {
        // Recorded from `nix build --log-format internal-json` (nix 2.8) building two paths.
        let log = r#"@nix {"action":"start","id":1,"level":4,"text":"copying '/tmp/f'","type":0}
@nix {"action":"stop","id":1}
@nix {"action":"start","id":3,"level":0,"text":"","type":104}
@nix {"action":"result","fields":[0,2,0,0],"id":3,"type":105}
@nix {"action":"start","fields":["/nix/store/ify9689xizk3rnia4y46j92w09fni7hk-a.drv","",1,1],"id":6,"level":3,"text":"building '/nix/store/ify9689xizk3rnia4y46j92w09fni7hk-a.drv'","type":105}
@nix {"action":"result","fields":["building3 a"],"id":6,"type":101}
@nix {"action":"stop","id":6}
@nix {"action":"start","fields":["/nix/store/hhdgcf67vccibzay7zq38rrp0q062bw4-b.drv","",1,1],"id":7,"level":3,"text":"building '/nix/store/hhdgcf67vccibzay7zq38rrp0q062bw4-b.drv'","type":105}
@nix {"action":"msg","level":0,"msg":"\u001b[31;1merror:\u001b[0m builder for '/nix/store/hhdgcf67vccibzay7zq38rrp0q062bw4-b.drv' failed with exit code 3"}
plain line"#;
        let mut reader = LogReader::new();
        let out: Vec<String> = log.lines().flat_map(|l| reader.feed(l)).collect();
        assert_eq!(
            out,
            [
                "building a (1/2)",
                "a> building3 a",
                "built a (1/2)",
                "building b (2/2)",
                "error: builder for '/nix/store/hhdgcf67vccibzay7zq38rrp0q062bw4-b.drv' failed with exit code 3",
                "plain line",
            ]
        );
        assert_eq!(reader.builds(), (1, 2));
    }

    #[test]
    fn copies_are_counted() {
        let log = r#"@nix {"action":"start","id":2,"level":0,"text":"","type":103}
@nix {"action":"result","fields":[0,1,0,0],"id":2,"type":105}
@nix {"action":"start","fields":["/nix/store/jv52k5hmzpy37ny6sbwls7qlygrd65ik-web","local","http://c"],"id":4,"level":3,"text":"copying path","type":100}
@nix {"action":"stop","id":4}"#;
        let mut reader = LogReader::new();
        let out: Vec<String> = log.lines().flat_map(|l| reader.feed(l)).collect();
        assert_eq!(
            out,
            ["copying /nix/store/jv52k5hmzpy37ny6sbwls7qlygrd65ik-web (1/1)"]
        );
        assert_eq!(reader.copies(), 1);
    }

    #[test]
    fn names_and_paths() {
        assert_eq!(
            store_name("/nix/store/ify9689xizk3rnia4y46j92w09fni7hk-web-1.0.drv"),
            "web-1.0"
        );
        let json = r#"[{"drvPath":"/nix/store/a.drv","outputs":{"out":"/nix/store/x-a"}}]"#;
        assert_eq!(built_paths(json).expect("parse"), ["/nix/store/x-a"]);
        assert!(built_paths("garbage").is_err());
    }
}
