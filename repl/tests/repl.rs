//! The REPL driven through a pseudo-terminal, as a user types into it.

use rexpect::session::PtySession;

fn spawn(dir: &std::path::Path) -> PtySession {
    let cmd = format!(
        "{} --data-dir {}",
        env!("CARGO_BIN_EXE_eddy"),
        dir.display()
    );
    rexpect::spawn(&cmd, Some(20_000)).expect("eddy starts")
}

#[test]
fn statements_span_lines_run_and_persist_with_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = spawn(dir.path());
    p.exp_string("Statements end with ';'").unwrap();
    p.exp_string("eddy> ").unwrap();
    // A statement over three lines runs when its ';' arrives.
    p.send_line("CREATE STREAM clicks (user STRING KEY, n INT)")
        .unwrap();
    p.exp_string("-> ").unwrap();
    p.send_line("  WITH (kafka_topic='clicks', partitions=1,")
        .unwrap();
    p.exp_string("-> ").unwrap();
    p.send_line("  value_format='JSON');").unwrap();
    p.exp_string("STREAM created").unwrap();
    p.send_line("SET 'auto.offset.reset'='earliest';").unwrap();
    p.exp_string("Successfully changed").unwrap();
    p.send_line("INSERT INTO clicks (user, n) VALUES ('ada', 3);")
        .unwrap();
    p.exp_string("Inserted 1 row").unwrap();
    p.send_line("CREATE TABLE totals AS SELECT user, SUM(n) AS total FROM clicks GROUP BY user;")
        .unwrap();
    p.exp_string("Created query with ID CTAS_TOTALS_0").unwrap();
    // A mistake is reported and the REPL goes on.
    p.send_line("SELEKT 1;").unwrap();
    p.exp_string("line 1:").unwrap();
    // Ctrl-C drops a half-typed statement.
    p.send_line("SHOW").unwrap();
    p.exp_string("-> ").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("eddy> ").unwrap();
    // Tab completes keywords and the names of sources.
    p.send("SHOW STRE\t").unwrap();
    p.flush().unwrap();
    p.exp_string("SHOW STREAM").unwrap();
    p.send_line("S;").unwrap();
    p.exp_string("CLICKS").unwrap();
    p.send("DESCRIBE CLI\t").unwrap();
    p.flush().unwrap();
    p.exp_string("CLICKS").unwrap();
    p.send_line(";").unwrap();
    p.exp_string("USER").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();

    // The catalog, the query and the history are there the next time.
    let mut p = spawn(dir.path());
    p.exp_string("eddy> ").unwrap();
    let mut waited = 0;
    loop {
        p.send_line("SELECT * FROM totals;").unwrap();
        if p.exp_string("ada").is_ok() {
            break;
        }
        waited += 1;
        assert!(waited < 5, "the table never answered");
    }
    p.exp_string("3").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    let history = std::fs::read_to_string(dir.path().join(".eddy_history")).unwrap();
    assert!(history.contains("SHOW STREAMS;"), "{history}");
    assert!(history.contains("value_format='JSON');"), "{history}");
}
