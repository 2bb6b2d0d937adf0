//! Reaching the control plane: the address and token flags every command shares, where the
//! operator token comes from, and the one connect call.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use schema::client::MasterClient;

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Control plane address.
    #[arg(long, global = true, env = "PROCURATOR_MASTER", default_value = schema::defaults::MASTER_ADDR)]
    pub master: String,
    /// Operator token.
    #[arg(long, global = true, env = "PROCURATOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the operator token (default: operator.token in the state directory).
    #[arg(long, global = true, env = "PROCURATOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// The operator token from flags, environment or the default token file.
pub fn operator_token(conn: &ConnArgs) -> anyhow::Result<String> {
    if let Some(t) = &conn.token {
        return Ok(t.trim().to_string());
    }
    let path = conn
        .token_file
        .clone()
        .unwrap_or_else(|| schema::defaults::state_dir().join("operator.token"));
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => bail!("the token file {} is empty", path.display()),
        Err(e) => bail!(
            "no operator token: pass --token, set PROCURATOR_TOKEN, or point --token-file at the \
             control plane's operator.token ({}: {e})",
            path.display()
        ),
    }
}

pub async fn connect(conn: &ConnArgs) -> anyhow::Result<MasterClient> {
    let token = operator_token(conn)?;
    let (master, _conn) = schema::net::connect_master(&conn.master, &token).await?;
    Ok(MasterClient::new(master))
}
