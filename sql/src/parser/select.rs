//! The SELECT statement and its clauses: FROM with joins and WITHIN, WINDOW, WHERE, GROUP BY,
//! PARTITION BY, HAVING, EMIT and LIMIT.

use datafusion::sql::sqlparser::ast::{Expr, SelectItem};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{KsqlParser, ParseError, CLAUSE_WORDS};
use crate::ast::*;

impl KsqlParser<'_> {
    pub(super) fn select(&mut self) -> Result<Select, ParseError> {
        self.expect_word("SELECT")?;
        let items: Vec<SelectItem> = self.parser.parse_projection().map_err(|e| self.wrap(e))?;
        self.expect_word("FROM")?;
        let source = self.relation()?;
        let mut joins = Vec::new();
        loop {
            let kind = if self.eat_word("JOIN") || self.eat_words(&["INNER", "JOIN"]) {
                JoinKind::Inner
            } else if self.eat_words(&["LEFT", "JOIN"])
                || self.eat_words(&["LEFT", "OUTER", "JOIN"])
            {
                JoinKind::Left
            } else if self.eat_words(&["RIGHT", "JOIN"])
                || self.eat_words(&["RIGHT", "OUTER", "JOIN"])
            {
                JoinKind::Right
            } else if self.eat_words(&["FULL", "JOIN"])
                || self.eat_words(&["FULL", "OUTER", "JOIN"])
            {
                JoinKind::Full
            } else {
                break;
            };
            let relation = self.relation()?;
            let within = if self.eat_word("WITHIN") {
                Some(self.within()?)
            } else {
                None
            };
            self.expect_word("ON")?;
            let on = self.expr()?;
            joins.push(Join {
                kind,
                relation,
                within,
                on,
            });
        }
        let window = if self.eat_word("WINDOW") {
            Some(self.window()?)
        } else {
            None
        };
        let where_clause = if self.eat_word("WHERE") {
            Some(self.expr()?)
        } else {
            None
        };
        let group_by = if self.eat_words(&["GROUP", "BY"]) {
            self.expr_list()?
        } else {
            Vec::new()
        };
        let partition_by = if self.eat_words(&["PARTITION", "BY"]) {
            self.expr_list()?
        } else {
            Vec::new()
        };
        let having = if self.eat_word("HAVING") {
            Some(self.expr()?)
        } else {
            None
        };
        let emit = if self.eat_word("EMIT") {
            if self.eat_word("CHANGES") {
                Some(Emit::Changes)
            } else if self.eat_word("FINAL") {
                Some(Emit::Final)
            } else {
                return Err(self.expected("CHANGES or FINAL"));
            }
        } else {
            None
        };
        let limit = if self.eat_word("LIMIT") {
            match self.peek() {
                // A pull query's LIMIT is checked after parsing, with a message of its own; a
                // push query's is only a syntax error, as in ksqlDB's grammar.
                Token::Minus if emit.is_none() => {
                    return Err(self.error_here(
                        "Pull queries don't support negative integers in the LIMIT clause. See https://cnfl.io/queries for more info.",
                    ));
                }
                Token::Number(n, _) if n.parse::<u64>().is_err() => {
                    return Err(self.error_here(
                        "Failed to prepare statement: Value must be integer for command: LIMIT",
                    ));
                }
                _ => Some(self.parser.parse_literal_uint().map_err(|e| self.wrap(e))?),
            }
        } else {
            None
        };
        Ok(Select {
            items,
            from: FromClause { source, joins },
            window,
            where_clause,
            group_by,
            partition_by,
            having,
            emit,
            limit,
        })
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.parser.parse_expr().map_err(|e| self.wrap(e))
    }

    fn expr_list(&mut self) -> Result<Vec<Expr>, ParseError> {
        self.parser
            .parse_comma_separated(Parser::parse_expr)
            .map_err(|e| self.wrap(e))
    }

    fn relation(&mut self) -> Result<Relation, ParseError> {
        let name = self.name()?;
        let explicit = self.eat_word("AS");
        let alias = match self.peek_word() {
            Some(w) if !explicit && CLAUSE_WORDS.contains(&w.as_str()) => None,
            _ if matches!(self.peek(), Token::Word(_)) => Some(self.name()?),
            _ if explicit => return Err(self.expected("an alias")),
            _ => None,
        };
        Ok(Relation { name, alias })
    }

    fn duration_ms(&mut self) -> Result<u64, ParseError> {
        let n = self.parser.parse_literal_uint().map_err(|e| self.wrap(e))?;
        let unit = self
            .peek_word()
            .ok_or_else(|| self.expected("a time unit"))?;
        let Some(ms) = time_unit_ms(&unit) else {
            return Err(self.expected("MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS"));
        };
        self.parser.next_token();
        Ok(n * ms)
    }

    fn within(&mut self) -> Result<Within, ParseError> {
        let (before_ms, after_ms) = if self.parser.consume_token(&Token::LParen) {
            let b = self.duration_ms()?;
            self.expect_token(&Token::Comma)?;
            let a = self.duration_ms()?;
            self.expect_token(&Token::RParen)?;
            (b, a)
        } else {
            let d = self.duration_ms()?;
            (d, d)
        };
        let grace_ms = if self.eat_words(&["GRACE", "PERIOD"]) {
            Some(self.duration_ms()?)
        } else {
            None
        };
        Ok(Within {
            before_ms,
            after_ms,
            grace_ms,
        })
    }

    fn window(&mut self) -> Result<WindowSpec, ParseError> {
        let kind = self
            .peek_word()
            .ok_or_else(|| self.expected("TUMBLING, HOPPING or SESSION"))?;
        self.parser.next_token();
        self.expect_token(&Token::LParen)?;
        let (mut size, mut advance, mut gap, mut retention, mut grace) =
            (None, None, None, None, None);
        match kind.as_str() {
            "SESSION" => gap = Some(self.duration_ms()?),
            "TUMBLING" | "HOPPING" => {}
            _ => {
                self.parser.prev_token();
                self.parser.prev_token();
                return Err(self.expected("TUMBLING, HOPPING or SESSION"));
            }
        }
        loop {
            if self.parser.consume_token(&Token::RParen) {
                break;
            }
            let _ = self.parser.consume_token(&Token::Comma);
            if self.eat_word("SIZE") {
                size = Some(self.duration_ms()?);
            } else if self.eat_words(&["ADVANCE", "BY"]) {
                advance = Some(self.duration_ms()?);
            } else if self.eat_word("RETENTION") {
                retention = Some(self.duration_ms()?);
            } else if self.eat_words(&["GRACE", "PERIOD"]) {
                grace = Some(self.duration_ms()?);
            } else {
                return Err(self.expected("SIZE, ADVANCE BY, RETENTION, GRACE PERIOD or ')'"));
            }
        }
        let need = |v: Option<u64>, what: &str, p: &Self| {
            v.ok_or_else(|| p.error_here(&format!("{kind} window needs {what}")))
        };
        Ok(match kind.as_str() {
            "TUMBLING" => WindowSpec::Tumbling {
                size_ms: need(size, "SIZE", self)?,
                retention_ms: retention,
                grace_ms: grace,
            },
            "HOPPING" => WindowSpec::Hopping {
                size_ms: need(size, "SIZE", self)?,
                advance_ms: need(advance, "ADVANCE BY", self)?,
                retention_ms: retention,
                grace_ms: grace,
            },
            _ => WindowSpec::Session {
                gap_ms: gap.expect("parsed above"),
                retention_ms: retention,
                grace_ms: grace,
            },
        })
    }
}

/// Milliseconds in one of ksqlDB's time units (upper case, singular or plural).
pub(crate) fn time_unit_ms(unit: &str) -> Option<u64> {
    Some(match unit.trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return None,
    })
}
