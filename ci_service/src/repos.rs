//! The bare git repositories pcr-ci serves, and the git commands a pipeline needs.
//!
//! A repository lives at `<state>/repos/<name>.git`; `git push <that path> main` is a deploy.
//! Its `post-receive` hook runs `pcr-ci notify`, which tells the running pcr-ci about the
//! pushed refs over its local HTTP endpoint. Repositories with a remote are mirrors: the
//! webhook and the poller fetch into them before a run.

use std::path::{Path, PathBuf};

use crate::process::{self, Stream};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("repository name `{0}` must be 1-100 characters of a-z, A-Z, 0-9, `.`, `_` and `-`, not starting with `.` or `-`")]
    Name(String),
    #[error("remote `{0}` is not one pcr-ci fetches from: give an https://, http://, ssh://, git:// or file:// URL, user@host:path, or an absolute path")]
    Remote(String),
    #[error("branch `{0}` is not a branch name git accepts (letters, digits, `/`, `.`, `_`, `-`; not starting with `-` or `.`)")]
    Branch(String),
    #[error("`{0}` is not a commit id (40 or 64 hex digits)")]
    Commit(String),
    #[error("cannot run git")]
    Spawn(#[source] std::io::Error),
    #[error("`git {args}` failed ({status}): {output}")]
    Failed {
        args: String,
        status: String,
        output: String,
    },
    #[error("cannot write the post-receive hook {path}")]
    Hook {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, GitError>;

pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && !name.starts_with('-')
        && !name.ends_with(".git")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(GitError::Name(name.to_string()))
    }
}

/// Transports git may use for a remote: git itself refuses every other one (`ext::`, which
/// runs a command, among them), whatever a stored remote says.
const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";

/// A remote pcr-ci may fetch from: a URL with an allowed scheme, scp-like `user@host:path`,
/// or an absolute path — never anything git could read as an option or a command.
pub fn validate_remote(remote: &str) -> Result<()> {
    let bad = || Err(GitError::Remote(remote.to_string()));
    if remote.is_empty()
        || remote.len() > 1024
        || remote.starts_with('-')
        || remote.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return bad();
    }
    if let Some((scheme, rest)) = remote.split_once("://") {
        let allowed = ["https", "http", "ssh", "git", "file"];
        return if allowed.contains(&scheme) && !rest.is_empty() && !rest.starts_with('-') {
            Ok(())
        } else {
            bad()
        };
    }
    if remote.starts_with('/') {
        return Ok(());
    }
    // scp-like: [user@]host:path, where the host is a plain name (no `::` transport helper).
    match remote.split_once(':') {
        Some((host, path))
            if !host.is_empty()
                && !path.is_empty()
                && !path.starts_with(':')
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"@._-[]".contains(&b)) =>
        {
            Ok(())
        }
        _ => bad(),
    }
}

/// A deploy branch name: what `git check-ref-format --branch` accepts, conservatively.
pub fn validate_branch(branch: &str) -> Result<()> {
    let ok = !branch.is_empty()
        && branch.len() <= 200
        && !branch.starts_with(['-', '.', '/'])
        && !branch.ends_with(['/', '.'])
        && !branch.ends_with(".lock")
        && !branch.contains("..")
        && !branch.contains("//")
        && !branch.contains("@{")
        && branch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(GitError::Branch(branch.to_string()))
    }
}

fn validate_commit(sha: &str) -> Result<()> {
    if is_commit_id(sha) {
        Ok(())
    } else {
        Err(GitError::Commit(sha.to_string()))
    }
}

pub use schema::ci::bare_path;

/// Runs git with `args`; answers its stdout, trimmed. `on_line` sees stderr (and stdout when
/// `capture` is false) as it comes.
pub async fn git(
    dir: Option<&Path>,
    args: &[&str],
    capture: bool,
    mut on_line: impl FnMut(&str),
) -> Result<String> {
    let mut cmd = process::command("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    // Never ask for credentials on a terminal nobody watches; never use a transport that runs
    // commands.
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS);
    let mut output = Vec::new();
    let done = process::run(cmd, capture, |stream, line| {
        if stream == Stream::Stderr {
            output.push(line.to_string());
        }
        on_line(line);
    })
    .await
    .map_err(GitError::Spawn)?;
    if !done.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            status: process::describe(done.status),
            output: output.join("\n"),
        });
    }
    Ok(done.stdout.trim().to_string())
}

/// Creates the bare repository `name` (deploy branch `branch`) if it does not exist, and
/// (re)installs its hook. Answers whether it was created.
pub async fn create_bare(
    repos_dir: &Path,
    name: &str,
    branch: &str,
    hook: &HookTarget,
) -> Result<bool> {
    validate_name(name)?;
    let path = bare_path(repos_dir, name);
    let created = !path.join("HEAD").exists();
    if created {
        std::fs::create_dir_all(repos_dir).map_err(|source| GitError::Hook {
            path: repos_dir.display().to_string(),
            source,
        })?;
        let path_arg = path.display().to_string();
        git(
            None,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch",
                branch,
                &path_arg,
            ],
            true,
            |_| {},
        )
        .await?;
    }
    install_hook(&path, name, hook)?;
    Ok(created)
}

/// What a hook needs to reach pcr-ci.
#[derive(Debug, Clone)]
pub struct HookTarget {
    pub exe: PathBuf,
    pub state_dir: PathBuf,
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Writes `hooks/post-receive`. Rewritten on every start so a moved pcr-ci binary or state
/// directory never leaves a hook pointing at nothing.
pub fn install_hook(bare: &Path, name: &str, target: &HookTarget) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let hooks = bare.join("hooks");
    let path = hooks.join("post-receive");
    let err = |source| GitError::Hook {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&hooks).map_err(err)?;
    let script = format!(
        "#!/bin/sh\n\
         # Installed by pcr-ci: reports this push to it (rewritten whenever pcr-ci starts).\n\
         exec {} notify --state-dir {} --repo {}\n",
        shell_quote(&target.exe.display().to_string()),
        shell_quote(&target.state_dir.display().to_string()),
        shell_quote(name),
    );
    let tmp = hooks.join("post-receive.tmp");
    std::fs::write(&tmp, script).map_err(err)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(())
}

/// The commit `refs/heads/<branch>` points at, if the branch exists.
pub async fn branch_head(bare: &Path, branch: &str) -> Result<Option<String>> {
    let spec = format!("refs/heads/{branch}^{{commit}}");
    match git(
        Some(bare),
        &["rev-parse", "--verify", "--quiet", &spec],
        true,
        |_| {},
    )
    .await
    {
        Ok(sha) if !sha.is_empty() => Ok(Some(sha)),
        Ok(_) | Err(GitError::Failed { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn has_commit(bare: &Path, sha: &str) -> Result<bool> {
    validate_commit(sha)?;
    let spec = format!("{sha}^{{commit}}");
    match git(Some(bare), &["cat-file", "-e", &spec], true, |_| {}).await {
        Ok(_) => Ok(true),
        Err(GitError::Failed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether commit `older` is an ancestor of `newer` (and not the same commit).
pub async fn is_behind(bare: &Path, older: &str, newer: &str) -> Result<bool> {
    validate_commit(older)?;
    validate_commit(newer)?;
    if older == newer {
        return Ok(false);
    }
    match git(
        Some(bare),
        &["merge-base", "--is-ancestor", older, newer],
        true,
        |_| {},
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(GitError::Failed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Mirrors the remote's branches into the bare repository.
pub async fn fetch(bare: &Path, remote: &str, on_line: impl FnMut(&str)) -> Result<()> {
    validate_remote(remote)?;
    git(
        Some(bare),
        &[
            "fetch",
            "--prune",
            "--no-tags",
            "--",
            remote,
            "+refs/heads/*:refs/heads/*",
        ],
        false,
        on_line,
    )
    .await
    .map(|_| ())
}

/// The commit a remote's branch points at, without fetching anything.
pub async fn ls_remote(remote: &str, branch: &str) -> Result<Option<String>> {
    validate_remote(remote)?;
    validate_branch(branch)?;
    let refname = format!("refs/heads/{branch}");
    let out = git(None, &["ls-remote", "--", remote, &refname], true, |_| {}).await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .find(|(_, r)| *r == refname)
        .map(|(sha, _)| sha.to_string()))
}

/// A working tree of `sha` at `dest`, sharing the bare repository's objects (no copy).
pub async fn checkout(
    bare: &Path,
    sha: &str,
    dest: &Path,
    mut on_line: impl FnMut(&str),
) -> Result<String> {
    validate_commit(sha)?;
    let (bare_arg, dest_arg) = (bare.display().to_string(), dest.display().to_string());
    git(
        None,
        &[
            "clone",
            "--quiet",
            "--shared",
            "--no-checkout",
            "--",
            &bare_arg,
            &dest_arg,
        ],
        false,
        &mut on_line,
    )
    .await?;
    git(
        Some(dest),
        &["checkout", "--quiet", "--detach", sha],
        false,
        &mut on_line,
    )
    .await?;
    git(Some(dest), &["log", "-1", "--format=%h %s"], true, |_| {}).await
}

/// Whether `s` looks like a full commit id (40 hex digits; sha256 repositories use 64).
pub fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The zero id git uses for "no commit" (a created or deleted ref).
pub fn is_zero(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_git_could_read_as_options_or_commands_are_refused() {
        for ok in [
            "https://git.example.org/team/cluster.git",
            "http://127.0.0.1:3001/git/cluster.git",
            "ssh://git@host:2222/cluster.git",
            "git://host/cluster.git",
            "file:///srv/git/cluster.git",
            "/srv/git/cluster.git",
            "git@host:team/cluster.git",
            "host:cluster.git",
        ] {
            assert!(validate_remote(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "--upload-pack=touch /tmp/x",
            "ext::sh -c touch% /tmp/x",
            "fd::17",
            "relative/path",
            "ftp://host/x",
            "https://host/x y",
            "https://host/x\n",
            "ssh://-oProxyCommand=x/y",
            "host::path",
            ":path",
        ] {
            assert!(validate_remote(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn branch_names() {
        for ok in ["main", "release/1.2", "feature_x-y"] {
            assert!(validate_branch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "--upload-pack=x",
            ".hidden",
            "a..b",
            "a/",
            "x.lock",
            "a b",
            "a@{1}",
        ] {
            assert!(validate_branch(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        for ok in ["cluster", "my.cluster-2", "A_b"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "a b", "x.git", &"a".repeat(101)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(!is_commit_id("main"));
        assert!(is_zero(&"0".repeat(40)));
    }

    #[tokio::test]
    async fn bare_repository_takes_a_push_and_checks_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hook = HookTarget {
            exe: PathBuf::from("/bin/true"),
            state_dir: dir.path().to_path_buf(),
        };
        let repos = dir.path().join("repos");
        assert!(create_bare(&repos, "c", "main", &hook)
            .await
            .expect("create"));
        assert!(!create_bare(&repos, "c", "main", &hook)
            .await
            .expect("again"));
        let bare = bare_path(&repos, "c");
        assert!(bare.join("hooks/post-receive").exists());
        assert_eq!(branch_head(&bare, "main").await.expect("head"), None);

        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(src.join("f"), "x").expect("write");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .current_dir(&src)
                .output()
                .expect("git");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["init", "-q", "-b", "main"]);
        run(&["add", "f"]);
        run(&["commit", "-qm", "first"]);
        run(&["push", "-q", bare.to_str().expect("utf8"), "main"]);
        let sha = branch_head(&bare, "main")
            .await
            .expect("head")
            .expect("a commit");
        assert!(is_commit_id(&sha));
        assert!(has_commit(&bare, &sha).await.expect("has"));
        assert!(!has_commit(&bare, &"1".repeat(40)).await.expect("has"));
        assert_eq!(
            ls_remote(bare.to_str().expect("utf8"), "main")
                .await
                .expect("ls-remote"),
            Some(sha.clone())
        );
        let work = dir.path().join("work");
        let subject = checkout(&bare, &sha, &work, |_| {})
            .await
            .expect("checkout");
        assert!(subject.ends_with(" first"), "{subject}");
        assert_eq!(std::fs::read_to_string(work.join("f")).expect("read"), "x");
    }
}
