use super::*;
use vpr_proto::msg::StatementResult;

fn rows(rows: Vec<Vec<Value>>) -> StatementResult {
    StatementResult { columns: Vec::new(), rows, changes: 0 }
}

fn outcome(results: Vec<StatementResult>) -> Outcome {
    Outcome { results, error: None }
}

fn list(outcome: &Outcome) -> String {
    let mut out = Vec::new();
    write_list(&mut out, outcome).unwrap();
    String::from_utf8(out).unwrap()
}

fn json(outcome: &Outcome) -> String {
    let mut out = Vec::new();
    write_json(&mut out, outcome).unwrap();
    String::from_utf8(out).unwrap()
}

fn text(s: &str) -> Value {
    Value::Text(s.as_bytes().to_vec())
}

// ---- REAL text ----------------------------------------------------------------------------

/// Each expected text is what SQLite 3.54.1 answers for `SELECT CAST(?1 AS TEXT)`.
#[test]
fn real_text_matches_sqlite() {
    let cases: &[(f64, &str)] = &[
        (1.0, "1.0"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (100.0, "100.0"),
        (1e15, "1000000000000000.0"),
        (1e14, "100000000000000.0"),
        (1e16, "10000000000000000.0"),
        (1e17, "1.0e+17"),
        (123456789012345.0, "123456789012345.0"),
        (9999999999999998.0, "9999999999999998.0"),
        (1e-5, "1.0e-05"),
        (0.0001, "0.0001"),
        (0.00012345, "0.00012345"),
        (1.2345e-5, "1.2345e-05"),
        (-1e-7, "-1.0e-07"),
        (1e100, "1.0e+100"),
        (1e21, "1.0e+21"),
        (1.005e22, "1.005e+22"),
        (1.5e-300, "1.5e-300"),
        (f64::MAX, "1.7976931348623157e+308"),
        (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        (5e-324, "4.9406564584124654e-324"),
        (0.30000000000000004, "0.30000000000000004"),
        (1.0 / 3.0, "0.33333333333333332"),
        (1152921504606846976.0, "1.152921504606847e+18"),
        (12345678901234567890.0, "1.2345678901234567e+19"),
        (123.456, "123.456"),
        (4.35, "4.35"),
        (f64::INFINITY, "Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (0.0, "0.0"),
        // SQLite's decoder tests `r < 0.0`, which is false for -0.0.
        (-0.0, "0.0"),
        // SQLite never stores NaN (it becomes NULL), and NULL prints as nothing.
        (f64::NAN, ""),
    ];
    for &(r, want) in cases {
        assert_eq!(real_to_text(r), want, "{r:?}");
    }
}

#[test]
fn real_text_reads_back() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let r = f64::from_bits(x);
        let text = real_to_text(r);
        if r.is_finite() {
            let back: f64 = text.parse().unwrap();
            // 17 significant digits always identify the double.
            assert!(back == r, "{r:?} -> {text}");
            assert!(text.contains('.'), "{text}");
        }
    }
}

// ---- list mode ----------------------------------------------------------------------------

#[test]
fn list_mode_joins_values_with_bars() {
    let o = outcome(vec![
        rows(vec![
            vec![Value::Integer(1), text("a"), Value::Null, Value::Real(2.0)],
            vec![Value::Integer(-9223372036854775808), text(""), Value::Real(0.5), Value::Null],
        ]),
        rows(Vec::new()),
        rows(vec![vec![Value::Blob(vec![b'x', 0, 0xff]), Value::Text(vec![b'o', 0xff, b'k'])]]),
    ]);
    let mut out = Vec::new();
    write_list(&mut out, &o).unwrap();
    let mut want = b"1|a||2.0\n-9223372036854775808||0.5|\n".to_vec();
    want.extend_from_slice(&[b'x', 0, 0xff, b'|']);
    want.extend_from_slice("o\u{fffd}k\n".as_bytes());
    assert_eq!(out, want);
}

#[test]
fn list_mode_prints_nothing_for_writes() {
    let o = Outcome {
        results: vec![StatementResult { columns: vec!["x".into()], rows: Vec::new(), changes: 3 }],
        error: Some(SqlError { code: 1, message: "boom".into() }),
    };
    assert_eq!(list(&o), "");
    assert_eq!(json(&o), "");
}

// ---- JSON lines ---------------------------------------------------------------------------

#[test]
fn json_lines_keep_types() {
    let o = outcome(vec![
        rows(vec![
            vec![Value::Null, Value::Integer(i64::MAX), Value::Integer(-3)],
            vec![Value::Real(1.5), Value::Real(1.0), Value::Real(0.1), Value::Real(-0.0)],
            vec![Value::Real(f64::INFINITY), Value::Real(f64::NEG_INFINITY), Value::Real(f64::NAN)],
        ]),
        rows(vec![vec![
            text("a\"b\\\n\t\u{1}é"),
            Value::Text(vec![b'x', 0xff]),
            Value::Blob(vec![0, 0xab, 0xff]),
            Value::Blob(Vec::new()),
        ]]),
    ]);
    let want = concat!(
        "[null,9223372036854775807,-3]\n",
        "[1.5,1.0,0.1,-0.0]\n",
        "[{\"real\":\"Inf\"},{\"real\":\"-Inf\"},null]\n",
        "[\"a\\\"b\\\\\\n\\t\\u0001é\",\"x\u{fffd}\",{\"blob\":\"00abff\"},{\"blob\":\"\"}]\n",
    );
    assert_eq!(json(&o), want);
    for line in want.lines() {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(parsed.is_array());
    }
}

#[test]
fn json_reals_read_back_as_reals() {
    let reals = [0.1, 1.0 / 3.0, 1e16, 1e100, 123456789.0, f64::MAX, 5e-324, -2.5, 2.0];
    let o = outcome(vec![rows(vec![reals.iter().map(|&r| Value::Real(r)).collect()])]);
    let parsed: serde_json::Value = serde_json::from_str(json(&o).trim_end()).unwrap();
    let values = parsed.as_array().unwrap();
    for (value, &r) in values.iter().zip(&reals) {
        assert!(value.is_f64(), "{value}");
        assert_eq!(value.as_f64(), Some(r));
    }
}

// ---- dot-commands -------------------------------------------------------------------------

#[test]
fn parse_dot_commands() {
    assert_eq!(parse_dot(".tables"), Ok(Dot::Tables(None)));
    assert_eq!(parse_dot("  .tables  t%  \r\n"), Ok(Dot::Tables(Some("t%".into()))));
    assert_eq!(parse_dot(".ta 'a b'"), Ok(Dot::Tables(Some("a b".into()))));
    assert_eq!(parse_dot(".schema"), Ok(Dot::Schema(None)));
    assert_eq!(parse_dot(".sc \"x%\""), Ok(Dot::Schema(Some("x%".into()))));
    assert_eq!(parse_dot(".help"), Ok(Dot::Help));
    assert_eq!(parse_dot(".h"), Ok(Dot::Help));
    assert_eq!(parse_dot(".quit"), Ok(Dot::Quit));
    assert_eq!(parse_dot(".q"), Ok(Dot::Quit));
    assert_eq!(parse_dot(".exit"), Ok(Dot::Quit));
    assert_eq!(parse_dot(".foo"), Err("unknown command: .foo (.help lists commands)".into()));
    assert_eq!(parse_dot(".t"), Err("unknown command: .t (.help lists commands)".into()));
    assert_eq!(parse_dot(".e"), Err("unknown command: .e (.help lists commands)".into()));
    assert_eq!(
        parse_dot(".tablesx"),
        Err("unknown command: .tablesx (.help lists commands)".into())
    );
    assert_eq!(parse_dot("."), Err("unknown command: . (.help lists commands)".into()));
    assert_eq!(parse_dot(".tables a b"), Err("usage: .tables ?PATTERN?".into()));
    assert_eq!(parse_dot(".schema a b"), Err("usage: .schema ?PATTERN?".into()));
    assert_eq!(parse_dot(".quit now"), Err("usage: .quit".into()));
    assert!(parse_dot(".tables 'open").is_err());
    assert!(parse_dot("tables").is_err());
}

#[test]
fn dot_sql_queries() {
    let hidden = "name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'vpr\\_%' ESCAPE '\\'";
    assert_eq!(
        dot_sql(&Dot::Tables(None)).unwrap(),
        format!(
            "SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND {hidden} ORDER BY 1"
        )
    );
    assert_eq!(
        dot_sql(&Dot::Tables(Some("it's%".into()))).unwrap(),
        format!(
            "SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND {hidden} \
             AND name LIKE 'it''s%' ORDER BY 1"
        )
    );
    assert_eq!(
        dot_sql(&Dot::Schema(None)).unwrap(),
        format!(
            "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND {hidden} \
             ORDER BY tbl_name, type DESC, name"
        )
    );
    assert_eq!(
        dot_sql(&Dot::Schema(Some("t".into()))).unwrap(),
        format!(
            "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND {hidden} \
             AND tbl_name LIKE 't' ORDER BY tbl_name, type DESC, name"
        )
    );
    assert_eq!(dot_sql(&Dot::Help), None);
    assert_eq!(dot_sql(&Dot::Quit), None);
}

// ---- statement completeness ---------------------------------------------------------------

#[test]
fn complete_statements() {
    let complete = [
        "SELECT 1;",
        ";",
        "SELECT 1;  \n\t",
        "SELECT 1; -- done\n",
        "SELECT 1; /* done */",
        "SELECT 'a;b';",
        "SELECT 'it''s';",
        "SELECT \"a;\"\"b\";",
        "SELECT [a;b];",
        "SELECT `a;b`;",
        "SELECT 1 /* ; */;",
        "SELECT 1 -- ;\n;",
        "SELECT 1; SELECT 2;",
        "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; SELECT 2; END;",
        "create temp trigger t after insert on x begin select 1; end ;",
        "CREATE TEMPORARY TRIGGER t AFTER INSERT ON x BEGIN SELECT 1;\nEND\n;\n",
        "EXPLAIN CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END;",
        "CREATE TABLE end(x); ",
        "CREATE TABLE t(x); CREATE TABLE u(y);",
        "SELECT 'é;';",
    ];
    for sql in complete {
        assert!(is_complete(sql), "{sql:?}");
    }
    let incomplete = [
        "",
        "   \n",
        "-- comment\n",
        "SELECT 1",
        "SELECT 1; SELECT 2",
        "SELECT 'a;",
        "SELECT 'a'';",
        "SELECT \"a;",
        "SELECT [a;",
        "SELECT `a;",
        "SELECT 1 /* ;",
        "SELECT 1 -- ;",
        // As in SQLite 3.54.1, a final `--` comment needs its newline.
        "SELECT 1; -- done",
        "SELECT 1; /* open",
        "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1;",
        "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END",
        "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END; SELECT 2",
        "CREATE TEMP TRIGGER t AFTER INSERT ON x BEGIN SELECT 'END;';",
        "EXPLAIN CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1;",
    ];
    for sql in incomplete {
        assert!(!is_complete(sql), "{sql:?}");
    }
}

#[test]
fn assembler_joins_lines() {
    let mut a = Assembler::new();
    assert!(a.is_fresh());
    assert_eq!(a.push_line("\n"), None);
    assert_eq!(a.push_line("   \r\n"), None);
    assert!(a.is_fresh());
    assert_eq!(a.push_line("SELECT 1,\n"), None);
    assert!(!a.is_fresh());
    assert_eq!(a.push_line("\n"), None);
    assert_eq!(a.push_line(".tables\n"), None, "not a dot-command inside a statement");
    assert_eq!(a.push_line("  'x;\r\n"), None);
    assert_eq!(a.push_line("y';\n"), Some(Input::Sql("SELECT 1,\n\n.tables\n  'x;\ny';".into())));
    assert!(a.is_fresh());
    assert_eq!(a.push_line(" .schema t\n"), Some(Input::Dot(" .schema t".into())));
    assert_eq!(a.push_line(";\n"), None, "an empty statement is dropped");
    assert_eq!(a.push_line("-- note\n"), None);
    assert_eq!(a.push_line(";"), None);
    assert!(a.is_fresh());
    assert_eq!(a.push_line("CREATE TRIGGER t AFTER INSERT ON x BEGIN"), None);
    assert_eq!(a.push_line("  SELECT 1;"), None);
    assert_eq!(
        a.push_line("END;"),
        Some(Input::Sql("CREATE TRIGGER t AFTER INSERT ON x BEGIN\n  SELECT 1;\nEND;".into()))
    );
    assert_eq!(
        a.push_line("SELECT 1; -- trailing"),
        Some(Input::Sql("SELECT 1; -- trailing".into()))
    );
    assert_eq!(a.push_line("SELECT 2"), None);
    assert_eq!(a.finish(), Some("SELECT 2".into()));
    assert!(a.is_fresh());
    assert_eq!(a.push_line("-- only a comment"), None);
    assert_eq!(a.finish(), None);
    assert_eq!(a.finish(), None);
}

// ---- the loop -----------------------------------------------------------------------------

/// A fake service: `SELECT n` answers n; `BAD` is an SQL error; `LIE` fails verification.
#[derive(Default)]
struct Fake {
    calls: Vec<String>,
}

impl Fake {
    fn exec(&mut self, sql: &str) -> Result<Outcome, String> {
        self.calls.push(sql.to_owned());
        if sql.contains("LIE") {
            return Err("reply failed verification".into());
        }
        if sql.contains("sqlite_schema") {
            let found = if sql.starts_with("SELECT sql") {
                vec![vec![text("CREATE TABLE t(x)")], vec![text("CREATE INDEX i ON t(x)")]]
            } else {
                vec![vec![text("t")], vec![text("u")]]
            };
            return Ok(outcome(vec![rows(found)]));
        }
        let mut results = Vec::new();
        for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            if stmt.contains("BAD") {
                return Ok(Outcome {
                    results,
                    error: Some(SqlError { code: 1, message: "near \"BAD\": syntax error".into() }),
                });
            }
            let n: i64 = stmt.trim_start_matches("SELECT").trim().parse().unwrap_or(0);
            results.push(rows(vec![vec![Value::Integer(n), text("x")]]));
        }
        Ok(outcome(results))
    }
}

struct Ran {
    status: i32,
    out: String,
    err: String,
    calls: Vec<String>,
}

fn run_shell(input: &str, json: bool, prompt: bool) -> Ran {
    let mut fake = Fake::default();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = run(input.as_bytes(), &mut out, &mut err, json, prompt, |sql| fake.exec(sql));
    Ran {
        status,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
        calls: fake.calls,
    }
}

fn run_c(sql: &str, json: bool) -> Ran {
    let mut fake = Fake::default();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = run_once(sql, &mut out, &mut err, json, |sql| fake.exec(sql));
    Ran {
        status,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
        calls: fake.calls,
    }
}

#[test]
fn loop_success_exits_zero() {
    let ran = run_shell("SELECT 1;\nSELECT\n  2;\n\nSELECT 3; SELECT 4;\n", false, false);
    assert_eq!(ran.status, 0);
    assert_eq!(ran.calls, ["SELECT 1;", "SELECT\n  2;", "SELECT 3; SELECT 4;"]);
    assert_eq!(ran.out, "1|x\n2|x\n3|x\n4|x\n");
    assert_eq!(ran.err, "");
}

#[test]
fn loop_sql_error_exits_one_and_continues() {
    let ran = run_shell("SELECT 1; BAD; SELECT 9;\nSELECT 2;\n", false, false);
    assert_eq!(ran.status, 1);
    assert_eq!(ran.calls.len(), 2);
    assert_eq!(ran.out, "1|x\n2|x\n");
    assert_eq!(ran.err, "Error: near \"BAD\": syntax error (code 1)\n");
}

#[test]
fn loop_verification_failure_exits_two_and_stops() {
    let ran = run_shell("BAD;\nSELECT LIE;\nSELECT 2;\n", false, false);
    assert_eq!(ran.status, 2);
    assert_eq!(ran.calls, ["BAD;", "SELECT LIE;"]);
    assert_eq!(ran.out, "");
    assert_eq!(
        ran.err,
        "Error: near \"BAD\": syntax error (code 1)\nvpr: reply failed verification\n"
    );
}

#[test]
fn loop_quit_stops_with_current_status() {
    let ran = run_shell("SELECT 1;\n.quit\nSELECT 2;\n", false, false);
    assert_eq!((ran.status, ran.calls.len()), (0, 1));
    let ran = run_shell("BAD;\n.exit\nSELECT 2;\n", false, false);
    assert_eq!((ran.status, ran.calls.len()), (1, 1));
}

#[test]
fn loop_dot_commands() {
    let ran = run_shell(".tables\n.schema t%\n.help\n.nope\nSELECT 5;\n", false, false);
    assert_eq!(ran.status, 1);
    assert_eq!(ran.calls.len(), 3);
    assert_eq!(ran.calls[0], dot_sql(&Dot::Tables(None)).unwrap());
    assert_eq!(ran.calls[1], dot_sql(&Dot::Schema(Some("t%".into()))).unwrap());
    assert_eq!(ran.calls[2], "SELECT 5;");
    assert_eq!(ran.out, format!("t\nu\nCREATE TABLE t(x);\nCREATE INDEX i ON t(x);\n{HELP}5|x\n"));
    assert_eq!(ran.err, "Error: unknown command: .nope (.help lists commands)\n");
}

#[test]
fn loop_json_mode() {
    let ran = run_shell("SELECT 7;\n.schema\n", true, false);
    assert_eq!(ran.status, 0);
    assert_eq!(ran.out, "[7,\"x\"]\n[\"CREATE TABLE t(x)\"]\n[\"CREATE INDEX i ON t(x)\"]\n");
}

#[test]
fn loop_runs_trailing_statement_at_eof() {
    let ran = run_shell("SELECT 1;\nSELECT\n 2", false, false);
    assert_eq!(ran.calls, ["SELECT 1;", "SELECT\n 2"]);
    assert_eq!(ran.out, "1|x\n2|x\n");
    let ran = run_shell("SELECT 1;\n-- bye\n", false, false);
    assert_eq!(ran.calls, ["SELECT 1;"]);
}

#[test]
fn loop_multiline_trigger_is_one_request() {
    let input = "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  INSERT INTO u VALUES(1);\n  \
                 INSERT INTO u VALUES(2);\nEND;\nSELECT 3;\n";
    let ran = run_shell(input, false, false);
    assert_eq!(ran.calls.len(), 2);
    assert!(ran.calls[0].starts_with("CREATE TRIGGER") && ran.calls[0].ends_with("END;"));
    assert_eq!(ran.calls[1], "SELECT 3;");
}

#[test]
fn loop_prompts() {
    let ran = run_shell("SELECT\n1;\n", false, true);
    assert_eq!(ran.out, "vpr>    ...> 1|x\nvpr> \n");
}

#[test]
fn loop_stops_on_invalid_utf8() {
    let mut fake = Fake::default();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let input: &[u8] = b"SELECT 1;\nSELECT '\xff';\nSELECT 2;\n";
    let status = run(input, &mut out, &mut err, false, false, |sql| fake.exec(sql));
    assert_eq!(status, 1);
    assert_eq!(fake.calls, ["SELECT 1;"]);
    assert_eq!(String::from_utf8(err).unwrap(), "vpr: input line 2 is not valid UTF-8\n");
}

#[test]
fn run_once_modes() {
    let ran = run_c("SELECT 1; SELECT 2", false);
    assert_eq!((ran.status, ran.calls.len(), ran.out.as_str()), (0, 1, "1|x\n2|x\n"));
    let ran = run_c("SELECT 1; BAD", true);
    assert_eq!((ran.status, ran.out.as_str()), (1, "[1,\"x\"]\n"));
    assert_eq!(ran.err, "Error: near \"BAD\": syntax error (code 1)\n");
    let ran = run_c("SELECT LIE", false);
    assert_eq!((ran.status, ran.out.as_str()), (2, ""));
    assert_eq!(ran.err, "vpr: reply failed verification\n");
    let ran = run_c(" .tables", false);
    assert_eq!((ran.status, ran.out.as_str()), (0, "t\nu\n"));
    let ran = run_c(".bogus", false);
    assert_eq!((ran.status, ran.calls.len()), (1, 0));
    let ran = run_c(".quit", false);
    assert_eq!((ran.status, ran.calls.len()), (0, 0));
    let ran = run_c("  -- nothing\n", false);
    assert_eq!((ran.status, ran.calls.len()), (0, 0));
}

#[test]
fn failure_exit_codes() {
    assert_eq!(Failure::Sql.exit_code(), 1);
    assert_eq!(Failure::Verification.exit_code(), 2);
    assert!(Failure::Verification > Failure::Sql);
}
