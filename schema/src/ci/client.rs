//! A client of pcr-ci's JSON API, for the command line and repohub.

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{
    LogPage, NewRepository, PipelineDetail, PipelineSummary, PushReport, Queued, Repository,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach pcr-ci at {url}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// pcr-ci answered with an error; its sentence.
    #[error("{0}")]
    Remote(String),
    #[error("pcr-ci answered something this client cannot read")]
    Decode(#[source] reqwest::Error),
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Clone)]
pub struct CiClient {
    base: String,
    http: reqwest::Client,
    /// The cluster's operator token, sent as a bearer token: pcr-ci's `/api/` needs it.
    token: Option<String>,
}

/// The URL of the pcr-ci whose state directory is `state_dir`, if it wrote one.
pub fn url_from_state_dir(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(super::url_file(state_dir)).ok()?;
    let url = text.trim();
    (!url.is_empty()).then(|| url.to_string())
}

impl CiClient {
    /// `base` is `http://host:port` (a bare `host:port` gets `http://`).
    pub fn new(base: &str) -> CiClient {
        let base = base.trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        CiClient {
            base,
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// Sends `token` (the cluster's operator token) with every API request.
    pub fn with_token(mut self, token: impl Into<String>) -> CiClient {
        self.token = Some(token.into());
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Connect {
                url: self.base.clone(),
                source,
            })?;
        if !response.status().is_success() {
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let msg = body["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("pcr-ci answered {status}"));
            return Err(ClientError::Remote(msg));
        }
        response.json().await.map_err(ClientError::Decode)
    }

    pub async fn pipelines(
        &self,
        repository: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PipelineSummary>> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(r) = repository {
            query.push(("repository", r.to_string()));
        }
        self.send(
            self.http
                .get(format!("{}/api/pipelines", self.base))
                .query(&query),
        )
        .await
    }

    pub async fn pipeline(&self, id: u64) -> Result<PipelineDetail> {
        self.send(self.http.get(format!("{}/api/pipelines/{id}", self.base)))
            .await
    }

    /// Lines after `after`; with `wait`, the server holds the request until there are new
    /// lines, the run ends, or `wait` passes.
    pub async fn logs(&self, id: u64, after: u64, wait: Duration) -> Result<LogPage> {
        self.send(
            self.http
                .get(format!("{}/api/pipelines/{id}/logs", self.base))
                .query(&[("after", after), ("waitMs", wait.as_millis() as u64)])
                .timeout(wait + Duration::from_secs(30)),
        )
        .await
    }

    pub async fn repositories(&self) -> Result<Vec<Repository>> {
        self.send(self.http.get(format!("{}/api/repositories", self.base)))
            .await
    }

    pub async fn create_repository(&self, new: &NewRepository) -> Result<Repository> {
        self.send(
            self.http
                .post(format!("{}/api/repositories", self.base))
                .json(new),
        )
        .await
    }

    /// What a post-receive hook sends.
    pub async fn report_push(&self, hook_token: &str, report: &PushReport) -> Result<Vec<Queued>> {
        self.send(
            self.http
                .post(format!("{}/hooks/post-receive", self.base))
                .bearer_auth(hook_token)
                .json(report),
        )
        .await
    }
}
