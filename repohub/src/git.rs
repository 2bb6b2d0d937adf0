//! Reading the bare repositories pcr-ci keeps: commits of a branch, a file at a commit, a
//! commit's tree extracted for autonix. Only `git` and `tar` are run, with fixed arguments;
//! commit ids are checked to be hex before they reach a command line.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run {0}")]
    Spawn(&'static str, #[source] std::io::Error),
    #[error("`git {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("`{0}` is not a commit id")]
    BadCommit(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Commit {
    pub sha: String,
    pub author: String,
    pub time_ms: u64,
    pub subject: String,
}

pub fn is_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn git(bare: &Path, args: &[&str]) -> Result<std::process::Output, GitError> {
    Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| GitError::Spawn("git", e))
}

/// The newest `limit` commits of `branch`; empty when the branch does not exist yet (nothing
/// was pushed) or the repository is not there.
pub fn commits(bare: &Path, branch: &str, limit: usize) -> Result<Vec<Commit>, GitError> {
    if !bare.join("HEAD").exists() {
        return Ok(Vec::new());
    }
    let rev = format!("refs/heads/{branch}");
    let n = format!("-n{limit}");
    let out = git(
        bare,
        &["log", &n, "--format=%H%x1f%an%x1f%at%x1f%s%x1e", &rev, "--"],
    )?;
    if !out.status.success() {
        // An unborn branch is not an error: the repository is simply empty.
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("unknown revision") || stderr.contains("bad revision") {
            return Ok(Vec::new());
        }
        return Err(GitError::Failed {
            args: format!("log {rev}"),
            stderr: stderr.trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split('\x1e')
        .filter_map(|rec| {
            let mut f = rec.trim_start_matches('\n').split('\x1f');
            let sha = f.next()?.to_string();
            if !is_commit_id(&sha) {
                return None;
            }
            Some(Commit {
                sha,
                author: f.next()?.to_string(),
                time_ms: f.next()?.parse::<u64>().ok()? * 1000,
                subject: f.next().unwrap_or("").trim_end().to_string(),
            })
        })
        .collect())
}

/// The file at `path` in `commit`, if it exists and is text.
pub fn show_file(bare: &Path, commit: &str, path: &str) -> Result<Option<String>, GitError> {
    if !is_commit_id(commit) {
        return Err(GitError::BadCommit(commit.to_string()));
    }
    let out = git(bare, &["show", &format!("{commit}:{path}")])?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(String::from_utf8(out.stdout).ok())
}

/// Writes the tree of `commit` into `dest` (which must exist).
pub fn extract(bare: &Path, commit: &str, dest: &Path) -> Result<(), GitError> {
    if !is_commit_id(commit) {
        return Err(GitError::BadCommit(commit.to_string()));
    }
    let mut archive = Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(["archive", "--format=tar", commit])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| GitError::Spawn("git", e))?;
    let Some(stdout) = archive.stdout.take() else {
        return Err(GitError::Spawn(
            "git",
            std::io::Error::other("no stdout pipe"),
        ));
    };
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .stdin(stdout)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| GitError::Spawn("tar", e))?;
    let git_out = archive
        .wait_with_output()
        .map_err(|e| GitError::Spawn("git", e))?;
    if !git_out.status.success() {
        return Err(GitError::Failed {
            args: format!("archive {commit}"),
            stderr: String::from_utf8_lossy(&git_out.stderr).trim().to_string(),
        });
    }
    if !tar.status.success() {
        return Err(GitError::Failed {
            args: format!("archive {commit} | tar -x"),
            stderr: String::from_utf8_lossy(&tar.stderr).trim().to_string(),
        });
    }
    Ok(())
}
