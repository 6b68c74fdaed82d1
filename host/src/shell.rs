//! The `vpr sql` shell: printing verified outcomes, dot-commands and the interactive loop.
//!
//! This module is the presentation side of `vpr sql --config FILE [-c SQL] [--json]` and knows
//! nothing of the network: [`run`] (statements read from standard input, a terminal or a
//! pipe) and [`run_once`] (`-c SQL`) call an `exec` function with each SQL text and get back
//! either a verified [`Outcome`] or the reason none could be had.
//!
//! - Output: [`write_list`] prints rows like the sqlite3 shell's default list mode (values
//!   joined by `|`, one row a line, no header; REALs as SQLite renders them, see
//!   [`real_to_text`]); [`write_json`] prints one JSON array a row (JSON Lines).
//! - Input: an [`Assembler`] joins lines until they end a statement ([`is_complete`], as
//!   SQLite's `sqlite3_complete`); a line starting with `.` at the start of a statement is a
//!   dot-command ([`parse_dot`], [`dot_sql`]).
//! - Exit status: 0 when everything succeeded, 1 after an SQL error (the shell goes on with the
//!   next statement, like sqlite3 reading a pipe), 2 as soon as a reply fails verification or
//!   the service cannot be reached (the shell stops): see [`Failure`].
//!
//! Nothing is printed for a request before `exec` has returned its verified outcome.

use std::io::{self, BufRead, Write};

use serde_json::{Map, Number, Value as Json};
use vpr_proto::msg::{Outcome, SqlError, Value};

mod complete;
mod real;
#[cfg(test)]
mod tests;

pub use complete::is_complete;
pub use real::real_to_text;

use complete::Scanner;

/// Write every row of `outcome` in the sqlite3 shell's list mode.
///
/// Each row of each statement result is one line, its values joined by `|`; there is no
/// header. NULL prints as nothing, an INTEGER in decimal, a REAL as [`real_to_text`] renders it
/// (SQLite's own text, so `1.0`, `0.1`, `1.0e+100`, `Inf`), TEXT as UTF-8 with invalid
/// sequences replaced by U+FFFD, and a BLOB as its raw bytes. The error of `outcome`, if any,
/// is not written: see [`run`].
pub fn write_list(out: &mut impl Write, outcome: &Outcome) -> io::Result<()> {
    for result in &outcome.results {
        for row in &result.rows {
            for (i, value) in row.iter().enumerate() {
                if i > 0 {
                    out.write_all(b"|")?;
                }
                write_list_value(out, value)?;
            }
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// Write one value as list mode shows it.
fn write_list_value(out: &mut impl Write, value: &Value) -> io::Result<()> {
    match value {
        Value::Null => Ok(()),
        Value::Integer(i) => write!(out, "{i}"),
        Value::Real(r) => out.write_all(real_to_text(*r).as_bytes()),
        Value::Text(t) => out.write_all(String::from_utf8_lossy(t).as_bytes()),
        Value::Blob(b) => out.write_all(b),
    }
}

/// Write every row of `outcome` as one line holding a JSON array (JSON Lines), for scripts.
///
/// Values keep their type: NULL is `null`, an INTEGER a JSON integer (exact, also beyond
/// 2^53), a finite REAL a JSON number in the shortest text that converts back to the same
/// double and always has a `.` or an exponent (`1.0`, `0.1`, `-0.0`), so that it reads back
/// as a real, TEXT a JSON string (invalid UTF-8 replaced by U+FFFD), and a BLOB
/// `{"blob":"<lowercase hex>"}`. An infinite REAL, which JSON numbers cannot express, is
/// `{"real":"Inf"}` or `{"real":"-Inf"}`; a NaN REAL (SQLite stores NaN as NULL) is `null`.
/// There is no header line and nothing separates the rows of successive statements. The error
/// of `outcome`, if any, is not written: see [`run`].
pub fn write_json(out: &mut impl Write, outcome: &Outcome) -> io::Result<()> {
    for result in &outcome.results {
        for row in &result.rows {
            let row = Json::Array(row.iter().map(json_value).collect());
            serde_json::to_writer(&mut *out, &row)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// A value as [`write_json`] shows it.
fn json_value(value: &Value) -> Json {
    let tagged = |key: &str, text: String| {
        let mut map = Map::new();
        map.insert(key.to_owned(), Json::String(text));
        Json::Object(map)
    };
    match value {
        Value::Null => Json::Null,
        Value::Integer(i) => Json::Number(Number::from(*i)),
        Value::Real(r) if r.is_nan() => Json::Null,
        Value::Real(r) => match Number::from_f64(*r) {
            Some(n) => Json::Number(n),
            None => tagged("real", real_to_text(*r)),
        },
        Value::Text(t) => Json::String(String::from_utf8_lossy(t).into_owned()),
        Value::Blob(b) => tagged("blob", hex::encode(b)),
    }
}

/// A dot-command of the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dot {
    /// `.tables ?PATTERN?`: names of tables and views, optionally those matching a LIKE
    /// pattern.
    Tables(Option<String>),
    /// `.schema ?PATTERN?`: the CREATE statements, optionally of the tables matching a LIKE
    /// pattern.
    Schema(Option<String>),
    /// `.help`: list the dot-commands.
    Help,
    /// `.quit` (or `.exit`): leave the shell.
    Quit,
}

/// What `.help` prints.
pub const HELP: &str = "\
.help              Show this message
.quit              Exit the shell (also .exit)
.schema ?PATTERN?  Show the CREATE statements of the tables matching the LIKE PATTERN
.tables ?PATTERN?  List the tables and views whose names match the LIKE PATTERN
Anything else is SQL, sent when a line ends it with ';'.
";

/// Parse a dot-command line (leading whitespace and the line end are ignored).
///
/// Arguments are separated by whitespace; an argument may be quoted with `'` or `"` to hold
/// whitespace. As in the sqlite3 shell, a command name may be shortened to a prefix: `.ta`
/// (at least two letters) for `.tables`, `.sc` for `.schema`, `.ex` for `.exit`, and any
/// prefix for `.help` and `.quit`. An unknown command is the error
/// `unknown command: .foo (.help lists commands)`; wrong arguments give a usage message.
pub fn parse_dot(line: &str) -> Result<Dot, String> {
    let line = line.trim();
    let Some(rest) = line.strip_prefix('.') else {
        return Err(format!("not a dot-command: {line}"));
    };
    let mut args = split_args(rest)?;
    let name = if args.is_empty() { String::new() } else { args.remove(0) };
    // Each command with the shortest prefix that names it.
    const COMMANDS: [(&str, usize); 5] =
        [("tables", 2), ("schema", 2), ("help", 1), ("quit", 1), ("exit", 2)];
    let command = COMMANDS
        .iter()
        .find(|(full, min)| name.len() >= *min && full.starts_with(name.as_str()))
        .map(|(full, _)| *full);
    match (command, args.len()) {
        (Some("tables"), 0 | 1) => Ok(Dot::Tables(args.pop())),
        (Some("schema"), 0 | 1) => Ok(Dot::Schema(args.pop())),
        (Some("help"), 0) => Ok(Dot::Help),
        (Some("quit" | "exit"), 0) => Ok(Dot::Quit),
        (Some(full @ ("tables" | "schema")), _) => Err(format!("usage: .{full} ?PATTERN?")),
        (Some(full), _) => Err(format!("usage: .{full}")),
        (None, _) => Err(format!("unknown command: .{name} (.help lists commands)")),
    }
}

/// Split dot-command arguments at whitespace, honouring `'...'` and `"..."` quotes.
fn split_args(text: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { return Ok(args) };
        let mut arg = String::new();
        if first == '\'' || first == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some(c) if c == first => break,
                    Some(c) => arg.push(c),
                    None => return Err(format!("unterminated {first} in dot-command")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                arg.push(c);
            }
        }
        args.push(arg);
    }
}

/// `text` as an SQL string literal.
fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The SQL a dot-command runs, if it runs any (`.tables` and `.schema` do).
///
/// Both leave out SQLite's internal objects (`sqlite_%`) and vpr's own (`vpr_%`), matching
/// the `_` literally. `.tables` selects the names of tables and views in order, `.schema` the
/// CREATE statements in the order of the sqlite3 shell (by table, the table before its
/// indexes and triggers); a pattern is a LIKE pattern on the name (`.schema`: on the name of
/// the table an object belongs to), passed as a quoted literal.
pub fn dot_sql(dot: &Dot) -> Option<String> {
    const HIDDEN: &str =
        "name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'vpr\\_%' ESCAPE '\\'";
    match dot {
        Dot::Tables(pattern) => Some(format!(
            "SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND {HIDDEN}{} \
             ORDER BY 1",
            pattern
                .as_deref()
                .map(|p| format!(" AND name LIKE {}", sql_literal(p)))
                .unwrap_or_default()
        )),
        Dot::Schema(pattern) => Some(format!(
            "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND {HIDDEN}{} \
             ORDER BY tbl_name, type DESC, name",
            pattern
                .as_deref()
                .map(|p| format!(" AND tbl_name LIKE {}", sql_literal(p)))
                .unwrap_or_default()
        )),
        Dot::Help | Dot::Quit => None,
    }
}

/// One unit of shell input, as an [`Assembler`] yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// SQL text ending a statement: one request (it may hold several statements).
    Sql(String),
    /// A dot-command line, without its line end.
    Dot(String),
}

/// Joins input lines into complete SQL texts and dot-commands.
///
/// Lines accumulate until the text is complete as [`is_complete`] decides (so a `;` inside a
/// string, a comment or a trigger body does not end it); the text is then yielded as one
/// [`Input::Sql`], without its final line end. A text holding only whitespace, comments and
/// semicolons is dropped. At the start of a statement, a blank line is skipped and a line
/// whose first non-blank character is `.` is an [`Input::Dot`].
#[derive(Clone, Debug, Default)]
pub struct Assembler {
    /// The text of the statement so far, each line ending with `\n`.
    text: String,
    /// Its scan.
    scanner: Scanner,
}

impl Assembler {
    /// An assembler at the start of a statement.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no statement is under way (the shell then shows its first prompt).
    pub fn is_fresh(&self) -> bool {
        self.text.is_empty()
    }

    /// Take one input line (with or without its line end) and return what it completes.
    pub fn push_line(&mut self, line: &str) -> Option<Input> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if self.is_fresh() {
            if line.trim().is_empty() {
                return None;
            }
            if line.trim_start().starts_with('.') {
                return Some(Input::Dot(line.to_owned()));
            }
        }
        self.text.push_str(line);
        self.text.push('\n');
        self.scanner.feed(line);
        self.scanner.feed("\n");
        if self.scanner.complete() {
            self.take().map(Input::Sql)
        } else {
            None
        }
    }

    /// End of input: the incomplete statement left, if it holds anything but whitespace and
    /// comments (the shell sends it as it is and lets SQLite judge it).
    pub fn finish(&mut self) -> Option<String> {
        self.take()
    }

    /// Yield the text so far, if it has content, and start afresh.
    fn take(&mut self) -> Option<String> {
        let content = self.scanner.has_content();
        let mut text = std::mem::take(&mut self.text);
        self.scanner = Scanner::default();
        if text.ends_with('\n') {
            text.pop();
        }
        content.then_some(text)
    }
}

/// Why a request failed, as the exit status tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// An SQL error (or a bad dot-command): the state is unchanged; exit status 1.
    Sql,
    /// A reply failed verification or the service was unreachable; exit status 2.
    Verification,
}

impl Failure {
    /// The process exit status for this failure: 1 or 2.
    pub fn exit_code(self) -> i32 {
        match self {
            Failure::Sql => 1,
            Failure::Verification => 2,
        }
    }
}

/// Whether the shell goes on after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// How the rows of a request are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// [`write_list`] or [`write_json`].
    Rows,
    /// `.schema` in list mode: each statement followed by `;`.
    Schema,
}

/// The state of one shell run.
struct Session<'a, O, E, F> {
    out: &'a mut O,
    err: &'a mut E,
    json: bool,
    exec: F,
    /// The worst failure so far.
    failure: Option<Failure>,
}

impl<O: Write, E: Write, F: FnMut(&str) -> Result<Outcome, String>> Session<'_, O, E, F> {
    /// Note a failure.
    fn fail(&mut self, failure: Failure) {
        self.failure = self.failure.max(Some(failure));
    }

    /// The exit status so far.
    fn status(&self) -> i32 {
        self.failure.map_or(0, Failure::exit_code)
    }

    /// Report a message on the error stream (after what is already on the output stream).
    fn report(&mut self, message: &str) {
        // Best effort: there is nowhere else to report a failing error stream.
        let _ = self.out.flush();
        let _ = writeln!(self.err, "{message}");
        let _ = self.err.flush();
    }

    /// Report an output error and stop.
    fn output_failed(&mut self, e: &io::Error) -> Flow {
        self.report(&format!("vpr: writing output: {e}"));
        self.fail(Failure::Sql);
        Flow::Stop
    }

    /// Run one SQL text and print what it produced.
    fn sql(&mut self, sql: &str, style: Style) -> Flow {
        let outcome = match (self.exec)(sql) {
            Ok(outcome) => outcome,
            Err(message) => {
                self.report(&format!("vpr: {message}"));
                self.fail(Failure::Verification);
                return Flow::Stop;
            }
        };
        let written = match (style, self.json) {
            (_, true) => write_json(self.out, &outcome),
            (Style::Rows, false) => write_list(self.out, &outcome),
            (Style::Schema, false) => write_schema(self.out, &outcome),
        };
        if let Err(e) = written.and_then(|()| self.out.flush()) {
            return self.output_failed(&e);
        }
        if let Some(SqlError { code, message }) = &outcome.error {
            self.report(&format!("Error: {message} (code {code})"));
            self.fail(Failure::Sql);
        }
        Flow::Continue
    }

    /// Run one dot-command line.
    fn dot(&mut self, line: &str) -> Flow {
        match parse_dot(line) {
            Err(message) => {
                self.report(&format!("Error: {message}"));
                self.fail(Failure::Sql);
                Flow::Continue
            }
            Ok(Dot::Quit) => Flow::Stop,
            Ok(Dot::Help) => match self.out.write_all(HELP.as_bytes()) {
                Ok(()) => Flow::Continue,
                Err(e) => self.output_failed(&e),
            },
            Ok(dot) => match dot_sql(&dot) {
                Some(sql) => {
                    let style =
                        if matches!(dot, Dot::Schema(_)) { Style::Schema } else { Style::Rows };
                    self.sql(&sql, style)
                }
                None => Flow::Continue,
            },
        }
    }

    /// Run one unit of input.
    fn input(&mut self, input: &Input) -> Flow {
        match input {
            Input::Sql(sql) => self.sql(sql, Style::Rows),
            Input::Dot(line) => self.dot(line),
        }
    }
}

/// Write `.schema` rows: each statement followed by `;`.
fn write_schema(out: &mut impl Write, outcome: &Outcome) -> io::Result<()> {
    for result in &outcome.results {
        for row in &result.rows {
            if let Some(value @ (Value::Text(_) | Value::Blob(_))) = row.first() {
                write_list_value(out, value)?;
                out.write_all(b";\n")?;
            }
        }
    }
    Ok(())
}

/// The first prompt, shown before a statement when the input is a terminal.
pub const PROMPT: &str = "vpr> ";
/// The prompt shown before each further line of a statement.
pub const CONTINUATION_PROMPT: &str = "   ...> ";

/// The shell loop: read statements and dot-commands from `input` until its end or `.quit`,
/// run each with `exec`, print the results on `out`; return the exit status.
///
/// `exec` gets one SQL text (complete statements, or what is left at the end of input, or the
/// query of a dot-command) and returns the verified outcome, or the reason there is none (the
/// reply failed verification, the service was unreachable). The rows are printed with
/// [`write_json`] if `json`, else with [`write_list`] (`.schema` prints each statement followed
/// by `;`). An SQL error in the outcome is printed on `err` as `Error: MESSAGE (code N)` after
/// the rows of the statements before it, and the shell goes on with the next input; so does a
/// bad dot-command (`Error: ...`). An `exec` failure is printed as `vpr: MESSAGE` and stops the
/// shell at once. Unreadable input (an I/O error, a line that is not UTF-8, which could not be
/// sent as SQL text) and unwritable output stop it too, as an SQL-class failure. With `prompt`
/// (input from a terminal), [`PROMPT`] is shown on `out` before each statement and
/// [`CONTINUATION_PROMPT`] before each further line of one.
///
/// Returns 0 if nothing failed, 1 if an SQL error (or one of the input or output problems
/// above) occurred, 2 if `exec` failed: the largest [`Failure::exit_code`].
pub fn run<R: BufRead, O: Write, E: Write>(
    mut input: R,
    out: &mut O,
    err: &mut E,
    json: bool,
    prompt: bool,
    exec: impl FnMut(&str) -> Result<Outcome, String>,
) -> i32 {
    let mut session = Session { out, err, json, exec, failure: None };
    let mut assembler = Assembler::new();
    let mut buf = Vec::new();
    let mut line_number = 0u64;
    loop {
        if prompt {
            let text = if assembler.is_fresh() { PROMPT } else { CONTINUATION_PROMPT };
            if let Err(e) =
                session.out.write_all(text.as_bytes()).and_then(|()| session.out.flush())
            {
                session.output_failed(&e);
                return session.status();
            }
        }
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                session.report(&format!("vpr: reading input: {e}"));
                session.fail(Failure::Sql);
                return session.status();
            }
        }
        line_number += 1;
        let Ok(line) = std::str::from_utf8(&buf) else {
            session.report(&format!("vpr: input line {line_number} is not valid UTF-8"));
            session.fail(Failure::Sql);
            return session.status();
        };
        if let Some(unit) = assembler.push_line(line) {
            if session.input(&unit) == Flow::Stop {
                return session.status();
            }
        }
    }
    if prompt {
        // End the prompt line left open by the end of input.
        let _ = session.out.write_all(b"\n");
    }
    if let Some(sql) = assembler.finish() {
        session.sql(&sql, Style::Rows);
    }
    if let Err(e) = session.out.flush() {
        session.output_failed(&e);
    }
    session.status()
}

/// Run the text of `-c SQL` with `exec` as [`run`] would, and return the exit status.
///
/// The text is a single request, however many statements it holds, and needs no final `;`;
/// if its first non-blank character is `.`, it is one dot-command instead. Text holding only
/// whitespace and comments runs nothing.
pub fn run_once<O: Write, E: Write>(
    sql: &str,
    out: &mut O,
    err: &mut E,
    json: bool,
    exec: impl FnMut(&str) -> Result<Outcome, String>,
) -> i32 {
    let mut session = Session { out, err, json, exec, failure: None };
    if sql.trim_start().starts_with('.') {
        session.dot(sql);
    } else {
        let mut scanner = Scanner::default();
        scanner.feed(sql);
        if scanner.has_content() {
            session.sql(sql, Style::Rows);
        }
    }
    if let Err(e) = session.out.flush() {
        session.output_failed(&e);
    }
    session.status()
}
