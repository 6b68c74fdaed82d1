//! The client library: attested key exchange with the primary, authenticated requests,
//! retransmission, and verification of every reply before it is returned.

use std::time::{Duration, Instant};

use rand_core::OsRng;
use vpr_proto::client::{Pending, Session, Trust};
use vpr_proto::msg::{Message, Outcome, Request, StatusReport, Value};

use crate::config::ClusterConfig;

/// Why a request has no verified outcome.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No (valid) answer in time, after every attempt.
    #[error("the service did not answer: {0}")]
    Unreachable(String),
    /// An answer arrived that fails verification: altered, forged, or not from the service.
    #[error("reply failed verification: {0}")]
    Verification(String),
    /// A local failure (configuration, socket).
    #[error("{0}")]
    Local(String),
}

impl From<zmq::Error> for ClientError {
    fn from(e: zmq::Error) -> Self {
        ClientError::Local(format!("socket: {e}"))
    }
}

/// A connected, verified client session.
pub struct Client {
    ctx: zmq::Context,
    socket: zmq::Socket,
    session: Session,
    timeout: Duration,
    attempts: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client", &hex::encode(self.session.client))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the primary and runs the attested key exchange.
    pub fn connect(config: &ClusterConfig) -> Result<Client, ClientError> {
        let trust: Trust = config.trust().map_err(|e| ClientError::Local(e.to_string()))?;
        // One context (one I/O thread) for all of this process's clients.
        static CONTEXT: std::sync::OnceLock<zmq::Context> = std::sync::OnceLock::new();
        let ctx = CONTEXT.get_or_init(zmq::Context::new).clone();
        let socket = ctx.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        let mut id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut id);
        socket.set_identity(format!("c{}", hex::encode(id)).as_bytes())?;
        // View 0's primary; primary change (redirects) comes with fault tolerance.
        let endpoint =
            config.endpoint(0).ok_or_else(|| ClientError::Local("no replicas".into()))?;
        socket.connect(&endpoint)?;
        let timeout = Duration::from_millis(config.timeouts.request_ms);
        let attempts = config.timeouts.request_attempts.max(1);
        for _ in 0..attempts {
            let pending = Pending::new(&mut OsRng);
            socket.send(Message::ClientHello(pending.hello().clone()).encode(), 0)?;
            if let Some(Message::Welcome(w)) =
                receive(&socket, timeout, |m| matches!(m, Message::Welcome(_)))?
            {
                let session = pending
                    .finish(&w, &trust)
                    .map_err(|e| ClientError::Verification(e.to_string()))?;
                return Ok(Client { ctx, socket, session, timeout, attempts });
            }
        }
        Err(ClientError::Unreachable(format!("no welcome from {endpoint}")))
    }

    /// Runs SQL and returns its verified outcome (which may hold an SQL error).
    pub fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<Outcome, ClientError> {
        let request = self.session.request(sql.to_owned(), params);
        self.send(&request)
    }

    /// Sends a request (again, on timeouts) until a reply verifies.
    pub fn send(&mut self, request: &Request) -> Result<Outcome, ClientError> {
        let bytes = Message::Request(request.clone()).encode();
        for _ in 0..self.attempts {
            self.socket.send(&bytes[..], 0)?;
            let matches = |m: &Message| matches!(m, Message::Reply(r) if r.seq == request.seq);
            if let Some(Message::Reply(reply)) = receive(&self.socket, self.timeout, matches)? {
                return self
                    .session
                    .verify(request, &reply)
                    .cloned()
                    .map_err(|e| ClientError::Verification(e.to_string()));
            }
        }
        Err(ClientError::Unreachable(format!(
            "no reply to request {} after {} attempts",
            request.seq, self.attempts
        )))
    }

    /// Asks every replica of `config` for its status; each report is authenticated by that
    /// replica's Manager with this client's key (so the untrusted host cannot forge it).
    pub fn status(&self, config: &ClusterConfig) -> Vec<(u16, Result<StatusReport, ClientError>)> {
        (0..config.n()).map(|id| (id, self.status_of(config, id))).collect()
    }

    fn status_of(&self, config: &ClusterConfig, id: u16) -> Result<StatusReport, ClientError> {
        let endpoint =
            config.endpoint(id).ok_or_else(|| ClientError::Local("no such replica".into()))?;
        let socket = self.ctx.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        socket.connect(&endpoint)?;
        let mut nonce = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut nonce);
        let request = self.session.status_request(nonce);
        for _ in 0..self.attempts {
            socket.send(Message::StatusRequest(request.clone()).encode(), 0)?;
            let wanted = |m: &Message| matches!(m, Message::StatusReport(r) if r.nonce == nonce);
            if let Some(Message::StatusReport(report)) = receive(&socket, self.timeout, wanted)? {
                self.session
                    .verify_status(&request, &report)
                    .map_err(|e| ClientError::Verification(e.to_string()))?;
                if report.replica != id {
                    return Err(ClientError::Verification(format!(
                        "replica {id} answered as replica {}",
                        report.replica
                    )));
                }
                return Ok(report);
            }
        }
        Err(ClientError::Unreachable(format!("no status from replica {id} at {endpoint}")))
    }

    /// The session (its identity), e.g. for tests that build requests by hand.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

/// Waits up to `timeout` for a message that `wanted` accepts; others are dropped.
fn receive(
    socket: &zmq::Socket,
    timeout: Duration,
    wanted: impl Fn(&Message) -> bool,
) -> Result<Option<Message>, ClientError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let mut items = [socket.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, i64::try_from(left.as_millis()).unwrap_or(i64::MAX).max(1))?;
        if !items[0].is_readable() {
            continue;
        }
        let bytes = socket.recv_bytes(0)?;
        match Message::decode(&bytes) {
            Ok(m) if wanted(&m) => return Ok(Some(m)),
            Ok(_) => {}
            Err(e) => tracing::debug!(%e, "dropped an undecodable message"),
        }
    }
}
