//! Autonix on a commit: extract the commit's tree, analyse it, generate a flake, and keep the
//! result per commit so the repository page can show what changed in the generated flake
//! from one commit to the next.

use std::path::Path;

use crate::db::{FlakeRecord, Repository};
use crate::{git, AppState};

/// Analyses `commit` of the bare repository. Never fails: a scan or generation problem is
/// recorded as the record's `error`, which is what the page shows.
pub fn analyse_commit(bare: &Path, repo_name: &str, commit: &str) -> FlakeRecord {
    let mut record = FlakeRecord {
        commit: commit.to_string(),
        analysis_json: None,
        flake: None,
        error: None,
        own_flake: None,
        generated_ms: crate::now_ms(),
    };
    match git::show_file(bare, commit, "flake.nix") {
        Ok(own) => record.own_flake = own,
        Err(e) => record.error = Some(e.to_string()),
    }
    let result = (|| -> Result<(), String> {
        let tmp =
            tempfile::tempdir().map_err(|e| format!("cannot make a scratch directory: {e}"))?;
        // autonix names the flake after the directory it scans.
        let root = tmp.path().join(repo_name);
        std::fs::create_dir(&root).map_err(|e| format!("cannot make a scratch directory: {e}"))?;
        git::extract(bare, commit, &root).map_err(|e| e.to_string())?;
        let analysis = autonix::analyze(&root, &autonix::ScanOptions::default())
            .map_err(|e| format!("autonix could not scan the commit: {e}"))?;
        record.analysis_json = serde_json::to_string(&analysis).ok();
        match autonix::generate_flake(&analysis) {
            Ok(flake) => record.flake = Some(flake),
            Err(e) => record.error = Some(e.to_string()),
        }
        Ok(())
    })();
    if let Err(e) = result {
        record.error = Some(e);
    }
    record
}

#[derive(Debug, thiserror::Error)]
pub enum FlakeError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("the analysis of the commit stopped")]
    Analysis(#[source] tokio::task::JoinError),
}

/// The stored analysis of `commit`, computing and storing it first if needed.
pub async fn for_commit(
    app: &AppState,
    repo: &Repository,
    commit: &str,
) -> Result<FlakeRecord, FlakeError> {
    if let Some(r) = app.db.flake(repo.id, commit)? {
        return Ok(r);
    }
    let _guard = app.analysis_lock.lock().await;
    // Someone else may have analysed it while we waited.
    if let Some(r) = app.db.flake(repo.id, commit)? {
        return Ok(r);
    }
    let bare = app.ci.bare_path(&repo.ci_name);
    let name = repo.name.clone();
    let sha = commit.to_string();
    let record = tokio::task::spawn_blocking(move || analyse_commit(&bare, &name, &sha))
        .await
        .map_err(FlakeError::Analysis)?;
    app.db.save_flake(repo.id, &record)?;
    Ok(record)
}

/// A unified diff from `old` to `new`, or `None` when they are equal.
pub fn diff(old: &str, new: &str, old_name: &str, new_name: &str) -> Option<String> {
    if old == new {
        return None;
    }
    Some(
        similar::TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(3)
            .header(old_name, new_name)
            .to_string(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines_only_when_changed() {
        assert!(diff("a\nb\n", "a\nb\n", "x", "y").is_none());
        let d = diff("a\nb\n", "a\nc\n", "old", "new").unwrap();
        assert!(d.contains("--- old") && d.contains("+++ new"), "{d}");
        assert!(d.contains("-b") && d.contains("+c"), "{d}");
    }
}
