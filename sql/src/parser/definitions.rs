//! Column definitions, types and WITH properties.

use datafusion::sql::sqlparser::tokenizer::Token;

use super::{KsqlParser, ParseError};
use crate::ast::*;
use crate::types::SqlType;

impl KsqlParser<'_> {
    pub(super) fn column_defs(&mut self) -> Result<Vec<ColumnDef>, ParseError> {
        self.expect_token(&Token::LParen)?;
        let mut cols = Vec::new();
        loop {
            let name = self.name()?;
            let ty = self.sql_type()?;
            let role = if self.eat_words(&["PRIMARY", "KEY"]) {
                ColumnRole::Key { primary: true }
            } else if self.eat_word("KEY") {
                ColumnRole::Key { primary: false }
            } else if self.eat_word("HEADERS") {
                ColumnRole::Headers
            } else if self.eat_word("HEADER") {
                self.expect_token(&Token::LParen)?;
                let h = self.string()?;
                self.expect_token(&Token::RParen)?;
                ColumnRole::Header(h)
            } else {
                ColumnRole::Value
            };
            cols.push(ColumnDef { name, ty, role });
            if !self.parser.consume_token(&Token::Comma) {
                break;
            }
        }
        self.expect_token(&Token::RParen)?;
        Ok(cols)
    }

    fn expect_gt(&mut self) -> Result<(), ParseError> {
        if self.pending_gt > 0 {
            self.pending_gt -= 1;
            return Ok(());
        }
        match self.peek() {
            Token::Gt => {
                self.parser.next_token();
                Ok(())
            }
            Token::ShiftRight => {
                self.parser.next_token();
                self.pending_gt += 1;
                Ok(())
            }
            _ => Err(self.expected("'>'")),
        }
    }

    pub(super) fn sql_type(&mut self) -> Result<SqlType, ParseError> {
        let tok = self.parser.next_token();
        let Token::Word(w) = tok.token else {
            self.parser.prev_token();
            return Err(self.expected("a type"));
        };
        if w.quote_style.is_some() {
            return Ok(SqlType::Named(w.value));
        }
        let ty = match w.value.to_ascii_uppercase().as_str() {
            "BOOLEAN" => SqlType::Boolean,
            "INT" | "INTEGER" => SqlType::Int,
            "BIGINT" => SqlType::Bigint,
            "DOUBLE" => SqlType::Double,
            "STRING" | "VARCHAR" => SqlType::String,
            "BYTES" => SqlType::Bytes,
            "TIMESTAMP" => SqlType::Timestamp,
            "DATE" => SqlType::Date,
            "TIME" => SqlType::Time,
            "DECIMAL" => {
                self.expect_token(&Token::LParen)?;
                let precision = self.parser.parse_literal_uint().map_err(|e| self.wrap(e))?;
                self.expect_token(&Token::Comma)?;
                let scale = self.parser.parse_literal_uint().map_err(|e| self.wrap(e))?;
                self.expect_token(&Token::RParen)?;
                if precision == 0 || precision > 38 || scale > precision {
                    return Err(self.error_here(&format!("invalid DECIMAL({precision}, {scale}): precision must be 1 to 38 and scale at most the precision")));
                }
                SqlType::Decimal {
                    precision: precision as u8,
                    scale: scale as i8,
                }
            }
            "ARRAY" => {
                self.expect_token(&Token::Lt)?;
                let inner = self.sql_type()?;
                self.expect_gt()?;
                SqlType::Array(Box::new(inner))
            }
            "MAP" => {
                self.expect_token(&Token::Lt)?;
                let k = self.sql_type()?;
                self.expect_token(&Token::Comma)?;
                let v = self.sql_type()?;
                self.expect_gt()?;
                SqlType::Map(Box::new(k), Box::new(v))
            }
            "STRUCT" => {
                self.expect_token(&Token::Lt)?;
                let mut fields = Vec::new();
                if self.peek() != Token::Gt {
                    loop {
                        let n = self.name()?;
                        let t = self.sql_type()?;
                        fields.push((n, t));
                        // A nested type that ended in `>>` closed this struct too.
                        if self.pending_gt > 0 || !self.parser.consume_token(&Token::Comma) {
                            break;
                        }
                    }
                }
                self.expect_gt()?;
                SqlType::Struct(fields)
            }
            other => SqlType::Named(other.to_string()),
        };
        Ok(ty)
    }

    pub(super) fn properties(&mut self) -> Result<Properties, ParseError> {
        self.expect_token(&Token::LParen)?;
        let mut props = Vec::new();
        loop {
            let key = match self.parser.next_token().token {
                Token::Word(w) => w.value.to_ascii_uppercase(),
                Token::SingleQuotedString(s) => s.to_ascii_uppercase(),
                _ => {
                    self.parser.prev_token();
                    return Err(self.expected("a property name"));
                }
            };
            self.expect_token(&Token::Eq)?;
            let value = match self.parser.next_token().token {
                Token::SingleQuotedString(s) => PropertyValue::String(s),
                Token::Number(n, _) => PropertyValue::Number(n),
                Token::Minus => match self.parser.next_token().token {
                    Token::Number(n, _) => PropertyValue::Number(format!("-{n}")),
                    _ => return Err(self.expected("a number")),
                },
                Token::Word(w) if w.value.eq_ignore_ascii_case("true") => {
                    PropertyValue::Boolean(true)
                }
                Token::Word(w) if w.value.eq_ignore_ascii_case("false") => {
                    PropertyValue::Boolean(false)
                }
                _ => {
                    self.parser.prev_token();
                    return Err(self.expected("a string, number or boolean"));
                }
            };
            if props.iter().any(|(k, _)| *k == key) {
                return Err(self.error_here(&format!("duplicate property {key}")));
            }
            props.push((key, value));
            if !self.parser.consume_token(&Token::Comma) {
                break;
            }
        }
        self.expect_token(&Token::RParen)?;
        Ok(Properties(props))
    }
}
