//! ksqlDB's lexical rules for `sqlparser`.

use datafusion::sql::sqlparser::dialect::{Dialect, Precedence};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

/// Identifiers are quoted with backticks or double quotes; `->` dereferences struct fields and
/// is parsed as `sqlparser`'s arrow operator; `=>` introduces a lambda's body.
#[derive(Debug, Default)]
pub struct KsqlDialect;

impl Dialect for KsqlDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_' || ch == '@' || ch == '$'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '@' || ch == '$'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`' || ch == '"'
    }

    fn supports_named_fn_args_with_assignment_operator(&self) -> bool {
        true
    }

    /// `->` binds like `.`: `a->b->c = 1` is `((a->b)->c) = 1`.
    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        match parser.peek_token_ref().token {
            Token::Arrow => Some(Ok(self.prec_value(Precedence::Period))),
            _ => None,
        }
    }
}
