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

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ticket::{Channel, Priority, Status, TicketType};

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
                while let Some((_, d)) =
                    chars.next_if(|&(_, d)| d.is_alphanumeric() || d == '_' || d == '.')
                {
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

/// Who `assignee_id` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssigneeRef {
    /// `"me"`: the agent the caller's key is bound to.
    Me,
    /// `""`: nobody.
    Nobody,
    Agent(Uuid),
}

/// A typed condition on a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketPredicate {
    Status(Op, Status),
    Priority(Op, Priority),
    Type(Op, TicketType),
    Assignee(Op, AssigneeRef),
    /// `None` is "no queue".
    Queue(Op, Option<Uuid>),
    Contact(Op, Uuid),
    Tag(Op, String),
    Number(Op, i64),
    CreatedAt(Op, Moment),
    UpdatedAt(Op, Moment),
    /// Some SLA clock missed its target (`true`), or none did (`false`).
    SlaBreached(bool),
    /// Some running SLA clock is due before (`<`) or by (`<=`) this time.
    SlaDueAt(Op, Moment),
    /// The channel of the conversation the ticket came from; `None` for none.
    Channel(Op, Option<Channel>),
    /// A custom field's value (`!=` includes tickets without the field).
    CustomField(Op, String, String),
    /// A contact's detail, compared without letter case.
    ContactField(Op, ContactField, String),
    ContactVip(bool),
    /// The bot or platform of the conversation the ticket answers; `None` for none.
    Source(Op, Option<String>),
    /// A person answered in public (`true`), or nobody has yet (`false`).
    HasReply(bool),
}

/// The contact details a filter may name (`contact.email` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactField {
    Email,
    Phone,
    Name,
    ExternalId,
}

impl ContactField {
    pub fn column(self) -> &'static str {
        match self {
            ContactField::Email => "c.email",
            ContactField::Phone => "c.phone",
            ContactField::Name => "c.name",
            ContactField::ExternalId => "c.external_id",
        }
    }
}

/// A time in a filter: a fixed instant, or one relative to the moment the filter is used
/// (`"now-7d"`), so a saved view of "the last week" stays the last week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    At(DateTime<Utc>),
    /// Seconds after now (negative: before).
    FromNow(i64),
}

impl Moment {
    pub fn at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Moment::At(at) => at,
            Moment::FromNow(seconds) => now + chrono::TimeDelta::seconds(seconds),
        }
    }
}

/// Reads `"now"`, `"now-7d"` or `"now+2h"` (units `s`, `m`, `h`, `d`, `w`; spaces allowed),
/// or an RFC 3339 time.
fn moment(text: &str) -> Option<Moment> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let lower = compact.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("now") {
        if rest.is_empty() {
            return Some(Moment::FromNow(0));
        }
        let (sign, amount) = match rest.split_at(1) {
            ("-", amount) => (-1, amount),
            ("+", amount) => (1, amount),
            _ => return None,
        };
        let unit = amount.chars().last()?;
        let count: i64 = amount[..amount.len() - 1].parse().ok()?;
        let seconds = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        // A year and a half either way is as far as a filter needs to look.
        let total = count.checked_mul(seconds)?;
        return (total <= 50_000_000).then_some(Moment::FromNow(sign * total));
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| Moment::At(at.with_timezone(&Utc)))
}

/// The ticket fields a filter may name.
pub const TICKET_FIELDS: &[&str] = &[
    "status",
    "priority",
    "type",
    "assignee_id",
    "queue_id",
    "contact_id",
    "tag",
    "number",
    "created_at",
    "updated_at",
    "sla_breached",
    "sla_due_at",
    "channel",
    "tags",
    "custom_fields.<key>",
    "contact.email",
    "contact.phone",
    "contact.name",
    "contact.external_id",
    "contact.vip",
    "source",
    "has_reply",
];

pub type TicketFilter = Expr<TicketPredicate>;

impl TicketFilter {
    /// Parses and type-checks a `ListTickets` filter.
    pub fn parse_text(input: &str) -> Result<Option<TicketFilter>, FilterError> {
        match parse(input)? {
            Some(expr) => Ok(Some(Self::bind(expr)?)),
            None => Ok(None),
        }
    }

    pub fn bind(expr: Expr<Comparison>) -> Result<TicketFilter, FilterError> {
        expr.try_map(&mut |c| bind_ticket_comparison(&c))
    }
}

/// Type-checks one comparison against the ticket fields.
pub fn bind_ticket_comparison(c: &Comparison) -> Result<TicketPredicate, FilterError> {
    let at = c.position;
    let field = c.field.as_str();
    let only_equality = |what: &str| -> Result<(), FilterError> {
        if c.op.is_equality() {
            Ok(())
        } else {
            error(at, format!("{what} supports only = and !="))
        }
    };
    let text = c.value.text();
    match field {
        "status" => {
            only_equality("status")?;
            let status = enum_value(&text, "TICKET_STATUS_", Status::parse)
                .ok_or_else(|| bad_value(at, field, &text, Status::ALL))?;
            Ok(TicketPredicate::Status(c.op, status))
        }
        "priority" => {
            let priority = enum_value(&text, "PRIORITY_", Priority::parse)
                .ok_or_else(|| bad_value(at, field, &text, Priority::ALL))?;
            Ok(TicketPredicate::Priority(c.op, priority))
        }
        "type" => {
            only_equality("type")?;
            let ticket_type = enum_value(&text, "TICKET_TYPE_", TicketType::parse)
                .ok_or_else(|| bad_value(at, field, &text, TicketType::ALL))?;
            Ok(TicketPredicate::Type(c.op, ticket_type))
        }
        "assignee_id" => {
            only_equality("assignee_id")?;
            let who = match text.as_str() {
                "me" => AssigneeRef::Me,
                "" => AssigneeRef::Nobody,
                other => AssigneeRef::Agent(uuid_value(at, field, other)?),
            };
            Ok(TicketPredicate::Assignee(c.op, who))
        }
        "queue_id" => {
            only_equality("queue_id")?;
            let queue = match text.as_str() {
                "" => None,
                other => Some(uuid_value(at, field, other)?),
            };
            Ok(TicketPredicate::Queue(c.op, queue))
        }
        "contact_id" => {
            only_equality("contact_id")?;
            Ok(TicketPredicate::Contact(
                c.op,
                uuid_value(at, field, &text)?,
            ))
        }
        "tag" | "tags" => {
            only_equality("tag")?;
            Ok(TicketPredicate::Tag(c.op, text.trim().to_lowercase()))
        }
        "number" => match c.value {
            Literal::Number(n) => Ok(TicketPredicate::Number(c.op, n)),
            _ => error(at, "number must be compared with a whole number"),
        },
        "sla_breached" => {
            let value = match text.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return error(at, "sla_breached must be compared with true or false"),
            };
            match c.op {
                Op::Eq => Ok(TicketPredicate::SlaBreached(value)),
                Op::Ne => Ok(TicketPredicate::SlaBreached(!value)),
                _ => error(at, "sla_breached supports only = and !="),
            }
        }
        "sla_due_at" => {
            if !matches!(c.op, Op::Lt | Op::Le) {
                return error(at, "sla_due_at supports only < and <=");
            }
            let instant = moment(&text).ok_or_else(|| FilterError {
                position: at,
                message:
                    "sla_due_at must be compared with an RFC 3339 time or \"now\", \"now+2h\"…"
                        .into(),
            })?;
            Ok(TicketPredicate::SlaDueAt(c.op, instant))
        }
        "created_at" | "updated_at" => {
            let instant = moment(&text).ok_or_else(|| FilterError {
                position: at,
                message: format!(
                    "{field} must be compared with an RFC 3339 time such as \"2026-01-31T09:00:00Z\" \
                     or a time relative to now such as \"now-7d\" (units s, m, h, d, w)"
                ),
            })?;
            Ok(if field == "created_at" {
                TicketPredicate::CreatedAt(c.op, instant)
            } else {
                TicketPredicate::UpdatedAt(c.op, instant)
            })
        }
        "source" => {
            only_equality("source")?;
            let source = (!text.is_empty()).then(|| text.clone());
            Ok(TicketPredicate::Source(c.op, source))
        }
        "has_reply" => {
            let value = match text.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return error(at, "has_reply must be compared with true or false"),
            };
            match c.op {
                Op::Eq => Ok(TicketPredicate::HasReply(value)),
                Op::Ne => Ok(TicketPredicate::HasReply(!value)),
                _ => error(at, "has_reply supports only = and !="),
            }
        }
        "contact.vip" => {
            let value = match text.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return error(at, "contact.vip must be compared with true or false"),
            };
            match c.op {
                Op::Eq => Ok(TicketPredicate::ContactVip(value)),
                Op::Ne => Ok(TicketPredicate::ContactVip(!value)),
                _ => error(at, "contact.vip supports only = and !="),
            }
        }
        "contact.email" | "contact.phone" | "contact.name" | "contact.external_id" => {
            only_equality(field)?;
            let which = match field {
                "contact.email" => ContactField::Email,
                "contact.phone" => ContactField::Phone,
                "contact.name" => ContactField::Name,
                _ => ContactField::ExternalId,
            };
            Ok(TicketPredicate::ContactField(c.op, which, text))
        }
        _ if field.starts_with("custom_fields.") => {
            only_equality("a custom field")?;
            let key = &field["custom_fields.".len()..];
            let valid = !key.is_empty()
                && key.len() <= super::ticket::MAX_CUSTOM_FIELD_KEY_CHARS
                && key
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.');
            if !valid {
                return error(at, format!("'{key}' is not a custom field key"));
            }
            Ok(TicketPredicate::CustomField(c.op, key.to_owned(), text))
        }
        "channel" => {
            only_equality("channel")?;
            let channel = match text.as_str() {
                "" => None,
                other => Some(
                    enum_value(other, "CHANNEL_", Channel::parse)
                        .ok_or_else(|| bad_value(at, field, other, Channel::ALL))?,
                ),
            };
            Ok(TicketPredicate::Channel(c.op, channel))
        }
        _ => error(
            at,
            format!(
                "unknown field '{field}'; known fields: {}",
                TICKET_FIELDS.join(", ")
            ),
        ),
    }
}

/// Accepts `OPEN`, `open` and `TICKET_STATUS_OPEN` alike.
fn enum_value<T>(text: &str, prefix: &str, parse: fn(&str) -> Option<T>) -> Option<T> {
    let upper = text.to_ascii_uppercase();
    parse(upper.strip_prefix(prefix).unwrap_or(&upper))
}

fn bad_value<T: std::fmt::Display>(at: usize, field: &str, text: &str, all: &[T]) -> FilterError {
    let names: Vec<String> = all.iter().map(ToString::to_string).collect();
    FilterError {
        position: at,
        message: format!(
            "'{text}' is not a valid {field}; expected one of {}",
            names.join(", ")
        ),
    }
}

fn uuid_value(at: usize, field: &str, text: &str) -> Result<Uuid, FilterError> {
    Uuid::parse_str(text).map_err(|_| FilterError {
        position: at,
        message: format!("{field} must be a UUID in quotes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bind(text: &str) -> Result<Option<TicketFilter>, FilterError> {
        TicketFilter::parse_text(text)
    }

    #[test]
    fn an_empty_filter_matches_everything() {
        assert_eq!(bind("   ").unwrap(), None);
    }

    #[test]
    fn conjunctions_of_comparisons_bind_to_typed_predicates() {
        let filter = bind(r#"status = OPEN AND priority >= HIGH AND tag = "Billing""#)
            .unwrap()
            .unwrap();
        assert_eq!(
            filter,
            Expr::And(vec![
                Expr::Cond(TicketPredicate::Status(Op::Eq, Status::Open)),
                Expr::Cond(TicketPredicate::Priority(Op::Ge, Priority::High)),
                Expr::Cond(TicketPredicate::Tag(Op::Eq, "billing".into())),
            ])
        );
    }

    #[test]
    fn enum_values_accept_the_proto_prefix_and_any_case() {
        let a = bind("status = TICKET_STATUS_WAITING").unwrap();
        let b = bind("status = waiting").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let filter = bind("status = OPEN OR status = WAITING AND priority = LOW")
            .unwrap()
            .unwrap();
        assert!(matches!(filter, Expr::Or(ref items) if items.len() == 2));
    }

    #[test]
    fn parentheses_and_not_nest() {
        let filter = bind("NOT (status = OPEN OR status = WAITING)")
            .unwrap()
            .unwrap();
        assert!(matches!(filter, Expr::Not(_)));
    }

    #[test]
    fn me_and_empty_name_the_caller_and_nobody() {
        assert_eq!(
            bind(r#"assignee_id = "me""#).unwrap(),
            Some(Expr::Cond(TicketPredicate::Assignee(
                Op::Eq,
                AssigneeRef::Me
            )))
        );
        assert_eq!(
            bind(r#"assignee_id = """#).unwrap(),
            Some(Expr::Cond(TicketPredicate::Assignee(
                Op::Eq,
                AssigneeRef::Nobody
            )))
        );
    }

    #[test]
    fn errors_name_the_problem_and_where_it_is() {
        let cases = [
            ("colour = red", "unknown field 'colour'"),
            ("status = SLEEPING", "'SLEEPING' is not a valid status"),
            ("status > OPEN", "status supports only = and !="),
            ("status =", "expected a value for 'status'"),
            ("(status = OPEN", "unbalanced '('"),
            ("status = OPEN AND", "unexpected end of filter"),
            (
                "status = OPEN priority = LOW",
                "unexpected text after the filter",
            ),
            ("number = 4-2", "not a number"),
            ("contact_id = \"nope\"", "contact_id must be a UUID"),
            ("status = \"OPEN", "unterminated string"),
            ("status ; DROP TABLE tickets", "unexpected character ';'"),
        ];
        for (text, expected) in cases {
            let err = bind(text).expect_err(text);
            assert!(
                err.message.contains(expected),
                "{text:?}: {:?} lacks {expected:?}",
                err.message
            );
        }
    }

    #[test]
    fn times_may_be_relative_to_now() {
        let now = DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let bound = |text: &str| match TicketFilter::parse_text(text).unwrap().unwrap() {
            Expr::Cond(TicketPredicate::CreatedAt(_, m)) => m.at(now),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            bound("created_at > \"now-7d\"").to_rfc3339(),
            "2026-03-03T12:00:00+00:00"
        );
        assert_eq!(
            bound("created_at < \"now + 2h\"").to_rfc3339(),
            "2026-03-10T14:00:00+00:00"
        );
        assert_eq!(
            bound("created_at < \"NOW\"").to_rfc3339(),
            "2026-03-10T12:00:00+00:00"
        );
        for bad in [
            "\"now-7y\"",
            "\"now-\"",
            "\"now*2d\"",
            "\"now-99999999999d\"",
        ] {
            assert!(
                TicketFilter::parse_text(&format!("created_at > {bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn channel_is_a_ticket_field() {
        assert_eq!(
            TicketFilter::parse_text("channel = CHANNEL_SMS").unwrap(),
            Some(Expr::Cond(TicketPredicate::Channel(
                Op::Eq,
                Some(Channel::Sms)
            )))
        );
        assert_eq!(
            TicketFilter::parse_text("channel != \"\"").unwrap(),
            Some(Expr::Cond(TicketPredicate::Channel(Op::Ne, None)))
        );
        assert!(TicketFilter::parse_text("channel > CHAT").is_err());
    }

    #[test]
    fn custom_and_contact_fields_and_has() {
        assert_eq!(
            TicketFilter::parse_text("custom_fields.plan = \"pro\" AND tags:billing").unwrap(),
            Some(Expr::And(vec![
                Expr::Cond(TicketPredicate::CustomField(
                    Op::Eq,
                    "plan".into(),
                    "pro".into()
                )),
                Expr::Cond(TicketPredicate::Tag(Op::Eq, "billing".into())),
            ]))
        );
        assert_eq!(
            TicketFilter::parse_text("contact.vip = true AND contact.email != \"a@b.c\"").unwrap(),
            Some(Expr::And(vec![
                Expr::Cond(TicketPredicate::ContactVip(true)),
                Expr::Cond(TicketPredicate::ContactField(
                    Op::Ne,
                    ContactField::Email,
                    "a@b.c".into()
                )),
            ]))
        );
        for bad in [
            "custom_fields. = x",
            "custom_fields.a b = x",
            "contact.vip = maybe",
            "contact.age = 3",
        ] {
            assert!(TicketFilter::parse_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}status = OPEN{}", "(".repeat(40), ")".repeat(40));
        let err = bind(&deep).unwrap_err();
        assert!(err.message.contains("nested deeper"));
    }

    #[test]
    fn the_number_of_comparisons_is_bounded() {
        let many = vec!["number = 1"; MAX_COMPARISONS + 1].join(" OR ");
        assert!(bind(&many).unwrap_err().message.contains("comparisons"));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = bind(&text);
        }

        #[test]
        fn arbitrary_token_soup_never_panics(
            words in proptest::collection::vec(
                prop_oneof![
                    Just("status"), Just("priority"), Just("="), Just(">="), Just("("),
                    Just(")"), Just("AND"), Just("OR"), Just("NOT"), Just("OPEN"),
                    Just("\"x\""), Just("42"), Just("tag"),
                ],
                0..40,
            )
        ) {
            let _ = bind(&words.join(" "));
        }
    }
}
