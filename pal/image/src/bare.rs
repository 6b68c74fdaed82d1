//! The bare service of the test PAL image (feature `bare`): SQL executed and updates applied
//! without replication, and the PAL services one by one (`Execute`, `Apply`, `Digest`,
//! `Info`, `Random`, `Counter`), for the hypervisor's self-test and `vpr pal-smoke`. The
//! production image has none of it: it serves the Manager's commands only.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use vpr_pal::{Service, ServiceOptions};
use vpr_proto::digest::Digest;
use vpr_proto::msg::{self, SqlError, StatementResult, Value};
use vpr_proto::pal_io::{self, Command, Outcome};

use crate::{engine, hv, len_u64, tcc, State};

/// The name and version [`Command::Info`] reports.
const IMAGE_NAME: &str = concat!("vpr-pal ", env!("CARGO_PKG_VERSION"));

/// Runs a command of the bare service; the encoded outcome, at most `capacity` bytes.
pub fn bare_command(state: &mut State, command: Command, capacity: usize) -> Vec<u8> {
    let outcome = match command {
        Command::Execute { sql, params } => return execute_sql(state, &sql, params, capacity),
        Command::Apply { update } => match service(state) {
            Ok(service) => match service.apply_encoded(&update) {
                Ok(()) => Outcome::Applied { digest: service.digest() },
                Err(e) => Outcome::refused(&format!("{e}")),
            },
            Err(refused) => refused,
        },
        Command::Digest => match service(state) {
            Ok(service) => {
                Outcome::Digest { digest: service.digest(), file_size: service.file_size() }
            }
            Err(refused) => refused,
        },
        Command::Info => match hv::identity() {
            Ok(identity) => Outcome::Info {
                sqlite_version: String::from(pal_io::clip_utf8(
                    sqlite_shim::sqlite_version(),
                    pal_io::MAX_NAME_BYTES,
                )),
                identity: Digest(identity),
                image: String::from(IMAGE_NAME),
            },
            Err(status) => Outcome::refused(&format!("identity: {status}")),
        },
        Command::Random { len } => match usize::try_from(len) {
            Ok(len) if len <= pal_io::MAX_RANDOM_BYTES => {
                let mut bytes = vec![0; len];
                match hv::random(&mut bytes) {
                    Ok(()) => Outcome::Random { bytes },
                    Err(status) => Outcome::refused(&format!("random: {status}")),
                }
            }
            _ => Outcome::refused("random: too many bytes asked for"),
        },
        // The untrusted side's counters live in a name space of their own: it cannot move
        // the Manager's view and state counters.
        Command::Counter { name, increment } => {
            let name = tcc::untrusted_counter(name.as_bytes());
            let value =
                if increment { hv::counter_increment(&name) } else { hv::counter_read(&name) };
            match value {
                Ok(value) => Outcome::Counter { value },
                Err(status) => Outcome::refused(&format!("counter: {status}")),
            }
        }
        other => {
            Outcome::refused(&format!("{} is not a command of the bare service", other.name()))
        }
    };
    let bytes = outcome.encode();
    if bytes.len() <= capacity {
        bytes
    } else {
        Outcome::refused("output too large").encode()
    }
}

/// The bare service, set up on first use: the engine, then the database. A failure is
/// answered with a refusal and tried again by the next command.
fn service(state: &mut State) -> Result<&mut Service, Outcome> {
    engine(state)?;
    if state.service.is_none() {
        let service = Service::new(&ServiceOptions::default())
            .map_err(|e| Outcome::refused(&format!("cannot open the database: {e}")))?;
        state.service = Some(service);
    }
    state.service.as_mut().ok_or_else(|| Outcome::refused("no database"))
}

/// [`Command::Execute`]: runs the SQL, captures the update. The results may take at most
/// `capacity` bytes (the service's result budget: more could not be answered anyway). If the
/// outcome does not fit the output, or its encoding cannot be allocated, takes the writes
/// back and refuses, so the state never moves without its update reaching the caller.
fn execute_sql(state: &mut State, sql: &str, params: Vec<Value>, capacity: usize) -> Vec<u8> {
    let service = match service(state) {
        Ok(service) => service,
        Err(refused) => return refused.encode(),
    };
    let params: Vec<sqlite_shim::Value> = params.into_iter().map(to_sql).collect();
    service.set_max_result_bytes(Some(len_u64(capacity)));
    service.keep_undo(true);
    let (reply, update) = service.execute(sql, &params);
    let undo = service.take_undo();
    service.keep_undo(false);
    drop(params);
    // The update is measured before it is encoded: it can be as large as the database.
    let needed = update.encoded_len();
    let encoded = if needed <= capacity { update.try_encode() } else { None };
    drop(update);
    let bytes = encoded.and_then(|update| {
        let outcome = Outcome::Executed {
            results: reply.results.into_iter().map(from_sql_result).collect(),
            error: reply.error.map(|e| SqlError {
                code: e.code,
                message: String::from(pal_io::clip_utf8(&e.message, msg::MAX_MESSAGE_BYTES)),
            }),
            update,
        };
        if outcome.encoded_len() <= capacity {
            outcome.try_encode()
        } else {
            None
        }
    });
    if let Some(bytes) = bytes {
        return bytes;
    }
    // The update will not reach anyone: put the file back as it was. If that fails, the
    // state is one no caller can follow: stop.
    match undo {
        Some(undo) if service.revert(&undo).is_ok() => {}
        _ => hv::abort(),
    }
    Outcome::refused(&format!(
        "output too large for its capacity of {capacity} bytes (or no memory to encode it); \
         the request's writes were taken back"
    ))
    .encode()
}

fn to_sql(v: Value) -> sqlite_shim::Value {
    match v {
        Value::Null => sqlite_shim::Value::Null,
        Value::Integer(i) => sqlite_shim::Value::Integer(i),
        Value::Real(r) => sqlite_shim::Value::Real(r),
        Value::Text(t) => sqlite_shim::Value::Text(t),
        Value::Blob(b) => sqlite_shim::Value::Blob(b),
    }
}

fn from_sql(v: sqlite_shim::Value) -> Value {
    match v {
        sqlite_shim::Value::Null => Value::Null,
        sqlite_shim::Value::Integer(i) => Value::Integer(i),
        sqlite_shim::Value::Real(r) => Value::Real(r),
        sqlite_shim::Value::Text(t) => Value::Text(t),
        sqlite_shim::Value::Blob(b) => Value::Blob(b),
    }
}

fn from_sql_result(r: sqlite_shim::StatementResult) -> StatementResult {
    StatementResult {
        columns: r.columns,
        rows: r.rows.into_iter().map(|row| row.into_iter().map(from_sql).collect()).collect(),
        changes: r.changes,
    }
}
