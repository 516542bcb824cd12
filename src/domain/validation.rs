//! Field-level validation results shared by every layer that checks input.

use std::fmt;

/// One problem with one request field, named by its path (`contact.email`, `tags[3]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Collects violations so a caller learns about every bad field at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Checks a text field's length in characters; `required` rejects blank text.
    pub fn text(&mut self, field: &str, value: &str, required: bool, max_chars: usize) {
        if required && value.trim().is_empty() {
            self.add(field, "is required");
        } else if value.chars().count() > max_chars {
            self.add(field, format!("must be at most {max_chars} characters"));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was added, else every violation collected.
    pub fn finish(self) -> Result<(), Vec<FieldViolation>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// Parses a UUID field, recording a violation when it is malformed.
pub fn parse_uuid(violations: &mut Violations, field: &str, value: &str) -> Option<uuid::Uuid> {
    match uuid::Uuid::parse_str(value) {
        Ok(id) => Some(id),
        Err(_) => {
            violations.add(field, "must be a UUID");
            None
        }
    }
}

/// Parses an optional UUID field where the empty string means "none".
pub fn parse_optional_uuid(
    violations: &mut Violations,
    field: &str,
    value: &str,
) -> Option<uuid::Uuid> {
    if value.is_empty() {
        None
    } else {
        parse_uuid(violations, field, value)
    }
}
