//! The ksqlDB-dialect parser.
//!
//! Statements and clauses specific to ksqlDB are parsed here, word by word, on `sqlparser`'s
//! tokenizer and [`Parser`]; expressions, select items and literals are parsed by `sqlparser`
//! itself (extended, not forked). Every error carries the line and column where parsing
//! stopped, and says what was expected.

use std::fmt;

use datafusion::sql::sqlparser::ast::Ident;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Word};

use crate::types::SqlType;

use crate::ast::*;
use crate::dialect::KsqlDialect;

/// A statement that does not parse, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ksqlDB's shape: the position and `Syntax Error`, then what is wrong on its own line.
        write!(
            f,
            "line {}:{}: Syntax Error\n{}",
            self.line, self.column, self.message
        )
    }
}

/// Parses a script of `;`-terminated statements (the last `;` may be missing). Returns each
/// statement with its source text.
pub fn parse_statements(sql: &str) -> Result<Vec<(Statement, String)>, ParseError> {
    let mut p = KsqlParser::over(sql)?;
    let mut out = Vec::new();
    loop {
        while p.parser.consume_token(&Token::SemiColon) {}
        if p.peek() == Token::EOF {
            break;
        }
        let start = p.parser.peek_token().span.start;
        let stmt = p.statement()?;
        let end_tok = p.parser.peek_token();
        if !matches!(end_tok.token, Token::SemiColon | Token::EOF) {
            return Err(p.error_here(&format!(
                "expected ';' or the end of the statement, found {}",
                end_tok.token
            )));
        }
        let text = slice_text(
            sql,
            start.line,
            start.column,
            end_tok.span.start.line,
            end_tok.span.start.column,
        );
        out.push((stmt, text));
    }
    Ok(out)
}

/// Parses a column list as ksqlDB prints a schema: `` `K` STRING KEY, V INT ``.
pub fn parse_schema(text: &str) -> Result<Vec<ColumnDef>, ParseError> {
    let wrapped = format!("({text})");
    let mut p = KsqlParser::over(&wrapped)?;
    let cols = p.column_defs()?;
    if p.peek() != Token::EOF {
        return Err(p.expected("the end of the schema"));
    }
    Ok(cols)
}

/// Parses a type as ksqlDB writes it: `ARRAY<STRUCT<A INT>>`.
pub fn parse_type(text: &str) -> Result<SqlType, ParseError> {
    let mut p = KsqlParser::over(text)?;
    let ty = p.sql_type()?;
    if p.peek() != Token::EOF || p.pending_gt > 0 {
        return Err(p.expected("the end of the type"));
    }
    Ok(ty)
}

/// Parses exactly one statement.
pub fn parse_statement(sql: &str) -> Result<Statement, ParseError> {
    let mut all = parse_statements(sql)?;
    match all.len() {
        1 => Ok(all.remove(0).0),
        0 => Err(ParseError {
            line: 1,
            column: 1,
            message: "expected a statement".into(),
        }),
        n => Err(ParseError {
            line: 1,
            column: 1,
            message: format!("expected one statement, found {n}"),
        }),
    }
}

fn end_of(sql: &str) -> (u64, u64) {
    let line = sql.matches('\n').count() as u64 + 1;
    let col = sql.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
    (line, col)
}

fn slice_text(sql: &str, l1: u64, c1: u64, l2: u64, c2: u64) -> String {
    let offset = |line: u64, col: u64| -> usize {
        let mut pos = 0usize;
        for (i, l) in sql.split_inclusive('\n').enumerate() {
            if i as u64 + 1 == line {
                return pos
                    + l.char_indices()
                        .nth(col.saturating_sub(1) as usize)
                        .map_or(l.len(), |(b, _)| b);
            }
            pos += l.len();
        }
        sql.len()
    };
    let (a, b) = (
        offset(l1, c1),
        if l2 == 0 { sql.len() } else { offset(l2, c2) },
    );
    sql[a..b.max(a)].trim().to_string()
}

struct KsqlParser<'a> {
    parser: Parser<'a>,
    /// Line and column just past the input, for errors at its end (EOF has no position).
    end: (u64, u64),
    /// `>` already consumed as half of a `>>` token, in nested type arguments.
    pending_gt: usize,
}

impl KsqlParser<'static> {
    /// A parser over `text`, tokenized by ksqlDB's rules.
    fn over(text: &str) -> Result<Self, ParseError> {
        static DIALECT: KsqlDialect = KsqlDialect;
        let tokens = Tokenizer::new(&DIALECT, text)
            .tokenize_with_location()
            .map_err(|e| ParseError {
                line: e.location.line,
                column: e.location.column,
                message: e.message,
            })?;
        Ok(KsqlParser {
            parser: Parser::new(&DIALECT).with_tokens_with_locations(tokens),
            end: end_of(text),
            pending_gt: 0,
        })
    }
}

/// Words that end a relation and so cannot be its alias.
const CLAUSE_WORDS: &[&str] = &[
    "WINDOW",
    "WHERE",
    "GROUP",
    "PARTITION",
    "HAVING",
    "EMIT",
    "LIMIT",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "OUTER",
    "WITHIN",
    "ON",
];

impl<'a> KsqlParser<'a> {
    fn peek(&self) -> Token {
        self.parser.peek_token().token
    }

    fn peek_word(&self) -> Option<String> {
        self.word_at(0)
    }

    fn word_at(&self, n: usize) -> Option<String> {
        match self.parser.peek_nth_token(n).token {
            Token::Word(Word {
                value,
                quote_style: None,
                ..
            }) => Some(value.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek_word().as_deref() == Some(w) {
            self.parser.next_token();
            true
        } else {
            false
        }
    }

    fn eat_words(&mut self, ws: &[&str]) -> bool {
        if ws
            .iter()
            .enumerate()
            .all(|(i, w)| self.word_at(i).as_deref() == Some(*w))
        {
            for _ in ws {
                self.parser.next_token();
            }
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<(), ParseError> {
        if self.eat_word(w) {
            Ok(())
        } else {
            Err(self.expected(w))
        }
    }

    fn expect_token(&mut self, t: &Token) -> Result<(), ParseError> {
        if self.parser.consume_token(t) {
            Ok(())
        } else {
            Err(self.expected(&format!("'{t}'")))
        }
    }

    fn error_here(&self, message: &str) -> ParseError {
        let TokenWithSpan { span, .. } = self.parser.peek_token();
        let (line, column) = if span.start.line == 0 {
            self.end
        } else {
            (span.start.line, span.start.column)
        };
        ParseError {
            line,
            column,
            message: message.to_string(),
        }
    }

    fn expected(&self, what: &str) -> ParseError {
        let found = match self.peek() {
            Token::EOF => "the end of the input".to_string(),
            t => format!("'{t}'"),
        };
        self.error_here(&format!("expected {what}, found {found}"))
    }

    /// Converts a `sqlparser` error, whose message carries its own position.
    fn wrap(&self, e: ParserError) -> ParseError {
        let msg = match e {
            ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
            ParserError::RecursionLimitExceeded => "expression nested too deeply".to_string(),
        };
        // "... at Line: 3, Column: 14"
        if let Some(i) = msg.rfind(" at Line: ") {
            let pos = &msg[i + " at Line: ".len()..];
            let mut nums = pos
                .split(", Column: ")
                .map(|n| n.trim().parse::<u64>().ok());
            if let (Some(Some(line)), Some(Some(column))) = (nums.next(), nums.next()) {
                let (line, column) = if line == 0 { self.end } else { (line, column) };
                return ParseError {
                    line,
                    column,
                    message: msg[..i].to_string(),
                };
            }
        }
        self.error_here(&msg)
    }

    fn name(&mut self) -> Result<Name, ParseError> {
        match self.parser.next_token().token {
            Token::Word(w) => Ok(normalize_word(&w.value, w.quote_style)),
            _ => {
                self.parser.prev_token();
                Err(self.expected("a name"))
            }
        }
    }

    fn statement(&mut self) -> Result<Statement, ParseError> {
        let Some(first) = self.peek_word() else {
            return Err(self.expected("a statement"));
        };
        match first.as_str() {
            "CREATE" => self.create(),
            "INSERT" => self.insert(),
            "SELECT" => Ok(Statement::Query(Box::new(self.select()?))),
            "DROP" => self.drop(),
            "SHOW" | "LIST" => self.show(),
            "DESCRIBE" => self.describe(),
            "EXPLAIN" => {
                self.parser.next_token();
                if let Some(Token::Word(_)) = Some(self.peek()) {
                    if matches!(self.peek_word().as_deref(), Some("SELECT" | "CREATE" | "INSERT")) {
                        return Ok(Statement::Explain(Box::new(self.statement()?)));
                    }
                }
                Ok(Statement::ExplainQuery(self.name()?))
            }
            word @ ("TERMINATE" | "PAUSE" | "RESUME") => {
                self.parser.next_token();
                let id = match self.eat_word("ALL") {
                    true => None,
                    false => Some(self.name()?),
                };
                Ok(match word {
                    "TERMINATE" => Statement::Terminate(id),
                    "PAUSE" => Statement::Pause(id),
                    _ => Statement::Resume(id),
                })
            }
            "PRINT" => self.print(),
            "SET" => {
                self.parser.next_token();
                let name = self.string()?;
                self.expect_token(&Token::Eq)?;
                let value = self.string()?;
                Ok(Statement::Set { name, value })
            }
            "UNSET" => {
                self.parser.next_token();
                Ok(Statement::Unset(self.string()?))
            }
            "DEFINE" => {
                self.parser.next_token();
                let name = self.raw_word()?;
                self.expect_token(&Token::Eq)?;
                let value = self.string()?;
                Ok(Statement::Define { name, value })
            }
            "UNDEFINE" => {
                self.parser.next_token();
                Ok(Statement::Undefine(self.raw_word()?))
            }
            _ => Err(self.error_here(&format!(
                "Unknown statement '{first}': expected CREATE, INSERT, SELECT, DROP, SHOW, LIST, DESCRIBE, EXPLAIN, TERMINATE, PAUSE, RESUME, PRINT, SET, UNSET, DEFINE or UNDEFINE"
            ))),
        }
    }

    fn raw_word(&mut self) -> Result<String, ParseError> {
        match self.parser.next_token().token {
            Token::Word(w) => Ok(w.value),
            _ => {
                self.parser.prev_token();
                Err(self.expected("a name"))
            }
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.parser.parse_literal_string().map_err(|e| self.wrap(e))
    }

    fn create(&mut self) -> Result<Statement, ParseError> {
        self.expect_word("CREATE")?;
        let or_replace = self.eat_words(&["OR", "REPLACE"]);
        let read_only = self.eat_word("SOURCE");
        if !read_only && self.eat_word("TYPE") {
            let if_not_exists = self.eat_words(&["IF", "NOT", "EXISTS"]);
            let name = self.name()?;
            self.expect_word("AS")?;
            let ty = self.sql_type()?;
            return Ok(Statement::CreateType {
                if_not_exists,
                name,
                ty,
            });
        }
        let kind = if self.eat_word("STREAM") {
            SourceKind::Stream
        } else if self.eat_word("TABLE") {
            SourceKind::Table
        } else {
            return Err(self.expected(if read_only {
                "STREAM or TABLE"
            } else {
                "STREAM, TABLE or TYPE"
            }));
        };
        let if_not_exists = self.eat_words(&["IF", "NOT", "EXISTS"]);
        let name = self.name()?;
        let columns = if self.peek() == Token::LParen {
            self.column_defs()?
        } else {
            Vec::new()
        };
        let properties = if self.eat_word("WITH") {
            self.properties()?
        } else {
            Properties::default()
        };
        if self.eat_word("AS") {
            if read_only {
                return Err(self.error_here("CREATE SOURCE cannot have a query"));
            }
            if !columns.is_empty() {
                return Err(self.error_here("a CREATE ... AS SELECT cannot declare columns"));
            }
            let query = Box::new(self.select()?);
            return Ok(Statement::CreateAsSelect(CreateAsSelect {
                or_replace,
                kind,
                if_not_exists,
                name,
                properties,
                query,
            }));
        }
        Ok(Statement::CreateSource(CreateSource {
            or_replace,
            read_only,
            kind,
            if_not_exists,
            name,
            columns,
            properties,
        }))
    }

    fn insert(&mut self) -> Result<Statement, ParseError> {
        self.expect_word("INSERT")?;
        self.expect_word("INTO")?;
        let target = self.name()?;
        let columns = if self.peek() == Token::LParen {
            self.parser.next_token();
            let mut cols = vec![self.name()?];
            while self.parser.consume_token(&Token::Comma) {
                cols.push(self.name()?);
            }
            self.expect_token(&Token::RParen)?;
            Some(cols)
        } else {
            None
        };
        if self.eat_word("VALUES") {
            self.expect_token(&Token::LParen)?;
            let values = self
                .parser
                .parse_comma_separated(Parser::parse_expr)
                .map_err(|e| self.wrap(e))?;
            self.expect_token(&Token::RParen)?;
            return Ok(Statement::InsertValues {
                target,
                columns,
                values,
            });
        }
        if columns.is_some() {
            return Err(self.expected("VALUES"));
        }
        Ok(Statement::InsertInto {
            target,
            query: Box::new(self.select()?),
        })
    }

    fn drop(&mut self) -> Result<Statement, ParseError> {
        self.expect_word("DROP")?;
        if self.eat_word("TYPE") {
            let if_exists = self.eat_words(&["IF", "EXISTS"]);
            return Ok(Statement::DropType {
                if_exists,
                name: self.name()?,
            });
        }
        let kind = if self.eat_word("STREAM") {
            SourceKind::Stream
        } else if self.eat_word("TABLE") {
            SourceKind::Table
        } else {
            return Err(self.expected("STREAM, TABLE or TYPE"));
        };
        let if_exists = self.eat_words(&["IF", "EXISTS"]);
        let name = self.name()?;
        let delete_topic = self.eat_words(&["DELETE", "TOPIC"]);
        Ok(Statement::Drop {
            kind,
            if_exists,
            name,
            delete_topic,
        })
    }

    fn show(&mut self) -> Result<Statement, ParseError> {
        self.parser.next_token();
        let all = self.eat_word("ALL");
        let what = self.peek_word().ok_or_else(|| {
            self.expected(
                "STREAMS, TABLES, TOPICS, QUERIES, FUNCTIONS, PROPERTIES, TYPES or VARIABLES",
            )
        })?;
        self.parser.next_token();
        let extended = self.eat_word("EXTENDED");
        Ok(Statement::Show(match what.as_str() {
            "STREAMS" => ShowKind::Streams { extended },
            "TABLES" => ShowKind::Tables { extended },
            "TOPICS" => ShowKind::Topics { all, extended },
            "QUERIES" => ShowKind::Queries { extended },
            "FUNCTIONS" => ShowKind::Functions,
            "PROPERTIES" => ShowKind::Properties,
            "TYPES" => ShowKind::Types,
            "VARIABLES" => ShowKind::Variables,
            _ => {
                self.parser.prev_token();
                return Err(self.expected(
                    "STREAMS, TABLES, TOPICS, QUERIES, FUNCTIONS, PROPERTIES, TYPES or VARIABLES",
                ));
            }
        }))
    }

    fn describe(&mut self) -> Result<Statement, ParseError> {
        self.expect_word("DESCRIBE")?;
        if self.eat_word("FUNCTION") {
            return Ok(Statement::DescribeFunction(self.name()?));
        }
        if self.eat_word("STREAMS") || self.eat_word("TABLES") {
            return Err(self.error_here(
                "DESCRIBE STREAMS/TABLES is not supported; use SHOW STREAMS EXTENDED",
            ));
        }
        let extended = self.eat_word("EXTENDED");
        Ok(Statement::Describe {
            name: self.name()?,
            extended,
        })
    }

    fn print(&mut self) -> Result<Statement, ParseError> {
        self.expect_word("PRINT")?;
        let topic = match self.parser.next_token().token {
            Token::Word(w) => w.value,
            Token::SingleQuotedString(s) => s,
            _ => {
                self.parser.prev_token();
                return Err(self.expected("a topic name"));
            }
        };
        let from_beginning = self.eat_words(&["FROM", "BEGINNING"]);
        let mut interval = None;
        let mut limit = None;
        loop {
            if self.eat_word("INTERVAL") || self.eat_word("SAMPLE") {
                interval = Some(self.parser.parse_literal_uint().map_err(|e| self.wrap(e))?);
            } else if self.eat_word("LIMIT") {
                limit = Some(self.parser.parse_literal_uint().map_err(|e| self.wrap(e))?);
            } else {
                break;
            }
        }
        Ok(Statement::Print(Print {
            topic,
            from_beginning,
            interval,
            limit,
        }))
    }
}

/// ksqlDB's identifier rule: unquoted names are upper-cased.
pub fn normalize(ident: &Ident) -> Name {
    normalize_word(&ident.value, ident.quote_style)
}

fn normalize_word(value: &str, quote_style: Option<char>) -> Name {
    match quote_style {
        None => value.to_ascii_uppercase(),
        Some(_) => value.to_string(),
    }
}

mod definitions;
pub(crate) mod select;
#[cfg(test)]
mod tests;
