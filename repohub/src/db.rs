//! Repohub's own records in one SQLite file (WAL): users, sessions, API tokens, projects,
//! memberships, repositories and the flakes autonix generated per commit.
//!
//! Pipelines and deployments are not copied here: they are read live from pcr-ci and the
//! control plane, which own them. Every write that checks something first (a unique name, the
//! last owner of a project) does the check and the write in one transaction, so a refused
//! request leaves nothing behind.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};
use support::now_ms;
use support::sqlite::{self, MigrateError, Synchronous};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the repohub database {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the repohub database {path} was written by a newer repohub (schema {found}, this one knows {known})")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("repohub database query failed")]
    Sql(#[from] rusqlite::Error),
    #[error("the repohub database holds a value this repohub does not know: {0}")]
    Corrupt(String),
    /// A request that conflicts with what is stored; the sentence says what to do.
    #[error("{0}")]
    Conflict(String),
}

pub type Result<T> = std::result::Result<T, DbError>;

/// What a member may do in a project. Ordered: a higher role can do everything a lower one can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees everything in the project.
    Viewer,
    /// Also adds repositories.
    Member,
    /// Also manages members and removes repositories.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "member" => Some(Role::Member),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
}

/// Where a repository's commits come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    /// A bare repository pcr-ci serves; pushing to it runs a pipeline.
    Hosted,
    /// A remote pcr-ci mirrors and polls.
    External,
}

impl RepoKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RepoKind::Hosted => "hosted",
            RepoKind::External => "external",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub kind: RepoKind,
    /// The remote of an external repository.
    pub url: Option<String>,
    pub branch: String,
    /// The repository's name in pcr-ci: `<project>.<repository>`.
    pub ci_name: String,
    /// Unguessable key of the public status badge URL.
    #[serde(skip)]
    pub badge_key: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub created_ms: u64,
    pub last_used_ms: Option<u64>,
}

/// A signed-in browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    pub csrf: String,
}

/// What autonix made of one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlakeRecord {
    pub commit: String,
    /// `autonix::Analysis` as JSON, or `None` when the scan itself failed.
    #[serde(skip)]
    pub analysis_json: Option<String>,
    /// The generated flake, when autonix could write one.
    pub flake: Option<String>,
    /// Why there is no flake (autonix refused, or the scan failed).
    pub error: Option<String>,
    /// The repository's own `flake.nix` at this commit.
    pub own_flake: Option<String>,
    pub generated_ms: u64,
}

/// Each entry moves the schema one version forward; `PRAGMA user_version` says how many ran.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    last_used_ms INTEGER,
    UNIQUE (user_id, name)
);
CREATE TABLE projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE members (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE TABLE repositories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT,
    branch TEXT NOT NULL,
    ci_name TEXT NOT NULL UNIQUE,
    badge_key TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE flakes (
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    commit_sha TEXT NOT NULL,
    analysis_json TEXT,
    flake TEXT,
    error TEXT,
    own_flake TEXT,
    generated_ms INTEGER NOT NULL,
    PRIMARY KEY (repository_id, commit_sha)
);
CREATE INDEX flakes_by_time ON flakes (repository_id, generated_ms);
"#];

pub struct Db {
    conn: Mutex<Connection>,
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        is_admin: r.get(2)?,
        created_ms: r.get::<_, i64>(3)? as u64,
    })
}

fn project_row(r: &Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        created_ms: r.get::<_, i64>(3)? as u64,
    })
}

const REPO_COLUMNS: &str =
    "id, project_id, name, kind, url, branch, ci_name, badge_key, created_ms";

fn repo_row(r: &Row<'_>) -> rusqlite::Result<(Repository, String)> {
    let kind: String = r.get(3)?;
    Ok((
        Repository {
            id: r.get(0)?,
            project_id: r.get(1)?,
            name: r.get(2)?,
            kind: RepoKind::Hosted,
            url: r.get(4)?,
            branch: r.get(5)?,
            ci_name: r.get(6)?,
            badge_key: r.get(7)?,
            created_ms: r.get::<_, i64>(8)? as u64,
        },
        kind,
    ))
}

fn repo_kind((mut repo, kind): (Repository, String)) -> Result<Repository> {
    repo.kind = match kind.as_str() {
        "hosted" => RepoKind::Hosted,
        "external" => RepoKind::External,
        other => {
            return Err(DbError::Corrupt(format!(
                "`{other}` is not a repository kind"
            )))
        }
    };
    Ok(repo)
}

fn role(s: String) -> Result<Role> {
    Role::parse(&s).ok_or_else(|| DbError::Corrupt(format!("`{s}` is not a role")))
}

/// The hash a token is stored under: tokens are random, so one round of SHA-256 is enough and
/// a stolen database holds nothing that opens a session.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random secret, hex.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let open_err = |source| DbError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = sqlite::open(path, Synchronous::Normal).map_err(open_err)?;
        sqlite::migrate(&mut conn, MIGRATIONS).map_err(|e| match e {
            MigrateError::TooNew { found, known } => DbError::TooNew {
                path: path.display().to_string(),
                found,
                known,
            },
            MigrateError::Sql(e) => DbError::Sql(e),
        })?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back on drop), so the connection stays usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- users ----

    pub fn user_count(&self) -> Result<i64> {
        Ok(self
            .lock()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
    }

    /// Creates a user. With `only_if_first`, refuses when any user exists (first-run setup
    /// must not be replayable to make a second admin).
    pub fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        is_admin: bool,
        only_if_first: bool,
    ) -> Result<User> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if only_if_first {
            let n: i64 = tx.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
            if n > 0 {
                return Err(DbError::Conflict(
                    "repohub is already set up; sign in instead".into(),
                ));
            }
        }
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM users WHERE username = ?1)",
            [username],
            |r| r.get(0),
        )?;
        if exists {
            return Err(DbError::Conflict(format!(
                "a user named {username} already exists; choose another name"
            )));
        }
        let created = now_ms();
        tx.execute(
            "INSERT INTO users (username, password_hash, is_admin, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![username, password_hash, is_admin, created as i64],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(User {
            id,
            username: username.to_string(),
            is_admin,
            created_ms: created,
        })
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT id, username, is_admin, created_ms FROM users ORDER BY username",
        )?;
        let rows = st.query_map([], user_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT id, username, is_admin, created_ms FROM users WHERE username = ?1",
                [username],
                user_row,
            )
            .optional()?)
    }

    /// The user and their password hash, for sign-in.
    pub fn credentials(&self, username: &str) -> Result<Option<(User, String)>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT id, username, is_admin, created_ms, password_hash FROM users WHERE username = ?1",
                [username],
                |r| Ok((user_row(r)?, r.get(4)?)),
            )
            .optional()?)
    }

    pub fn password_hash(&self, user_id: i64) -> Result<Option<String>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT password_hash FROM users WHERE id = ?1",
                [user_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Sets a new password and signs the user out everywhere else.
    pub fn set_password(&self, user_id: i64, hash: &str, keep_session: &str) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE users SET password_hash = ?1 WHERE id = ?2",
            params![hash, user_id],
        )?;
        tx.execute(
            "DELETE FROM sessions WHERE user_id = ?1 AND token_hash != ?2",
            params![user_id, token_hash(keep_session)],
        )?;
        tx.commit()?;
        Ok(())
    }

    // ---- sessions and tokens ----

    /// Starts a session; answers the cookie value and the session's CSRF token.
    pub fn create_session(&self, user_id: i64, lifetime_ms: u64) -> Result<(String, String)> {
        let token = random_token();
        let csrf = random_token();
        let now = now_ms();
        let conn = self.lock();
        // Expired sessions are removed here rather than by a timer: sign-ins are rare and this
        // keeps the table small without another task.
        conn.execute("DELETE FROM sessions WHERE expires_ms < ?1", [now as i64])?;
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token_hash(&token), user_id, csrf, now as i64, (now + lifetime_ms) as i64],
        )?;
        Ok((token, csrf))
    }

    pub fn session(&self, token: &str) -> Result<Option<Session>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT u.id, u.username, u.is_admin, u.created_ms, s.csrf FROM sessions s
                 JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1 AND s.expires_ms > ?2",
                params![token_hash(token), now_ms() as i64],
                |r| {
                    Ok(Session {
                        user: user_row(r)?,
                        csrf: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn delete_session(&self, token: &str) -> Result<()> {
        self.lock().execute(
            "DELETE FROM sessions WHERE token_hash = ?1",
            [token_hash(token)],
        )?;
        Ok(())
    }

    /// Creates an API token; the secret is answered once and only its hash is kept.
    pub fn create_token(&self, user_id: i64, name: &str) -> Result<(ApiToken, String)> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM api_tokens WHERE user_id = ?1 AND name = ?2)",
            params![user_id, name],
            |r| r.get(0),
        )?;
        if exists {
            return Err(DbError::Conflict(format!(
                "you already have a token named {name}; choose another name or revoke it first"
            )));
        }
        let secret = format!("pcr_{}", random_token());
        let created = now_ms();
        tx.execute(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![user_id, name, token_hash(&secret), created as i64],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok((
            ApiToken {
                id,
                name: name.to_string(),
                created_ms: created,
                last_used_ms: None,
            },
            secret,
        ))
    }

    pub fn tokens(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT id, name, created_ms, last_used_ms FROM api_tokens WHERE user_id = ?1 ORDER BY name",
        )?;
        let rows = st.query_map([user_id], |r| {
            Ok(ApiToken {
                id: r.get(0)?,
                name: r.get(1)?,
                created_ms: r.get::<_, i64>(2)? as u64,
                last_used_ms: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Revokes one of the user's tokens; false when there is no such token of theirs.
    pub fn revoke_token(&self, user_id: i64, id: i64) -> Result<bool> {
        Ok(self.lock().execute(
            "DELETE FROM api_tokens WHERE id = ?1 AND user_id = ?2",
            params![id, user_id],
        )? > 0)
    }

    /// The user a bearer token belongs to; records the use.
    pub fn user_by_token(&self, token: &str) -> Result<Option<User>> {
        let conn = self.lock();
        let hash = token_hash(token);
        let user = conn
            .query_row(
                "SELECT u.id, u.username, u.is_admin, u.created_ms FROM api_tokens t
                 JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1",
                [&hash],
                user_row,
            )
            .optional()?;
        if user.is_some() {
            // Minute resolution is plenty for "last used", and it keeps a busy script from
            // turning every read into a write.
            conn.execute(
                "UPDATE api_tokens SET last_used_ms = ?1 WHERE token_hash = ?2
                 AND (last_used_ms IS NULL OR last_used_ms < ?1 - 60000)",
                params![now_ms() as i64, hash],
            )?;
        }
        Ok(user)
    }

    // ---- projects and members ----

    /// Creates a project with `owner` as its owner.
    pub fn create_project(&self, name: &str, description: &str, owner: i64) -> Result<Project> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM projects WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )?;
        if exists {
            // Says "taken", not who owns it: the name space is shared, the project is not.
            return Err(DbError::Conflict(format!(
                "the project name {name} is taken; choose another name"
            )));
        }
        let created = now_ms();
        tx.execute(
            "INSERT INTO projects (name, description, created_ms) VALUES (?1, ?2, ?3)",
            params![name, description, created as i64],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO members (project_id, user_id, role) VALUES (?1, ?2, 'owner')",
            params![id, owner],
        )?;
        tx.commit()?;
        Ok(Project {
            id,
            name: name.to_string(),
            description: description.to_string(),
            created_ms: created,
        })
    }

    /// The project and the user's role in it; `None` when it does not exist *or* the user is
    /// not a member — callers answer both the same way.
    pub fn project_for(&self, name: &str, user_id: i64) -> Result<Option<(Project, Role)>> {
        let row = self
            .lock()
            .query_row(
                "SELECT p.id, p.name, p.description, p.created_ms, m.role FROM projects p
                 JOIN members m ON m.project_id = p.id WHERE p.name = ?1 AND m.user_id = ?2",
                params![name, user_id],
                |r| Ok((project_row(r)?, r.get::<_, String>(4)?)),
            )
            .optional()?;
        match row {
            Some((p, r)) => Ok(Some((p, role(r)?))),
            None => Ok(None),
        }
    }

    /// Projects the user is a member of, with their role.
    pub fn projects_of(&self, user_id: i64) -> Result<Vec<(Project, Role)>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT p.id, p.name, p.description, p.created_ms, m.role FROM projects p
             JOIN members m ON m.project_id = p.id WHERE m.user_id = ?1 ORDER BY p.name",
        )?;
        let rows = st.query_map([user_id], |r| Ok((project_row(r)?, r.get::<_, String>(4)?)))?;
        rows.map(|row| {
            let (p, r) = row?;
            Ok((p, role(r)?))
        })
        .collect()
    }

    pub fn members(&self, project_id: i64) -> Result<Vec<Member>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT u.id, u.username, m.role FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.project_id = ?1 ORDER BY u.username",
        )?;
        let rows = st.query_map([project_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?))
        })?;
        rows.map(|row| {
            let (user_id, username, r) = row?;
            Ok(Member {
                user_id,
                username,
                role: role(r)?,
            })
        })
        .collect()
    }

    /// Adds a member or changes their role. Refuses to leave a project without an owner.
    pub fn set_member(&self, project_id: i64, username: &str, new_role: Role) -> Result<Member> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let user_id: Option<i64> = tx
            .query_row(
                "SELECT id FROM users WHERE username = ?1",
                [username],
                |r| r.get(0),
            )
            .optional()?;
        let Some(user_id) = user_id else {
            return Err(DbError::Conflict(format!(
                "there is no user named {username}; an administrator adds users on the Users page"
            )));
        };
        tx.execute(
            "INSERT INTO members (project_id, user_id, role) VALUES (?1, ?2, ?3)
             ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
            params![project_id, user_id, new_role.as_str()],
        )?;
        ensure_owner(&tx)?;
        tx.commit()?;
        Ok(Member {
            user_id,
            username: username.to_string(),
            role: new_role,
        })
    }

    /// Removes a member; false when they were not one. Refuses to remove the last owner.
    pub fn remove_member(&self, project_id: i64, username: &str) -> Result<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "DELETE FROM members WHERE project_id = ?1 AND user_id = (SELECT id FROM users WHERE username = ?2)",
            params![project_id, username],
        )?;
        ensure_owner(&tx)?;
        tx.commit()?;
        Ok(n > 0)
    }

    // ---- repositories ----

    pub fn create_repository(
        &self,
        project: &Project,
        name: &str,
        kind: RepoKind,
        url: Option<&str>,
        branch: &str,
    ) -> Result<Repository> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ci_name = ci_name(&project.name, name);
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM repositories WHERE project_id = ?1 AND name = ?2)
                 OR EXISTS(SELECT 1 FROM repositories WHERE ci_name = ?3)",
            params![project.id, name, ci_name],
            |r| r.get(0),
        )?;
        if exists {
            return Err(DbError::Conflict(format!(
                "project {} already has a repository named {name}; choose another name",
                project.name
            )));
        }
        let created = now_ms();
        let badge_key = random_token();
        tx.execute(
            "INSERT INTO repositories (project_id, name, kind, url, branch, ci_name, badge_key, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![project.id, name, kind.as_str(), url, branch, ci_name, badge_key, created as i64],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Repository {
            id,
            project_id: project.id,
            name: name.to_string(),
            kind,
            url: url.map(str::to_string),
            branch: branch.to_string(),
            ci_name,
            badge_key,
            created_ms: created,
        })
    }

    pub fn repositories(&self, project_id: i64) -> Result<Vec<Repository>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {REPO_COLUMNS} FROM repositories WHERE project_id = ?1 ORDER BY name"
        ))?;
        let rows = st.query_map([project_id], repo_row)?;
        rows.map(|r| repo_kind(r?)).collect()
    }

    pub fn repository(&self, project_id: i64, name: &str) -> Result<Option<Repository>> {
        let row = self
            .lock()
            .query_row(
                &format!(
                    "SELECT {REPO_COLUMNS} FROM repositories WHERE project_id = ?1 AND name = ?2"
                ),
                params![project_id, name],
                repo_row,
            )
            .optional()?;
        row.map(repo_kind).transpose()
    }

    pub fn repository_by_ci_name(&self, ci_name: &str) -> Result<Option<Repository>> {
        let row = self
            .lock()
            .query_row(
                &format!("SELECT {REPO_COLUMNS} FROM repositories WHERE ci_name = ?1"),
                [ci_name],
                repo_row,
            )
            .optional()?;
        row.map(repo_kind).transpose()
    }

    pub fn repository_by_badge(&self, key: &str) -> Result<Option<Repository>> {
        let row = self
            .lock()
            .query_row(
                &format!("SELECT {REPO_COLUMNS} FROM repositories WHERE badge_key = ?1"),
                [key],
                repo_row,
            )
            .optional()?;
        row.map(repo_kind).transpose()
    }

    /// Every repository, by pcr-ci name → (project name, repository name); for labelling
    /// pipelines and generations on pages that span projects.
    pub fn repository_names(&self) -> Result<Vec<(String, i64, String, String)>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT r.ci_name, p.id, p.name, r.name FROM repositories r JOIN projects p ON p.id = r.project_id",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_repository(&self, id: i64) -> Result<()> {
        self.lock()
            .execute("DELETE FROM repositories WHERE id = ?1", [id])?;
        Ok(())
    }

    // ---- flakes ----

    pub fn flake(&self, repository_id: i64, commit: &str) -> Result<Option<FlakeRecord>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT commit_sha, analysis_json, flake, error, own_flake, generated_ms FROM flakes
                 WHERE repository_id = ?1 AND commit_sha = ?2",
                params![repository_id, commit],
                flake_row,
            )
            .optional()?)
    }

    /// The flake generated for the commit before `commit` (by generation time) whose flake
    /// differs, for the diff.
    pub fn previous_flake(
        &self,
        repository_id: i64,
        before: &FlakeRecord,
    ) -> Result<Option<FlakeRecord>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT commit_sha, analysis_json, flake, error, own_flake, generated_ms FROM flakes
                 WHERE repository_id = ?1 AND commit_sha != ?2 AND generated_ms <= ?3
                   AND flake IS NOT NULL
                 ORDER BY generated_ms DESC LIMIT 1",
                params![repository_id, before.commit, before.generated_ms as i64],
                flake_row,
            )
            .optional()?)
    }

    pub fn flake_commits(&self, repository_id: i64) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT commit_sha FROM flakes WHERE repository_id = ?1 ORDER BY generated_ms DESC",
        )?;
        let rows = st.query_map([repository_id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn save_flake(&self, repository_id: i64, record: &FlakeRecord) -> Result<()> {
        self.lock().execute(
            "INSERT OR REPLACE INTO flakes (repository_id, commit_sha, analysis_json, flake, error, own_flake, generated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                repository_id,
                record.commit,
                record.analysis_json,
                record.flake,
                record.error,
                record.own_flake,
                record.generated_ms as i64
            ],
        )?;
        Ok(())
    }
}

fn flake_row(r: &Row<'_>) -> rusqlite::Result<FlakeRecord> {
    Ok(FlakeRecord {
        commit: r.get(0)?,
        analysis_json: r.get(1)?,
        flake: r.get(2)?,
        error: r.get(3)?,
        own_flake: r.get(4)?,
        generated_ms: r.get::<_, i64>(5)? as u64,
    })
}

/// Every project keeps at least one owner; checked inside the transaction that changes
/// membership so the change is refused whole.
fn ensure_owner(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let orphan: Option<String> = tx
        .query_row(
            "SELECT p.name FROM projects p WHERE NOT EXISTS
               (SELECT 1 FROM members m WHERE m.project_id = p.id AND m.role = 'owner') LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match orphan {
        Some(name) => Err(DbError::Conflict(format!(
            "project {name} needs at least one owner; make someone else owner first"
        ))),
        None => Ok(()),
    }
}

/// A repository's name in pcr-ci. Project and repository names have no `.`, so the pair is
/// unambiguous.
pub fn ci_name(project: &str, repository: &str) -> String {
    format!("{project}.{repository}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("repohub.db")).unwrap();
        (dir, db)
    }

    #[test]
    fn setup_only_once() {
        let (_d, db) = db();
        db.create_user("admin", "h", true, true).unwrap();
        let err = db.create_user("eve", "h", true, true).unwrap_err();
        assert!(err.to_string().contains("already set up"), "{err}");
        assert_eq!(db.user_count().unwrap(), 1);
    }

    #[test]
    fn last_owner_cannot_leave() {
        let (_d, db) = db();
        let a = db.create_user("alice", "h", true, true).unwrap();
        db.create_user("bob", "h", false, false).unwrap();
        let p = db.create_project("web", "", a.id).unwrap();
        let err = db.remove_member(p.id, "alice").unwrap_err();
        assert!(err.to_string().contains("at least one owner"), "{err}");
        let err = db.set_member(p.id, "alice", Role::Viewer).unwrap_err();
        assert!(err.to_string().contains("at least one owner"), "{err}");
        db.set_member(p.id, "bob", Role::Owner).unwrap();
        assert!(db.remove_member(p.id, "alice").unwrap());
        assert_eq!(db.members(p.id).unwrap().len(), 1);
    }

    #[test]
    fn project_for_hides_non_members() {
        let (_d, db) = db();
        let a = db.create_user("alice", "h", true, true).unwrap();
        let b = db.create_user("bob", "h", false, false).unwrap();
        db.create_project("web", "", a.id).unwrap();
        assert!(db.project_for("web", a.id).unwrap().is_some());
        assert!(db.project_for("web", b.id).unwrap().is_none());
        assert!(db.project_for("nope", a.id).unwrap().is_none());
    }

    #[test]
    fn tokens_are_stored_hashed() {
        let (_d, db) = db();
        let a = db.create_user("alice", "h", true, true).unwrap();
        let (_t, secret) = db.create_token(a.id, "ci").unwrap();
        assert_eq!(db.user_by_token(&secret).unwrap().unwrap().id, a.id);
        assert!(db.user_by_token("pcr_wrong").unwrap().is_none());
        let stored: String = db
            .lock()
            .query_row("SELECT token_hash FROM api_tokens", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, secret);
    }
}
