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
    // Sent before the prompt, Ctrl-D can be flushed away as the terminal enters raw mode.
    p.exp_string("eddy> ").unwrap();
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
    p.exp_string("eddy> ").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    let history = std::fs::read_to_string(dir.path().join(".eddy_history")).unwrap();
    assert!(history.contains("SHOW STREAMS;"), "{history}");
    assert!(history.contains("value_format='JSON');"), "{history}");
}

#[test]
fn push_queries_stop_at_their_limit_or_at_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = spawn(dir.path());
    p.exp_string("eddy> ").unwrap();
    p.send_line("CREATE STREAM clicks (user STRING KEY, n INT) WITH (kafka_topic='clicks', partitions=1, value_format='JSON');")
        .unwrap();
    p.exp_string("STREAM created").unwrap();
    p.send_line("INSERT INTO clicks (user, n) VALUES ('ada', 3);")
        .unwrap();
    p.exp_string("Inserted 1 row").unwrap();
    p.send_line("INSERT INTO clicks (user, n) VALUES ('bob', 4);")
        .unwrap();
    p.exp_string("Inserted 1 row").unwrap();
    p.send_line("SET 'auto.offset.reset'='earliest';").unwrap();
    p.exp_string("Successfully changed").unwrap();
    // Function names complete too.
    p.send("SELECT user, n * 2 AS twice, UPP\t").unwrap();
    p.flush().unwrap();
    p.exp_string("UPPER").unwrap();
    p.send_line("(user) AS u FROM clicks EMIT CHANGES LIMIT 2;")
        .unwrap();
    p.exp_string("|TWICE").unwrap();
    p.exp_string("|ada").unwrap();
    p.exp_string("|6").unwrap();
    p.exp_string("|ADA").unwrap();
    p.exp_string("|bob").unwrap();
    p.exp_string("Limit Reached").unwrap();
    p.exp_string("eddy> ").unwrap();

    // Without a LIMIT it shows the rows there are, then waits for more until Ctrl-C.
    p.send_line("SELECT * FROM clicks WHERE n > 3 EMIT CHANGES;")
        .unwrap();
    p.exp_string("|USER").unwrap();
    p.exp_string("|bob").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    p.send_control('c').unwrap();
    p.exp_string("Query terminated").unwrap();
    p.exp_string("eddy> ").unwrap();
    p.send_line("SHOW STREAMS;").unwrap();
    p.exp_string("CLICKS").unwrap();

    // PRINT shows the records with the formats it detected.
    p.send_line("PRINT clicks FROM BEGINNING LIMIT 2;").unwrap();
    p.exp_string("Key format: KAFKA_STRING").unwrap();
    p.exp_string("key: ada, value: {\"N\":3}, partition: 0")
        .unwrap();
    p.exp_string("key: bob").unwrap();
    p.exp_string("eddy> ").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

/// The statements of the README's tour, one string per statement, as a user types them (line by
/// line).
fn readme_tour() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("<!-- tour: start -->")
        .expect("the tour's start marker");
    let end = readme
        .find("<!-- tour: end -->")
        .expect("the tour's end marker");
    let block = &readme[start..end];
    let body = block
        .split_once("```sql\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(code, _)| code)
        .expect("a sql block in the tour");
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in body.lines() {
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            statements.push(std::mem::take(&mut current));
        }
    }
    statements
}

#[test]
fn the_readme_tour_works_as_written() {
    let tour = readme_tour();
    assert_eq!(tour.len(), 9, "{tour:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut p = spawn(dir.path());
    p.exp_string("eddy> ").unwrap();
    let expect: [&[&str]; 8] = [
        &["STREAM created"],
        &["Inserted 1 row"],
        &["Inserted 1 row"],
        &["Inserted 1 row"],
        &["Inserted 1 row"],
        &["Successfully changed"],
        &[
            "|USER ",
            "|ada          |/home        |120",
            "|bob          |/cart        |300",
            "Limit Reached",
        ],
        &["Created query with ID CTAS_VIEWS_PER_MINUTE_0"],
    ];
    // The last, a pull query, is checked below: the table's query may still be catching up.
    for (statement, expected) in tour.iter().zip(expect) {
        let lines: Vec<&str> = statement.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            p.send_line(line).unwrap();
            if i + 1 < lines.len() {
                // Typed ahead of the prompt, a line can be lost as the terminal mode changes.
                p.exp_string("-> ").unwrap();
            }
        }
        for e in expected {
            p.exp_string(e).unwrap();
        }
        p.exp_string("eddy> ").unwrap();
    }
    let pull = tour[8].replace('\n', " ");
    let mut tries = 0;
    loop {
        p.send_line(&pull).unwrap();
        let before = p.exp_string("eddy> ").unwrap();
        if before.contains("| 1767258060000 | 1767258120000 | 1     | 95") {
            assert!(
                before.contains("| 1767258000000 | 1767258060000 | 2     | 200"),
                "{before}"
            );
            break;
        }
        tries += 1;
        assert!(tries < 50, "the table never showed both windows: {before}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}
