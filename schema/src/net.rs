//! The one place where Cap'n Proto RPC meets a socket, for servers and clients alike.
//!
//! Everything here runs on a tokio `LocalSet` (capnp-rpc clients are `!Send`). When TLS
//! arrives it goes in [`rpc_over`], and every caller gets it.

use capnp::capability::FromClientHook;
use capnp::message::ReaderOptions;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::FutureExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

use crate::convert::{read_error, RemoteError};
use crate::master_capnp::{bootstrap, login_result, master, worker_gateway};

/// Largest message either side reads: 64 MiB. Enough for a 10,000-VM blueprint or the status
/// of a 10,000-instance cluster; anything bigger is refused before it is parsed.
pub const MAX_MESSAGE_WORDS: usize = 8 * 1024 * 1024;

pub fn reader_options() -> ReaderOptions {
    let mut options = ReaderOptions::new();
    options.traversal_limit_in_words(Some(MAX_MESSAGE_WORDS));
    options.nesting_limit(64);
    options
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot connect to the control plane at {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the control plane refused the login: {0}")]
    Login(RemoteError),
    #[error("this token opens the worker gateway; operator commands need the operator token")]
    NotOperator,
    #[error("the RPC call failed")]
    Rpc(#[from] capnp::Error),
}

/// Runs an RPC system over an accepted or connected stream. `bootstrap` is what the peer gets
/// when it asks for our bootstrap capability (servers), or `None` (clients).
pub fn rpc_over(
    stream: TcpStream,
    side: Side,
    bootstrap: Option<capnp::capability::Client>,
) -> RpcSystem<Side> {
    // Small request/response messages: never wait for Nagle.
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let network = twoparty::VatNetwork::new(
        futures::io::BufReader::new(reader.compat()),
        futures::io::BufWriter::new(writer.compat_write()),
        side,
        reader_options(),
    );
    RpcSystem::new(Box::new(network), bootstrap)
}

/// Serves one accepted connection until the peer goes away. Spawn it with `spawn_local`.
pub async fn serve_connection(stream: TcpStream, bootstrap: bootstrap::Client) {
    let system = rpc_over(stream, Side::Server, Some(bootstrap.client));
    let _ = system.await;
}

/// A live connection. `closed` resolves when the connection is gone, so long-lived clients
/// (workers, the TUI) notice and reconnect.
pub struct Connection {
    pub bootstrap: bootstrap::Client,
    pub closed: futures::future::Shared<oneshot::Receiver<()>>,
}

pub async fn connect(addr: &str) -> Result<Connection, NetError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| NetError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let mut system = rpc_over(stream, Side::Client, None);
    let bootstrap: bootstrap::Client = system.bootstrap(Side::Server);
    let (done_tx, done_rx) = oneshot::channel();
    tokio::task::spawn_local(async move {
        let _ = system.await;
        let _ = done_tx.send(());
    });
    Ok(Connection {
        bootstrap,
        closed: done_rx.shared(),
    })
}

/// What a token opens.
pub enum Session {
    Master(master::Client),
    Worker(worker_gateway::Client),
}

pub async fn login(conn: &Connection, token: &str) -> Result<Session, NetError> {
    let mut request = conn.bootstrap.login_request();
    request.get().set_token(token);
    let response = request.send().promise.await?;
    let result = response.get()?.get_result()?;
    match result.which().map_err(capnp::Error::from)? {
        login_result::Master(m) => Ok(Session::Master(m?)),
        login_result::Worker(w) => Ok(Session::Worker(w?)),
        login_result::Err(e) => Err(NetError::Login(read_error(e?)?)),
    }
}

/// Connects and logs in as an operator.
pub async fn connect_master(
    addr: &str,
    token: &str,
) -> Result<(master::Client, Connection), NetError> {
    let conn = connect(addr).await?;
    match login(&conn, token).await? {
        Session::Master(m) => Ok((m, conn)),
        Session::Worker(_) => Err(NetError::NotOperator),
    }
}

/// Connects and logs in as a worker. An operator token works too: `Master` extends the gateway.
pub async fn connect_worker(
    addr: &str,
    token: &str,
) -> Result<(worker_gateway::Client, Connection), NetError> {
    let conn = connect(addr).await?;
    match login(&conn, token).await? {
        Session::Worker(w) => Ok((w, conn)),
        Session::Master(m) => Ok((worker_gateway::Client::new(m.client.hook), conn)),
    }
}
