//! repohub: Procurator's web UI and JSON API (`pcr-repohub`, port 3001 by default).
//!
//! A team signs in, groups repositories into projects (roles owner / member / viewer), adds a
//! repository either hosted by pcr-ci (pushing to it runs a pipeline) or as an external URL
//! pcr-ci watches, and sees per repository what autonix makes of it (analysis with evidence,
//! the generated `flake.nix` and how it changed), its commits with pipeline status, pipelines
//! with steps, timings and live logs, and the cluster's deployments as the control plane
//! reports them — live.
//!
//! Pages are rendered on the server ([`maud`]: templates are Rust, checked at compile time,
//! escaped by default, and render in microseconds); a few lines of JavaScript subscribe to
//! Server-Sent Events where a page updates live. Every page has its JSON twin under `/api/`.
//! Repohub's own records (users, sessions, projects, repositories, generated flakes) are in
//! SQLite ([`db`]); pipelines are read from pcr-ci ([`ci`]) and the cluster from the control
//! plane ([`cluster`]), never copied.
//!
//! [`router`] builds the whole app from an [`App`], which is what the tests drive.

pub mod ci;
pub mod cluster;
pub mod db;
pub mod flakes;
pub mod git;
pub mod password;
pub mod throttle;
pub mod web;

use std::path::PathBuf;
use std::sync::Arc;

pub use web::router;

/// Everything a request handler needs.
pub struct App {
    pub db: db::Db,
    pub cluster: cluster::ControlPlane,
    pub ci: ci::Ci,
    pub settings: Settings,
    /// Serialises autonix runs: they are CPU-bound, and two requests for the same commit
    /// should produce one analysis.
    pub analysis_lock: tokio::sync::Mutex<()>,
    /// Failed sign-ins and API tokens, counted to slow down guessing.
    pub limits: throttle::Limits,
    /// A hash to check passwords against when the username does not exist, so that a wrong
    /// username costs as much argon2 time as a wrong password. Made at start so the first
    /// unknown username is not slower than the rest.
    pub dummy_hash: String,
}

pub type AppState = Arc<App>;

/// How repohub behaves; see `pcr-repohub --help`.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Adds `Secure` to cookies. Needed (and implied) when served over TLS.
    pub secure_cookies: bool,
    pub password_cost: password::PasswordCost,
    /// Shown in clone instructions, e.g. `https://hub.example.com`.
    pub public_url: Option<String>,
    /// The clock sign-in throttling reads ([`throttle`]); tests step a manual one.
    pub clock: throttle::Clock,
}

/// Where the pieces are.
#[derive(Debug, Clone)]
pub struct Config {
    pub db: PathBuf,
    pub cluster: cluster::Target,
    pub ci_url: Option<String>,
    pub ci_state_dir: PathBuf,
    pub settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Hash(#[from] password::HashError),
    #[error("cannot start the control plane thread")]
    Thread(#[source] std::io::Error),
}

impl App {
    /// Opens the database and starts the control plane bridge.
    pub fn start(config: Config) -> Result<AppState, StartError> {
        let db = db::Db::open(&config.db)?;
        let dummy_hash =
            password::hash_password("not anybody's password", config.settings.password_cost)?;
        let ci_token = config.cluster.token.clone();
        let cluster = cluster::ControlPlane::spawn(config.cluster).map_err(StartError::Thread)?;
        Ok(Arc::new(App {
            db,
            cluster,
            ci: ci::Ci::new(config.ci_url, config.ci_state_dir, ci_token),
            settings: config.settings,
            analysis_lock: tokio::sync::Mutex::new(()),
            limits: throttle::Limits::default(),
            dummy_hash,
        }))
    }
}

pub use support::now_ms;
