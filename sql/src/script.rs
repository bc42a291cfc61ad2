//! Scripts: text holding several `;`-terminated statements, as typed into the REPL, given to
//! `eddy -e` / `-f` or named by `RUN SCRIPT`.
//!
//! A script runs one statement at a time, because a statement can change how the next one
//! reads: `DEFINE name = 'value';` makes `${name}` in the statements after it stand for
//! `value` (anywhere in the text, string literals included, as in ksqlDB), and
//! `RUN SCRIPT 'file.sql';` runs a file's statements in its place. So the text is split at
//! each `;` outside quotes and comments first, and each piece is substituted and parsed just
//! before it runs; parse errors still point at the line and column in the whole script.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use crate::ast::Statement;
use crate::error::{Result, SqlError};
use crate::parser::{parse_statements, ParseError};
use crate::session::{Outcome, Session};

/// One statement's text, and where it starts in the script (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    pub text: &'a str,
    pub line: u64,
    pub column: u64,
}

/// Splits a script after each `;` outside quotes (`'`, `"`, `` ` ``) and comments (`--` to the
/// end of the line, `/* */`). A last piece without `;` is kept if it holds more than blanks
/// and comments.
pub fn split(text: &str) -> Vec<Piece<'_>> {
    #[derive(PartialEq)]
    enum In {
        Code,
        Quote(char),
        LineComment,
        BlockComment,
    }
    let mut pieces = Vec::new();
    let mut state = In::Code;
    let (mut start, mut line, mut column) = (0, 1u64, 1u64);
    let (mut piece_line, mut piece_column) = (1u64, 1u64);
    let mut has_code = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        match state {
            In::Code => match c {
                '\'' | '"' | '`' => {
                    state = In::Quote(c);
                    has_code = true;
                }
                '-' if next == Some('-') => state = In::LineComment,
                '/' if next == Some('*') => state = In::BlockComment,
                ';' => {
                    if has_code {
                        pieces.push(Piece {
                            text: &text[start..=i],
                            line: piece_line,
                            column: piece_column,
                        });
                    }
                    start = i + 1;
                    (piece_line, piece_column) = (line, column + 1);
                    has_code = false;
                }
                c if !c.is_whitespace() => has_code = true,
                _ => {}
            },
            // A doubled quote inside quotes is an escaped quote: leaving and re-entering the
            // quoted text on it comes to the same.
            In::Quote(q) if c == q => state = In::Code,
            In::Quote(_) => {}
            In::LineComment if c == '\n' => state = In::Code,
            In::LineComment => {}
            In::BlockComment if c == '*' && next == Some('/') => {
                chars.next();
                column += 1;
                state = In::Code;
            }
            In::BlockComment => {}
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    if has_code {
        pieces.push(Piece {
            text: &text[start..],
            line: piece_line,
            column: piece_column,
        });
    }
    pieces
}

/// Replaces each `${name}` whose name is defined (names are case-insensitive); an undefined
/// one is left as written, for the parser to reject.
pub fn substitute(text: &str, variables: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("${") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find('}') {
            Some(close) => {
                let name = after[..close].trim().to_ascii_lowercase();
                match variables.get(&name) {
                    Some(value) => out.push_str(value),
                    None => out.push_str(&rest[open..open + 3 + close]),
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// `RUN SCRIPT 'path'`: the path, if the piece is one.
pub fn run_script_path(piece: &str) -> Option<String> {
    let t = piece.trim().trim_end_matches(';').trim_end();
    let strip_word = |text: &'_ str, word: &str| -> Option<String> {
        let head = text.get(..word.len())?;
        let rest = &text[word.len()..];
        (head.eq_ignore_ascii_case(word) && rest.starts_with(char::is_whitespace))
            .then(|| rest.trim_start().to_string())
    };
    let rest = strip_word(t, "RUN")?;
    let rest = strip_word(&rest, "SCRIPT")?;
    let path = rest.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(path.replace("''", "'"))
}

/// A parse error's position moved from a piece to the script the piece is in.
fn shift(mut e: ParseError, piece: &Piece<'_>) -> ParseError {
    if e.line == 1 {
        e.column += piece.column - 1;
    }
    e.line += piece.line - 1;
    e
}

/// How deep RUN SCRIPT may nest (a script that runs itself stops here).
const MAX_DEPTH: usize = 16;

/// A piece of a script, with `variables` substituted, parsed; a parse error points into the
/// whole script.
pub fn parse_piece(
    piece: &Piece<'_>,
    variables: &BTreeMap<String, String>,
) -> Result<Vec<(Statement, String)>> {
    parse_statements(&substitute(piece.text, variables)).map_err(|e| shift(e, piece).into())
}

impl Session {
    /// A piece of a script, with this session's variables substituted, parsed.
    pub fn parse_piece(&self, piece: &Piece<'_>) -> Result<Vec<(Statement, String)>> {
        parse_piece(piece, &self.variables)
    }

    /// Runs a script's statements in order, handing each statement's text and outcome to
    /// `each`, which says whether to go on. Statements that changed the catalog stay changed
    /// when a later one fails.
    pub fn run_script(
        &mut self,
        text: &str,
        each: &mut dyn FnMut(&str, Result<Outcome>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        self.run_script_at(text, each, 0)
    }

    fn run_script_at(
        &mut self,
        text: &str,
        each: &mut dyn FnMut(&str, Result<Outcome>) -> ControlFlow<()>,
        depth: usize,
    ) -> ControlFlow<()> {
        for piece in split(text) {
            let substituted = substitute(piece.text, &self.variables);
            if let Some(path) = run_script_path(&substituted) {
                let file = match std::fs::read_to_string(&path) {
                    Ok(f) if depth < MAX_DEPTH => f,
                    Ok(_) => {
                        let e = SqlError::Invalid(format!(
                            "RUN SCRIPT '{path}': scripts nest more than {MAX_DEPTH} deep"
                        ));
                        each(&substituted, Err(e))?;
                        continue;
                    }
                    Err(e) => {
                        let e = SqlError::Invalid(format!("Failed to read file: {path}: {e}"));
                        each(&substituted, Err(e))?;
                        continue;
                    }
                };
                self.run_script_at(&file, each, depth + 1)?;
                continue;
            }
            let statements = match self.parse_piece(&piece) {
                Ok(s) => s,
                Err(e) => {
                    each(piece.text.trim(), Err(e))?;
                    continue;
                }
            };
            for (stmt, stmt_text) in statements {
                let outcome = self.execute(&stmt, &stmt_text);
                each(&stmt_text, outcome)?;
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_splits_at_semicolons_outside_quotes_and_comments() {
        let text =
            "SELECT 'a;b' FROM t;\n-- a comment; still one\nSHOW STREAMS /* ; */;\n  DESCRIBE x";
        let pieces = split(text);
        let texts: Vec<&str> = pieces.iter().map(|p| p.text.trim()).collect();
        assert_eq!(
            texts,
            [
                "SELECT 'a;b' FROM t;",
                "-- a comment; still one\nSHOW STREAMS /* ; */;",
                "DESCRIBE x"
            ]
        );
        assert_eq!((pieces[0].line, pieces[0].column), (1, 1));
        assert_eq!((pieces[1].line, pieces[1].column), (1, 21));
        assert_eq!((pieces[2].line, pieces[2].column), (3, 22));
        assert!(split(" ; -- nothing\n").is_empty());
    }

    #[test]
    fn variables_are_substituted_by_name_case_insensitively() {
        let vars = BTreeMap::from([("topic".to_string(), "orders".to_string())]);
        assert_eq!(
            substitute("WITH (kafka_topic='${TOPIC}') ${other} ${", &vars),
            "WITH (kafka_topic='orders') ${other} ${"
        );
    }

    #[test]
    fn run_script_names_a_file() {
        assert_eq!(
            run_script_path("RUN SCRIPT '/tmp/a b.sql';"),
            Some("/tmp/a b.sql".into())
        );
        assert_eq!(
            run_script_path("run  script 'x''s.sql'"),
            Some("x's.sql".into())
        );
        assert_eq!(run_script_path("SELECT 'RUN SCRIPT';"), None);
    }

    #[test]
    fn a_parse_error_points_into_the_whole_script() {
        let text = "SHOW STREAMS;\nSHOW TABLES; SELEKT 1;";
        let pieces = split(text);
        let e = parse_statements(pieces[2].text).unwrap_err();
        let e = shift(e, &pieces[2]);
        assert_eq!((e.line, e.column), (2, 14));
    }
}
