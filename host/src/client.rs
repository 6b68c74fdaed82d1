//! The client library: attested key exchange with the primary, authenticated requests,
//! retransmission, and verification of every reply before it is returned.

use std::time::{Duration, Instant};

use rand_core::OsRng;
use vpr_proto::client::{Pending, Session, Trust};
use vpr_proto::msg::{Message, Outcome, ReadLevel, Request, StatusReport, Value};

use crate::config::ClusterConfig;

/// How fresh reads must be, as `vpr sql` and `vpr bench` take it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    /// Confirmed with f backups after the read ran (one more round).
    #[default]
    Linearizable,
    /// The primary's committed state, at once (possibly stale after a partition).
    Primary,
}

impl std::fmt::Display for ReadConsistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadConsistency::Linearizable => "linearizable",
            ReadConsistency::Primary => "primary",
        })
    }
}

impl From<ReadConsistency> for ReadLevel {
    fn from(c: ReadConsistency) -> Self {
        match c {
            ReadConsistency::Linearizable => ReadLevel::Linearizable,
            ReadConsistency::Primary => ReadLevel::Primary,
        }
    }
}

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
///
/// It keeps one socket per replica and sends to the replica it believes is the primary; when
/// an attempt times out it sends to every replica (backups take that as a complaint about the
/// primary), and it follows the view of each verified reply to the new primary.
pub struct Client {
    ctx: zmq::Context,
    sockets: Vec<zmq::Socket>,
    primary: usize,
    session: Session,
    level: ReadLevel,
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
    /// Connects to the replicas and runs the attested key exchange (any replica of the
    /// group can welcome a client: client keys derive from the group key).
    pub fn connect(config: &ClusterConfig) -> Result<Client, ClientError> {
        let trust: Trust = config.trust().map_err(|e| ClientError::Local(e.to_string()))?;
        // One context (one I/O thread) for all of this process's clients.
        static CONTEXT: std::sync::OnceLock<zmq::Context> = std::sync::OnceLock::new();
        let ctx = CONTEXT.get_or_init(zmq::Context::new).clone();
        let mut id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut id);
        let identity = format!("c{}", hex::encode(id));
        let mut sockets = Vec::new();
        for r in 0..config.n() {
            let socket = ctx.socket(zmq::DEALER)?;
            socket.set_linger(0)?;
            socket.set_identity(identity.as_bytes())?;
            let endpoint =
                config.endpoint(r).ok_or_else(|| ClientError::Local("no replicas".into()))?;
            socket.connect(&endpoint)?;
            sockets.push(socket);
        }
        if sockets.is_empty() {
            return Err(ClientError::Local("no replicas".into()));
        }
        let timeout = Duration::from_millis(config.timeouts.request_ms);
        let attempts = config.timeouts.request_attempts.max(1);
        let mut refused = None;
        for attempt in 0..attempts {
            let pending = Pending::new(&mut OsRng);
            let hello = Message::ClientHello(pending.hello().clone()).encode();
            // The first attempt goes to view 0's primary, later ones to everyone.
            let targets = if attempt == 0 { 0..1 } else { 0..sockets.len() };
            for socket in &sockets[targets] {
                post(socket, &hello)?;
            }
            if let Some((_, Message::Welcome(w))) =
                receive(&sockets, timeout, |m| matches!(m, Message::Welcome(_)))?
            {
                // A Welcome for an older hello does not open: try again, but report the
                // first refusal (an answer to the first hello, so the real reason) if nothing
                // better comes.
                match pending.finish(&w, &trust) {
                    Err(e) => {
                        refused.get_or_insert(e.to_string());
                    }
                    Ok(session) => {
                        return Ok(Client {
                            ctx,
                            sockets,
                            primary: 0,
                            session,
                            level: ReadLevel::default(),
                            timeout,
                            attempts,
                        });
                    }
                }
            }
        }
        if let Some(why) = refused {
            return Err(ClientError::Verification(why));
        }
        Err(ClientError::Unreachable(format!("no welcome from any of {} replicas", config.n())))
    }

    /// How fresh reads must be from now on (linearizable unless set).
    pub fn set_read_level(&mut self, level: ReadLevel) {
        self.level = level;
    }

    /// Runs SQL and returns its verified outcome (which may hold an SQL error).
    pub fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<Outcome, ClientError> {
        let request = self.session.request_at(self.level, sql.to_owned(), params);
        self.send(&request)
    }

    /// Sends a request (again, on timeouts, to every replica) until a reply verifies.
    pub fn send(&mut self, request: &Request) -> Result<Outcome, ClientError> {
        let bytes = Message::Request(request.clone()).encode();
        let mut refused = None;
        for attempt in 0..self.attempts {
            if attempt == 0 {
                post(&self.sockets[self.primary], &bytes)?;
            } else {
                for socket in &self.sockets {
                    post(socket, &bytes)?;
                }
            }
            let deadline = Instant::now() + self.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let matches = |m: &Message| matches!(m, Message::Reply(r) if r.seq == request.seq);
                let Some((_, Message::Reply(reply))) = receive(&self.sockets, left, matches)?
                else {
                    break;
                };
                match self.session.verify(request, &reply) {
                    Ok(outcome) => {
                        let n = u64::try_from(self.sockets.len()).unwrap_or(1);
                        self.primary = usize::try_from(reply.view % n).unwrap_or(0);
                        return Ok(outcome.clone());
                    }
                    // Only the primary's reply verifies; anything else is forged or altered.
                    Err(e) => refused = Some(e.to_string()),
                }
            }
        }
        if let Some(why) = refused {
            return Err(ClientError::Verification(why));
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
            let got = receive(std::slice::from_ref(&socket), self.timeout, wanted)?;
            if let Some((_, Message::StatusReport(report))) = got {
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

/// Queues `bytes` on `socket` without waiting; a replica that is down and whose queue is full
/// simply misses it.
fn post(socket: &zmq::Socket, bytes: &[u8]) -> Result<(), ClientError> {
    match socket.send(bytes, zmq::DONTWAIT) {
        Ok(()) | Err(zmq::Error::EAGAIN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Waits up to `timeout` for a message that `wanted` accepts on any of `sockets`; others are
/// dropped. Returns the index of the socket it came from.
fn receive(
    sockets: &[zmq::Socket],
    timeout: Duration,
    wanted: impl Fn(&Message) -> bool,
) -> Result<Option<(usize, Message)>, ClientError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let mut items: Vec<zmq::PollItem<'_>> =
            sockets.iter().map(|s| s.as_poll_item(zmq::POLLIN)).collect();
        zmq::poll(&mut items, i64::try_from(left.as_millis()).unwrap_or(i64::MAX).max(1))?;
        let readable: Vec<usize> = (0..items.len()).filter(|i| items[*i].is_readable()).collect();
        for i in readable {
            let bytes = sockets[i].recv_bytes(0)?;
            match Message::decode(&bytes) {
                Ok(m) if wanted(&m) => return Ok(Some((i, m))),
                Ok(_) => {}
                Err(e) => tracing::debug!(%e, "dropped an undecodable message"),
            }
        }
    }
}
