//! When SQL text ends a statement: the state machine of SQLite 3.54.1's `sqlite3_complete`.

/// What the next token is, as far as statement ends go (SQLite's `tk*` codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Semi = 0,
    Ws = 1,
    Other = 2,
    Explain = 3,
    Create = 4,
    Temp = 5,
    Trigger = 6,
    End = 7,
}

/// Transitions of `sqlite3_incomplete`: `TRANS[state][token]`. States: 0 nothing seen yet,
/// 1 at the end of a statement, 2 in a statement, 3 after EXPLAIN, 4 after CREATE (TEMP),
/// 5 in a trigger body, 6 after a `;` in a trigger body, 7 after `; END` in one.
const TRANS: [[u8; 8]; 8] = [
    [1, 0, 2, 3, 4, 2, 2, 2],
    [1, 1, 2, 3, 4, 2, 2, 2],
    [1, 2, 2, 2, 2, 2, 2, 2],
    [1, 3, 3, 2, 4, 2, 2, 2],
    [1, 4, 2, 2, 2, 4, 5, 2],
    [6, 5, 5, 5, 5, 5, 5, 5],
    [6, 6, 5, 5, 5, 5, 5, 7],
    [1, 7, 5, 5, 5, 5, 5, 5],
];

/// The state at the end of a statement.
const START: u8 = 1;

/// A character of an identifier or keyword (SQLite's `IdChar`): letters, digits, `_`, `$`
/// and every byte of a non-ASCII character.
fn id_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// The token a keyword (or other identifier) stands for.
fn keyword(word: &[u8]) -> Token {
    let is = |k: &str| word.eq_ignore_ascii_case(k.as_bytes());
    if is("create") {
        Token::Create
    } else if is("trigger") {
        Token::Trigger
    } else if is("temp") || is("temporary") {
        Token::Temp
    } else if is("end") {
        Token::End
    } else if is("explain") {
        Token::Explain
    } else {
        Token::Other
    }
}

/// A construct left open at the end of the text scanned so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    /// A quoted string or identifier, closed by this byte (`'`, `"`, `` ` `` or `]`).
    Quote(u8),
    /// A `/* */` comment.
    Block,
    /// A `--` comment.
    Line,
}

/// Incremental `sqlite3_complete`: feed text piece by piece, ask whether it is complete.
///
/// Pieces are cut at line ends (every piece but the last ends with `\n`), which no token
/// spans except the open constructs tracked in [`Open`].
#[derive(Clone, Debug, Default)]
pub(super) struct Scanner {
    /// The state machine's state.
    state: u8,
    /// What is still open, if anything.
    open: Option<Open>,
    /// Whether a token other than whitespace, a comment or `;` has been seen.
    content: bool,
}

impl Scanner {
    /// Scan `text`, continuing where the previous piece stopped.
    pub(super) fn feed(&mut self, text: &str) {
        let s = text.as_bytes();
        let mut i = 0;
        while i < s.len() {
            match self.open {
                Some(Open::Quote(close)) => match s[i..].iter().position(|&c| c == close) {
                    Some(k) => {
                        i += k + 1;
                        self.open = None;
                        self.step(Token::Other);
                    }
                    None => return,
                },
                Some(Open::Block) => match s[i..].windows(2).position(|w| w == b"*/") {
                    Some(k) => {
                        i += k + 2;
                        self.open = None;
                        self.step(Token::Ws);
                    }
                    None => return,
                },
                Some(Open::Line) => match s[i..].iter().position(|&c| c == b'\n') {
                    Some(k) => {
                        i += k + 1;
                        self.open = None;
                        self.step(Token::Ws);
                    }
                    None => return,
                },
                None => {
                    let c = s[i];
                    let next = s.get(i + 1).copied();
                    match c {
                        b';' => {
                            self.step(Token::Semi);
                            i += 1;
                        }
                        b' ' | b'\r' | b'\t' | b'\n' | b'\x0c' => {
                            self.step(Token::Ws);
                            i += 1;
                        }
                        b'/' if next == Some(b'*') => {
                            self.open = Some(Open::Block);
                            i += 2;
                        }
                        b'-' if next == Some(b'-') => {
                            self.open = Some(Open::Line);
                            i += 2;
                        }
                        b'[' | b'`' | b'"' | b'\'' => {
                            self.content = true;
                            self.open = Some(Open::Quote(if c == b'[' { b']' } else { c }));
                            i += 1;
                        }
                        _ if id_char(c) => {
                            let len = s[i..].iter().take_while(|&&c| id_char(c)).count();
                            self.step(keyword(&s[i..i + len]));
                            i += len;
                        }
                        _ => {
                            self.step(Token::Other);
                            i += 1;
                        }
                    }
                }
            }
        }
    }

    /// Apply one token.
    fn step(&mut self, token: Token) {
        if !matches!(token, Token::Ws | Token::Semi) {
            self.content = true;
        }
        let row = TRANS.get(usize::from(self.state)).copied().unwrap_or(TRANS[0]);
        self.state = row[token as usize];
    }

    /// Whether the text so far is complete: it ends with `;` (`; END;` for CREATE TRIGGER)
    /// followed at most by whitespace and closed comments.
    pub(super) fn complete(&self) -> bool {
        self.state == START && self.open.is_none()
    }

    /// Whether the text so far holds anything besides whitespace, comments and `;`.
    pub(super) fn has_content(&self) -> bool {
        self.content
    }
}

/// Whether `sql` ends a statement, exactly as SQLite 3.54.1's `sqlite3_complete` decides.
///
/// The text is complete when its last token is a `;` that is not inside a string literal,
/// a quoted identifier (`"..."`, `` `...` ``, `[...]`) or a comment, and nothing but
/// whitespace and closed comments follows it (a `--` comment is closed by a newline). A
/// `CREATE [TEMP|TEMPORARY] TRIGGER` statement, possibly after `EXPLAIN`, is complete only
/// after `END;`: the semicolons inside its body do not end it. Text of only whitespace and
/// comments is not complete.
pub fn is_complete(sql: &str) -> bool {
    let mut scanner = Scanner::default();
    scanner.feed(sql);
    scanner.complete()
}
