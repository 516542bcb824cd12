//! Field-level validation results shared by every layer that checks input.

use std::fmt;

/// One problem with one request field, named by its path (`contact.email`, `tags[3]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// The most bytes of a field path an error repeats.
const MAX_FIELD_BYTES: usize = 128;
/// The most bytes of a violation's description (which may quote the caller's input).
const MAX_DESCRIPTION_BYTES: usize = 256;

impl FieldViolation {
    /// A violation; field and description are shortened to a bound, so that an error
    /// about a huge input never repeats it whole (gRPC carries errors in headers, which
    /// clients cap at a few KiB).
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: shortened(field.into(), MAX_FIELD_BYTES),
            description: shortened(description.into(), MAX_DESCRIPTION_BYTES),
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to at most `max_bytes` bytes at a character boundary, ending in `…` when
/// cut.
pub fn shortened(text: String, max_bytes: usize) -> String {
    const MARK: &str = "…";
    if text.len() <= max_bytes {
        return text;
    }
    let mut cut = clip(&text, max_bytes.saturating_sub(MARK.len())).to_owned();
    cut.push_str(MARK);
    cut
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

    /// Checks multi-line text (a description, a message body): its length in characters,
    /// and that it holds no control characters but line breaks and tabs. `required`
    /// rejects blank text.
    pub fn text(&mut self, field: &str, value: &str, required: bool, max_chars: usize) {
        self.checked(field, value, required, max_chars, TextKind::MultiLine);
    }

    /// Checks single-line text (a subject, a name, an id, a tag): like [`Violations::text`],
    /// but line breaks and tabs are refused too, so the value can never split a mail
    /// header or a log line.
    pub fn line(&mut self, field: &str, value: &str, required: bool, max_chars: usize) {
        self.checked(field, value, required, max_chars, TextKind::SingleLine);
    }

    fn checked(
        &mut self,
        field: &str,
        value: &str,
        required: bool,
        max_chars: usize,
        kind: TextKind,
    ) {
        if required && value.trim().is_empty() {
            self.add(field, "is required");
        } else if value.chars().count() > max_chars {
            self.add(field, format!("must be at most {max_chars} characters"));
        } else if let Some(c) = value.chars().find(|&c| !kind.allows(c)) {
            self.add(field, kind.refusal(c));
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

#[derive(Debug, Clone, Copy)]
enum TextKind {
    SingleLine,
    MultiLine,
}

impl TextKind {
    fn allows(self, c: char) -> bool {
        match self {
            TextKind::SingleLine => !c.is_control(),
            TextKind::MultiLine => !c.is_control() || matches!(c, '\n' | '\r' | '\t'),
        }
    }

    fn refusal(self, c: char) -> String {
        match (self, c) {
            (TextKind::SingleLine, '\n' | '\r' | '\t') => {
                "must be a single line (no line breaks or tabs)".to_owned()
            }
            _ => format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            ),
        }
    }
}

/// Checks an update mask: at least one path, each one of `allowed` and named once.
/// Every path costs work (and an old/new pair in the change's event), so an oversized or
/// repeated mask is refused before anything looks at the values.
pub fn check_update_mask(paths: &[String], allowed: &[&str]) -> Result<(), Vec<FieldViolation>> {
    let mut violations = Violations::new();
    if paths.is_empty() {
        violations.add("update_mask", "must name at least one field");
        return violations.finish();
    }
    if paths.len() > allowed.len() {
        violations.add(
            "update_mask",
            format!(
                "names {} paths; there are {} updatable fields, each named once",
                paths.len(),
                allowed.len()
            ),
        );
        return violations.finish();
    }
    for (i, path) in paths.iter().enumerate() {
        if paths[..i].contains(path) {
            violations.add("update_mask", format!("{path:?} is named more than once"));
        } else if !allowed.contains(&path.as_str()) {
            violations.add(
                "update_mask",
                format!(
                    "{path:?} cannot be updated; updatable: {}",
                    allowed.join(", ")
                ),
            );
        }
    }
    violations.finish()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Violations) -> Vec<FieldViolation> {
        v.finish().err().unwrap_or_default()
    }

    #[test]
    fn violations_repeat_at_most_a_bounded_part_of_the_input() {
        let v = FieldViolation::new(
            "p".repeat(10_000),
            format!("'{}' is unknown", "é".repeat(5_000)),
        );
        assert_eq!(v.field.len(), MAX_FIELD_BYTES);
        assert!(v.field.ends_with("p…"));
        assert!(v.description.len() <= MAX_DESCRIPTION_BYTES);
        assert!(v.description.starts_with("'éé") && v.description.ends_with('…'));
        // Short ones are kept as they are.
        let v = FieldViolation::new("tags[3]", "is too long");
        assert_eq!(
            (v.field.as_str(), v.description.as_str()),
            ("tags[3]", "is too long")
        );
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("hello", 10), "hello");
        assert_eq!(shortened("abc".into(), 3), "abc");
        assert_eq!(shortened("abcd".into(), 3), "…");
    }

    #[test]
    fn multi_line_text_keeps_line_breaks_and_tabs_but_refuses_other_controls() {
        let mut v = Violations::new();
        v.text("body", "first line\r\n\tsecond", true, 100);
        assert!(v.is_empty());
        for bad in [
            "nul\u{0}byte",
            "bell\u{7}",
            "escape\u{1b}[31m",
            "next\u{85}line",
        ] {
            let mut v = Violations::new();
            v.text("body", bad, true, 100);
            assert_eq!(fields(v).len(), 1, "{bad:?} accepted");
        }
    }

    #[test]
    fn update_masks_name_each_known_field_once() {
        let allowed = ["subject", "status"];
        let mask = |paths: &[&str]| {
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            check_update_mask(&paths, &allowed)
                .err()
                .unwrap_or_default()
        };
        assert!(mask(&["subject", "status"]).is_empty());
        assert_eq!(mask(&[]).len(), 1);
        assert_eq!(mask(&["subject", "subject"]).len(), 1);
        assert_eq!(mask(&["owner"]).len(), 1);
        // A flood is refused with one violation, not one per path.
        assert_eq!(mask(&["status"; 12_000]).len(), 1);
    }

    #[test]
    fn single_line_text_refuses_line_breaks_and_nul() {
        for bad in ["Subject\r\nBcc: x@example.com", "a\tb", "a\u{0}"] {
            let mut v = Violations::new();
            v.line("subject", bad, true, 100);
            assert_eq!(fields(v).len(), 1, "{bad:?} accepted");
        }
        let mut v = Violations::new();
        v.line("subject", "Café – ünïcode is fine", true, 100);
        assert!(v.is_empty());
    }
}
