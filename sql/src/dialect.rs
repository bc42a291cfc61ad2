//! ksqlDB's lexical rules for `sqlparser`.

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, LambdaFunction, LambdaFunctionParameter, LambdaSyntax,
    OneOrManyWithParens,
};
use datafusion::sql::sqlparser::dialect::{Dialect, Precedence};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, Word};

use crate::rewrite::{call, string_literal};

/// The function `s->*` parses into.
pub(crate) const STRUCT_ALL: &str = "__struct_all";

/// Identifiers are quoted with backticks or double quotes; `->` dereferences struct fields and
/// is parsed as `sqlparser`'s arrow operator, binding tightly. `STRUCT(name := expr, ...)` and
/// `MAP(key := value, ...)` construct values; they are parsed into calls of DataFusion's
/// `named_struct` and `make_map`.
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

    /// Names may start with digits (`AS 1R`).
    fn supports_numeric_prefix(&self) -> bool {
        true
    }

    fn supports_named_fn_args_with_assignment_operator(&self) -> bool {
        true
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        if lambda_ahead(parser) {
            return Some(lambda(parser));
        }
        let kind = match &parser.peek_token_ref().token {
            Token::Word(Word {
                value,
                quote_style: None,
                ..
            }) => value.to_ascii_uppercase(),
            _ => return None,
        };
        if kind == "CAST" && nested_cast_ahead(parser) {
            return Some(nested_cast(parser));
        }
        if !matches!(kind.as_str(), "STRUCT" | "MAP")
            || parser.peek_nth_token_ref(1).token != Token::LParen
        {
            return None;
        }
        Some(constructor(parser, &kind))
    }

    /// `s->*` (every field of a struct, in a select list) is kept as a call of
    /// [`STRUCT_ALL`] for the planner to expand.
    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        _precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        if parser.peek_token_ref().token == Token::Arrow
            && parser.peek_nth_token_ref(1).token == Token::Mul
        {
            parser.next_token();
            parser.next_token();
            return Some(Ok(call(STRUCT_ALL, vec![expr.clone()])));
        }
        None
    }

    /// `->` binds like `.`: `a->b->c = 1` is `((a->b)->c) = 1`.
    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        match parser.peek_token_ref().token {
            Token::Arrow => Some(Ok(self.prec_value(Precedence::Period))),
            _ => None,
        }
    }
}

/// Whether `CAST(... AS <type>)` comes next with an ARRAY, MAP or STRUCT type, which ksqlDB
/// casts by its own rules (structs field by field, by name), STRING, which such values cast
/// to as Java prints them, or DATE, which ksqlDB also reads from a partial date (`2020-05`):
/// these casts become calls of `ksql_cast(value, '<type>')`; others stay DataFusion's.
fn nested_cast_ahead(parser: &Parser) -> bool {
    if parser.peek_nth_token_ref(1).token != Token::LParen {
        return false;
    }
    let (mut depth, mut after_as) = (0usize, false);
    for i in 2.. {
        match &parser.peek_nth_token_ref(i).token {
            Token::EOF => return false,
            Token::LParen => depth += 1,
            Token::RParen if depth == 0 => return false,
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 0 && w.quote_style.is_none() => {
                let word = w.value.to_ascii_uppercase();
                if word == "AS" {
                    after_as = true;
                } else if after_as
                    && matches!(
                        word.as_str(),
                        "ARRAY" | "MAP" | "STRUCT" | "STRING" | "VARCHAR" | "DATE"
                    )
                {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

fn nested_cast(parser: &mut Parser) -> Result<Expr, ParserError> {
    parser.next_token();
    parser.expect_token(&Token::LParen)?;
    let value = parser.parse_expr()?;
    parser.expect_keyword(datafusion::sql::sqlparser::keywords::Keyword::AS)?;
    let mut text = String::new();
    let mut depth = 0usize;
    loop {
        let t = parser.next_token();
        match t.token {
            Token::EOF => return parser.expected("')'", t),
            Token::LParen => depth += 1,
            Token::RParen if depth == 0 => break,
            Token::RParen => depth -= 1,
            _ => {}
        }
        text.push_str(&t.token.to_string());
        text.push(' ');
    }
    let ty = crate::parser::parse_type(&text)
        .map_err(|e| ParserError::ParserError(format!("invalid type in CAST: {}", e.message)))?;
    Ok(call(
        "ksql_cast",
        vec![value, string_literal(&ty.to_string())],
    ))
}

/// Whether a lambda with parameters in parentheses comes next: `(x, y) => ...`. (A lambda of
/// one bare parameter, `x => ...`, is parsed by `sqlparser` as a named function argument.)
fn lambda_ahead(parser: &Parser) -> bool {
    if parser.peek_token_ref().token != Token::LParen {
        return false;
    }
    let mut i = 1;
    loop {
        if !matches!(parser.peek_nth_token_ref(i).token, Token::Word(_)) {
            return false;
        }
        match parser.peek_nth_token_ref(i + 1).token {
            Token::Comma => i += 2,
            Token::RParen => return parser.peek_nth_token_ref(i + 2).token == Token::RArrow,
            _ => return false,
        }
    }
}

/// Parses `(x, y) => body`.
fn lambda(parser: &mut Parser) -> Result<Expr, ParserError> {
    parser.expect_token(&Token::LParen)?;
    let params = parser.parse_comma_separated(|p| {
        Ok(LambdaFunctionParameter {
            name: p.parse_identifier()?,
            data_type: None,
        })
    })?;
    parser.expect_token(&Token::RParen)?;
    parser.expect_token(&Token::RArrow)?;
    Ok(Expr::Lambda(LambdaFunction {
        params: OneOrManyWithParens::Many(params),
        body: Box::new(parser.parse_expr()?),
        syntax: LambdaSyntax::Arrow,
    }))
}

/// Parses `STRUCT(a := 1, ...)` or `MAP(k := v, ...)` after its keyword.
fn constructor(parser: &mut Parser, kind: &str) -> Result<Expr, ParserError> {
    parser.next_token();
    parser.expect_token(&Token::LParen)?;
    let mut args = Vec::new();
    if !parser.consume_token(&Token::RParen) {
        loop {
            if kind == "STRUCT" {
                let name = parser.parse_identifier()?;
                args.push(string_literal(&crate::parser::normalize(&name)));
            } else {
                // `k := v` parses as one assignment expression; split it.
                match parser.parse_expr()? {
                    Expr::BinaryOp {
                        left,
                        op: BinaryOperator::Assignment,
                        right,
                    } => {
                        args.push(*left);
                        args.push(*right);
                    }
                    key => {
                        args.push(key);
                        parser.expect_token(&Token::Assignment)?;
                        args.push(parser.parse_expr()?);
                    }
                }
                if !parser.consume_token(&Token::Comma) {
                    break;
                }
                continue;
            }
            parser.expect_token(&Token::Assignment)?;
            args.push(parser.parse_expr()?);
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
        parser.expect_token(&Token::RParen)?;
    }
    if kind == "STRUCT" {
        if args.is_empty() {
            return Ok(call("ksql_empty_struct", args));
        }
        let mut names: Vec<&Expr> = args.iter().step_by(2).collect();
        names.sort_by_key(|n| n.to_string());
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(ParserError::ParserError(
                "Duplicate field names found in STRUCT".into(),
            ));
        }
        return Ok(call("named_struct", args));
    }
    Ok(call("make_map", args))
}
