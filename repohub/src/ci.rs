//! pcr-ci, as repohub sees it: its JSON API (pipelines, logs, repositories) through
//! [`schema::ci::client::CiClient`], and its state directory, where the bare repositories live
//! that repohub reads commits and files from.
//!
//! pcr-ci owns the pipelines and the repositories' git data; repohub never copies either, so
//! what a page shows is what pcr-ci has now.

use std::path::{Path, PathBuf};
use std::time::Duration;

use schema::ci::client::CiClient;
use schema::ci::{LogPage, NewRepository};
use schema::ci::{PipelineDetail, PipelineSummary};

#[derive(Debug, thiserror::Error)]
pub enum CiError {
    #[error("pcr-ci is not configured: start it (it writes {}) or pass --ci URL", .0.display())]
    NotConfigured(PathBuf),
    #[error("pcr-ci at {url} is not reachable; is it running?")]
    Unreachable {
        url: String,
        #[source]
        source: schema::ci::client::ClientError,
    },
    /// pcr-ci answered with an error sentence.
    #[error("pcr-ci refused: {0}")]
    Refused(String),
}

pub type Result<T> = std::result::Result<T, CiError>;

#[derive(Clone)]
pub struct Ci {
    /// Given with `--ci`; otherwise read from `ci.url` in the state directory on every call,
    /// so a pcr-ci restarted on another port is followed.
    fixed_url: Option<String>,
    state_dir: PathBuf,
    http: Option<CiClient>,
    /// The operator token pcr-ci's API takes, read on every call like the control plane's.
    token: crate::cluster::TokenSource,
}

impl Ci {
    pub fn new(
        fixed_url: Option<String>,
        state_dir: PathBuf,
        token: crate::cluster::TokenSource,
    ) -> Ci {
        let http = fixed_url.as_deref().map(CiClient::new);
        Ci {
            fixed_url,
            state_dir,
            http,
            token,
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where pcr-ci keeps the bare repository `ci_name`.
    pub fn bare_path(&self, ci_name: &str) -> PathBuf {
        schema::ci::bare_path(&schema::ci::repos_dir(&self.state_dir), ci_name)
    }

    fn client(&self) -> Result<CiClient> {
        let client = match &self.http {
            Some(c) => c.clone(),
            None => match schema::ci::client::url_from_state_dir(&self.state_dir) {
                Some(url) => CiClient::new(&url),
                None => {
                    return Err(CiError::NotConfigured(schema::ci::url_file(
                        &self.state_dir,
                    )))
                }
            },
        };
        // Without a token pcr-ci refuses with a sentence saying what it needs; pages show it.
        Ok(match self.token.read() {
            Ok(token) => client.with_token(token),
            Err(_) => client,
        })
    }

    /// The base URL in use, for messages.
    pub fn url(&self) -> Option<String> {
        self.fixed_url
            .clone()
            .or_else(|| schema::ci::client::url_from_state_dir(&self.state_dir))
    }

    fn map(client: &CiClient, e: schema::ci::client::ClientError) -> CiError {
        match e {
            schema::ci::client::ClientError::Remote(msg) => CiError::Refused(msg),
            other => CiError::Unreachable {
                url: client.base().to_string(),
                source: other,
            },
        }
    }

    pub async fn create_repository(
        &self,
        ci_name: &str,
        remote: Option<&str>,
        branch: &str,
    ) -> Result<()> {
        let client = self.client()?;
        client
            .create_repository(&NewRepository {
                name: ci_name.to_string(),
                remote: remote.map(str::to_string),
                branch: Some(branch.to_string()),
            })
            .await
            .map_err(|e| Ci::map(&client, e))?;
        Ok(())
    }

    pub async fn pipelines(
        &self,
        ci_name: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PipelineSummary>> {
        let client = self.client()?;
        client
            .pipelines(ci_name, limit)
            .await
            .map_err(|e| Ci::map(&client, e))
    }

    pub async fn pipeline(&self, id: u64) -> Result<PipelineDetail> {
        let client = self.client()?;
        client.pipeline(id).await.map_err(|e| Ci::map(&client, e))
    }

    pub async fn logs(&self, id: u64, after: u64, wait: Duration) -> Result<LogPage> {
        let client = self.client()?;
        client
            .logs(id, after, wait)
            .await
            .map_err(|e| Ci::map(&client, e))
    }
}
