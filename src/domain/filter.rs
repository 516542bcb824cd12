//! The filter language of `ListTickets`: a subset of AIP-160.
//!
//! ```text
//! expr       := term { "OR" term }
//! term       := factor { "AND" factor }
//! factor     := "NOT" factor | "(" expr ")" | comparison
//! comparison := field op value        op := = | != | < | <= | > | >=
//! value      := word | "quoted string" | number
//! ```
//!
//! Parsing yields field names and raw literals; [`TicketFilter::bind`] then checks each
//! comparison against the ticket fields and turns it into a typed [`TicketPredicate`]. The
//! store renders predicates as parameterised SQL, so user text never becomes SQL.

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4_096;
/// Deepest nesting of parentheses and NOT accepted.
pub const MAX_DEPTH: usize = 16;
/// Most comparisons accepted in one filter.
pub const MAX_COMPARISONS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {position})")]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

fn error<T>(position: usize, message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError {
        position,
        message: message.into(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn as_sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn is_equality(self) -> bool {
        matches!(self, Op::Eq | Op::Ne)
    }

    /// Whether `left op right` holds.
    pub fn compare<T: Ord>(self, left: T, right: T) -> bool {
        let ordering = left.cmp(&right);
        match self {
            Op::Eq => ordering.is_eq(),
            Op::Ne => ordering.is_ne(),
            Op::Lt => ordering.is_lt(),
            Op::Le => ordering.is_le(),
            Op::Gt => ordering.is_gt(),
            Op::Ge => ordering.is_ge(),
        }
    }

    /// Equality (`=` or `!=`; other operators read as `=`), where "not x" includes
    /// "none", as in `ListTickets`.
    pub fn equals<T: PartialEq>(self, actual: T, wanted: T) -> bool {
        (actual == wanted) != (self == Op::Ne)
    }
}

/// A literal as written: a bare word, a quoted string, or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Word(String),
    Text(String),
    Number(i64),
}

impl Literal {
    pub fn text(&self) -> String {
        match self {
            Literal::Word(s) | Literal::Text(s) => s.clone(),
            Literal::Number(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub field: String,
    pub op: Op,
    pub value: Literal,
    /// Where the comparison starts, for error messages.
    pub position: usize,
}

/// A boolean expression over conditions of type `C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr<C> {
    Cond(C),
    And(Vec<Expr<C>>),
    Or(Vec<Expr<C>>),
    Not(Box<Expr<C>>),
}

impl<C> Expr<C> {
    /// Rewrites every condition, stopping at the first error.
    pub fn try_map<D, E>(self, f: &mut impl FnMut(C) -> Result<D, E>) -> Result<Expr<D>, E> {
        Ok(match self {
            Expr::Cond(c) => Expr::Cond(f(c)?),
            Expr::And(items) => Expr::And(
                items
                    .into_iter()
                    .map(|e| e.try_map(f))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Or(items) => Expr::Or(
                items
                    .into_iter()
                    .map(|e| e.try_map(f))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Not(inner) => Expr::Not(Box::new(inner.try_map(f)?)),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Text(String),
    Number(i64),
    Op(Op),
    LParen,
    RParen,
    And,
    Or,
    Not,
}

fn tokenize(input: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(pos, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let token = match c {
            '(' => {
                chars.next();
                Token::LParen
            }
            ')' => {
                chars.next();
                Token::RParen
            }
            // `:` is AIP-160's "has": `tags:billing` holds the tag; on a single value it
            // is equality.
            '=' | ':' => {
                chars.next();
                Token::Op(Op::Eq)
            }
            '!' => {
                chars.next();
                match chars.next() {
                    Some((_, '=')) => Token::Op(Op::Ne),
                    _ => return error(pos, "expected '!='"),
                }
            }
            '<' | '>' => {
                chars.next();
                let or_equal = chars.next_if(|&(_, c)| c == '=').is_some();
                Token::Op(match (c, or_equal) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                })
            }
            '"' | '\'' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, escaped)) => text.push(escaped),
                            None => return error(pos, "unterminated string"),
                        },
                        Some((_, q)) if q == c => break,
                        Some((_, other)) => text.push(other),
                        None => return error(pos, "unterminated string"),
                    }
                }
                Token::Text(text)
            }
            c if c.is_ascii_digit() || c == '-' => {
                let mut digits = String::new();
                while let Some((_, d)) = chars.next_if(|&(_, d)| d.is_ascii_digit() || d == '-') {
                    digits.push(d);
                }
                match digits.parse::<i64>() {
                    Ok(n) => Token::Number(n),
                    Err(_) => return error(pos, format!("'{digits}' is not a number")),
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut word = String::new();
                // A custom field's key may hold '-' too (`custom_fields.order-id`); no
                // other word does, and nothing else may follow a word without a space.
                while let Some((_, d)) = chars.next_if(|&(_, d)| {
                    d.is_alphanumeric()
                        || d == '_'
                        || d == '.'
                        || (d == '-' && word.starts_with("custom_fields."))
                }) {
                    word.push(d);
                }
                match word.as_str() {
                    "AND" => Token::And,
                    "OR" => Token::Or,
                    "NOT" => Token::Not,
                    _ => Token::Ident(word),
                }
            }
            other => return error(pos, format!("unexpected character '{other}'")),
        };
        tokens.push((pos, token));
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    end: usize,
    comparisons: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(_, t)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.next).map_or(self.end, |(p, _)| *p)
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).map(|(_, t)| t.clone());
        self.next += 1;
        token
    }

    fn expr(&mut self, depth: usize) -> Result<Expr<Comparison>, FilterError> {
        let mut items = vec![self.term(depth)?];
        while self.peek() == Some(&Token::Or) {
            self.bump();
            items.push(self.term(depth)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn term(&mut self, depth: usize) -> Result<Expr<Comparison>, FilterError> {
        let mut items = vec![self.factor(depth)?];
        while self.peek() == Some(&Token::And) {
            self.bump();
            items.push(self.factor(depth)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn factor(&mut self, depth: usize) -> Result<Expr<Comparison>, FilterError> {
        if depth >= MAX_DEPTH {
            return error(
                self.position(),
                format!("nested deeper than {MAX_DEPTH} levels"),
            );
        }
        let position = self.position();
        match self.bump() {
            Some(Token::Not) => Ok(Expr::Not(Box::new(self.factor(depth + 1)?))),
            Some(Token::LParen) => {
                let inner = self.expr(depth + 1)?;
                match self.bump() {
                    Some(Token::RParen) => Ok(inner),
                    _ => error(position, "unbalanced '('"),
                }
            }
            Some(Token::Ident(field)) => {
                let op = match self.bump() {
                    Some(Token::Op(op)) => op,
                    _ => {
                        return error(position, format!("expected an operator after '{field}'"));
                    }
                };
                let value_position = self.position();
                let value = match self.bump() {
                    Some(Token::Ident(word)) => Literal::Word(word),
                    Some(Token::Text(text)) => Literal::Text(text),
                    Some(Token::Number(n)) => Literal::Number(n),
                    _ => return error(value_position, format!("expected a value for '{field}'")),
                };
                self.comparisons += 1;
                if self.comparisons > MAX_COMPARISONS {
                    return error(position, format!("more than {MAX_COMPARISONS} comparisons"));
                }
                Ok(Expr::Cond(Comparison {
                    field,
                    op,
                    value,
                    position,
                }))
            }
            Some(_) => error(position, "expected a comparison such as status = OPEN"),
            None => error(position, "unexpected end of filter"),
        }
    }
}

/// Parses filter text. The empty (or blank) filter is `None`: everything matches.
pub fn parse(input: &str) -> Result<Option<Expr<Comparison>>, FilterError> {
    if input.len() > MAX_FILTER_LEN {
        return error(0, format!("longer than {MAX_FILTER_LEN} bytes"));
    }
    let tokens = tokenize(input)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        end: input.len(),
        comparisons: 0,
    };
    let expr = parser.expr(0)?;
    if parser.peek().is_some() {
        return error(parser.position(), "unexpected text after the filter");
    }
    Ok(Some(expr))
}

mod eval;
mod ticket;

pub use eval::{snapshot_passes, ticket_passes};
pub use ticket::*;

#[cfg(test)]
mod tests;
