//! The line classifier of `tcb`: every line of a source file is exactly one of blank, comment,
//! test or code, and code lines may also count as `unsafe` lines.
//!
//! - **blank**: only whitespace.
//! - **test** (Rust): a non-blank line of a `#[cfg(test)]` module, from the attribute to the
//!   module's closing brace (found by brace depth, braces in comments, strings and character
//!   literals ignored). A `#[cfg(test)] mod name;` declaration is a test line and is reported so
//!   that the caller can count the module's file as test code.
//! - **comment**: no code outside `//` and `/* */` comments (doc comments included).
//! - **code**: everything else; a line inside a multi-line string literal is code.
//! - **unsafe**: a code line with the token `unsafe` outside comments and string literals.
//!
//! Only `#[cfg(test)]` exactly marks test code; other items under it (a lone function or `use`)
//! stay code, as do `#[cfg(all(test, ...))]` modules.

/// Line counts of one file or of many.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Files.
    pub files: u64,
    /// All lines.
    pub total: u64,
    /// Whitespace-only lines.
    pub blank: u64,
    /// Lines holding only comments.
    pub comment: u64,
    /// Non-blank lines of test modules and test files.
    pub test: u64,
    /// The rest: lines of code.
    pub code: u64,
    /// Code lines with the `unsafe` keyword.
    pub unsafe_lines: u64,
}

impl Counts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.files += other.files;
        self.total += other.total;
        self.blank += other.blank;
        self.comment += other.comment;
        self.test += other.test;
        self.code += other.code;
        self.unsafe_lines += other.unsafe_lines;
    }

    /// These counts with every non-blank line moved to `test` (a file that is all tests).
    pub fn all_test(mut self) -> Counts {
        self.test += self.code + self.comment;
        self.code = 0;
        self.comment = 0;
        self.unsafe_lines = 0;
        self
    }
}

/// The languages the classifier knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Rust: nested block comments, raw strings, lifetimes, `#[cfg(test)]` modules.
    Rust,
    /// C and its headers.
    C,
}

/// What scanning a file found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Its line counts (`files` = 1).
    pub counts: Counts,
    /// The names of the `#[cfg(test)] mod name;` modules it declares.
    pub test_modules: Vec<String>,
}

/// The lexer's state between lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    /// Inside a block comment, nested this deep.
    BlockComment(u32),
    /// Inside a string literal.
    Str,
    /// Inside a raw string literal closed by `"` and this many `#`.
    RawStr(usize),
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// One line's code, with comments dropped and the contents of strings and character literals
/// replaced by nothing (their quotes kept), and whether the line has any code at all.
fn strip(line: &str, lang: Lang, state: &mut State) -> (String, bool) {
    let chars: Vec<char> = line.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut code = String::new();
    let mut has_code = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match *state {
            State::BlockComment(depth) => {
                if c == '*' && at(i + 1) == Some('/') {
                    *state = if depth <= 1 { State::Code } else { State::BlockComment(depth - 1) };
                    i += 2;
                } else if lang == Lang::Rust && c == '/' && at(i + 1) == Some('*') {
                    *state = State::BlockComment(depth + 1);
                    i += 2;
                } else {
                    i += 1;
                }
            }
            State::Str => {
                has_code |= !c.is_whitespace();
                if c == '\\' {
                    i += 2;
                } else {
                    if c == '"' {
                        *state = State::Code;
                        code.push('"');
                    }
                    i += 1;
                }
            }
            State::RawStr(hashes) => {
                has_code |= !c.is_whitespace();
                if c == '"' && (1..=hashes).all(|k| at(i + k) == Some('#')) {
                    *state = State::Code;
                    code.push('"');
                    i += 1 + hashes;
                } else {
                    i += 1;
                }
            }
            State::Code => {
                let ident_start = i == 0 || !is_ident(chars[i - 1]);
                if c == '/' && at(i + 1) == Some('/') {
                    break;
                } else if c == '/' && at(i + 1) == Some('*') {
                    *state = State::BlockComment(1);
                    i += 2;
                } else if c == '"' {
                    *state = State::Str;
                    code.push('"');
                    has_code = true;
                    i += 1;
                } else if let Some(after) = raw_string_start(&chars, i, lang, ident_start) {
                    let hashes = after - i - 2 - usize::from(c == 'b');
                    *state = State::RawStr(hashes);
                    code.push('"');
                    has_code = true;
                    i = after;
                } else if c == '\'' {
                    has_code = true;
                    code.push('\'');
                    i = match (lang, at(i + 1), at(i + 2)) {
                        // A lifetime or a label: `'a`, `'static`.
                        (Lang::Rust, Some(n), Some(m)) if n != '\\' && m != '\'' => i + 1,
                        (Lang::Rust, Some(_), None) => i + 1,
                        // A character literal: skip to its closing quote.
                        _ => {
                            let mut j = i + 1;
                            while j < chars.len() && chars[j] != '\'' {
                                j += if chars[j] == '\\' { 2 } else { 1 };
                            }
                            code.push('\'');
                            j + 1
                        }
                    };
                } else {
                    has_code |= !c.is_whitespace();
                    code.push(c);
                    i += 1;
                }
            }
        }
    }
    if *state == State::Str && lang == Lang::C && !line.ends_with('\\') {
        // C strings end at the line's end unless continued.
        *state = State::Code;
    }
    (code, has_code)
}

/// If a Rust raw string (`r"`, `r#"`, `br##"` ...) starts at `i`, the index after its opening
/// quote.
fn raw_string_start(chars: &[char], i: usize, lang: Lang, ident_start: bool) -> Option<usize> {
    if lang != Lang::Rust || !ident_start {
        return None;
    }
    let mut j = i;
    if chars[j] == 'b' {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some(j + 1)
}

/// Whether `code` has `word` as a whole token.
fn has_token(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// `text` without a leading `pub`, `pub(crate)` and the like.
fn strip_visibility(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("pub") else { return text };
    if rest.starts_with('(') {
        rest.split_once(')').map_or(text, |(_, after)| after.trim_start())
    } else if rest.starts_with(char::is_whitespace) {
        rest.trim_start()
    } else {
        text
    }
}

/// `text` without leading complete attributes (`#[...]`); `None` if one does not close on
/// this line.
fn strip_attributes(mut text: &str) -> Option<&str> {
    while let Some(rest) = text.strip_prefix("#[") {
        let mut depth = 1;
        let end = rest.char_indices().find_map(|(at, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(at)
        })?;
        text = rest[end + 1..].trim_start();
    }
    Some(text)
}

/// A module declaration at the start of `text`: its name and whether the line ends it with `;`.
fn module_declaration(text: &str) -> Option<(String, bool)> {
    let rest = strip_visibility(text).strip_prefix("mod")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim_start();
    let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
    if name.is_empty() {
        return None;
    }
    Some((name.clone(), rest[name.len()..].trim_start().starts_with(';')))
}

/// The open test module being skipped.
#[derive(Debug, Clone, Copy)]
struct TestRegion {
    depth: i64,
    opened: bool,
}

fn brace_balance(code: &str) -> (i64, bool) {
    let opens = code.matches('{').count();
    let closes = code.matches('}').count();
    let balance = i64::try_from(opens).unwrap_or(i64::MAX) - i64::try_from(closes).unwrap_or(0);
    (balance, opens > 0)
}

/// Classifies every line of `text`.
pub fn scan(text: &str, lang: Lang) -> Scan {
    let mut scan = Scan::default();
    let counts = &mut scan.counts;
    counts.files = 1;
    let mut state = State::Code;
    let mut region: Option<TestRegion> = None;
    // Lines since a `#[cfg(test)]` whose item is not known yet (counted as code or comment
    // for now): (code lines, comment lines).
    let mut pending: Option<(u64, u64)> = None;
    for line in text.lines() {
        counts.total += 1;
        let (code, has_code) = strip(line, lang, &mut state);
        if line.trim().is_empty() {
            counts.blank += 1;
            continue;
        }
        if let Some(open) = region.as_mut() {
            counts.test += 1;
            let (balance, opens) = brace_balance(&code);
            open.depth += balance;
            open.opened |= opens;
            if open.opened && open.depth <= 0 {
                region = None;
            }
            continue;
        }
        let trimmed = code.trim();
        let mut item = trimmed;
        if lang == Lang::Rust {
            if let Some(rest) = trimmed.strip_prefix("#[cfg(test)]") {
                pending = Some(pending.unwrap_or((0, 0)));
                item = rest.trim_start();
            }
        }
        if let Some((pending_code, pending_comment)) = pending {
            match strip_attributes(item) {
                // Only attributes (or a comment): the item comes later.
                Some("") | None => {
                    if has_code {
                        counts.code += 1;
                        pending = Some((pending_code + 1, pending_comment));
                    } else {
                        counts.comment += 1;
                        pending = Some((pending_code, pending_comment + 1));
                    }
                    continue;
                }
                Some(rest) => {
                    pending = None;
                    if let Some((name, declaration_only)) = module_declaration(rest) {
                        // The attribute lines seen so far were the module's.
                        counts.code -= pending_code;
                        counts.comment -= pending_comment;
                        counts.test += pending_code + pending_comment + 1;
                        if declaration_only {
                            scan.test_modules.push(name);
                        } else {
                            let (depth, opened) = brace_balance(&code);
                            if !opened || depth > 0 {
                                region = Some(TestRegion { depth, opened });
                            }
                        }
                        continue;
                    }
                }
            }
        }
        if has_code {
            counts.code += 1;
            if has_token(&code, "unsafe") {
                counts.unsafe_lines += 1;
            }
        } else {
            counts.comment += 1;
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rust(text: &str) -> Scan {
        scan(text, Lang::Rust)
    }

    #[test]
    fn blank_comment_and_code_lines() {
        let text = "//! Crate docs.\n\
                    \n\
                    /// A function.\n\
                    fn f() -> u32 { // trailing comment\n\
                    \x20   /* a block\n\
                    \x20      comment */ 1\n\
                    }\n\
                    /* one /* nested */ block */\n\
                    \t  \n";
        let counts = rust(text).counts;
        assert_eq!(
            counts,
            Counts { files: 1, total: 9, blank: 2, comment: 4, test: 0, code: 3, unsafe_lines: 0 }
        );
        let c = scan("/* c */\nint x; // y\n#define A \"//\"\n", Lang::C).counts;
        assert_eq!((c.comment, c.code), (1, 2));
    }

    #[test]
    fn test_modules_are_excluded() {
        let text = "fn a() {}\n\
                    #[cfg(test)]\n\
                    #[allow(clippy::unwrap_used)]\n\
                    mod tests {\n\
                    \x20   use super::*;\n\
                    \n\
                    \x20   #[test]\n\
                    \x20   fn braces_in_strings() { let _ = \"}}}\"; let _ = '}'; }\n\
                    \x20   // }\n\
                    \x20   fn u() { unsafe {} }\n\
                    }\n\
                    fn b() {}\n\
                    #[cfg(test)]\n\
                    mod more;\n\
                    #[cfg(test)]\n\
                    fn helper() {}\n\
                    #[cfg(test)] pub(crate) mod inline { }\n";
        let s = rust(text);
        assert_eq!(s.test_modules, vec![String::from("more")]);
        let c = s.counts;
        assert_eq!(c.total, 17);
        assert_eq!(c.blank, 1);
        assert_eq!(c.test, 9 + 2 + 1, "the module, `mod more;` and the inline one");
        assert_eq!(c.code, 4, "a, b and the test helper with its attribute");
        assert_eq!(c.unsafe_lines, 0, "the unsafe line is in the test module");
        assert_eq!(c.comment, 0);
    }

    #[test]
    fn unsafe_is_counted_as_a_token_in_code_only() {
        let text = "unsafe fn f() {}\n\
                    // SAFETY: unsafe in a comment\n\
                    let s = \"unsafe\";\n\
                    let n = not_unsafe_at_all + unsafe_fn();\n\
                    let p = unsafe { *q }; /* unsafe */\n\
                    #[allow(unsafe_code)]\n\
                    let r = r#\"a \" unsafe\"#;\n\
                    impl<'a> X<'a> { unsafe fn g(&'a self) -> char { '\\'' } }\n";
        let c = rust(text).counts;
        assert_eq!(c.code, 7);
        assert_eq!(c.comment, 1);
        assert_eq!(c.unsafe_lines, 3);
    }

    #[test]
    fn multi_line_strings_are_code() {
        let c = rust("let s = \"\n// not a comment\n\";\nlet t = 1;\n").counts;
        assert_eq!((c.code, c.comment), (4, 0));
    }

    #[test]
    fn all_test_moves_lines() {
        let c =
            Counts { files: 1, total: 10, blank: 2, comment: 3, test: 1, code: 4, unsafe_lines: 1 };
        let t = c.all_test();
        assert_eq!((t.test, t.code, t.comment, t.unsafe_lines, t.blank), (8, 0, 0, 0, 2));
    }
}
