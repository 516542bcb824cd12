//! Renumbering a statement's placeholders, so that statements can be merged into one
//! (`Statement::after`).

use std::fmt::Write as _;

/// `sql` with each placeholder `$N` outside quotes made `$(N + offset)`.
///
/// A number too large to add the offset to is left as it is. Every character it looks for
/// is ASCII, so it walks bytes and copies the text between placeholders in runs (a
/// create's merged statement is several kilobytes).
pub(super) fn renumber(sql: &str, offset: usize) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut quote: Option<u8> = None;
    // `sql[..copied]` has been written to `out`.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'$' => {
                let digits = bytes[i..].iter().take_while(|d| d.is_ascii_digit()).count();
                if digits == 0 {
                    continue;
                }
                let number = &sql[i..i + digits];
                out.push_str(&sql[copied..i]);
                match number
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_add(offset))
                {
                    Some(n) => {
                        let _ = write!(out, "{n}");
                    }
                    None => out.push_str(number),
                }
                i += digits;
                copied = i;
            }
            None => {}
        }
    }
    out.push_str(&sql[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_move_past_the_ones_before_them_and_quotes_stay_as_they_are() {
        assert_eq!(
            renumber("VALUES ($1, $2, '$3', \"$4\", $10)", 5),
            "VALUES ($6, $7, '$3', \"$4\", $15)"
        );
        assert_eq!(
            renumber("SELECT $$x$$, 'it''s $1', $1", 2),
            "SELECT $$x$$, 'it''s $1', $3"
        );
        assert_eq!(renumber("E'\\n' || $2", 1), "E'\\n' || $3");
        let too_large = format!("${}, $1", usize::MAX);
        assert_eq!(renumber(&too_large, 1), format!("${}, $2", usize::MAX));
    }

    /// Placeholders in and out of quotes, numbers that do not fit, and non-ASCII text.
    fn sql_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy as _;
        proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("$".to_owned()),
                proptest::strategy::Just("'".to_owned()),
                proptest::strategy::Just("\"".to_owned()),
                proptest::strategy::Just("é".to_owned()),
                proptest::strategy::Just("99999999999999999999999".to_owned()),
                proptest::strategy::Just(usize::MAX.to_string()),
                "[0-9]{1,3}",
                "[a-z (),]{1,4}",
            ],
            0..30,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest::proptest! {
        /// Renumbering moves exactly the placeholders outside quotes: read back, each
        /// placeholder's number outside quotes is the old one plus the offset (unless that
        /// would not fit), and every other character is unchanged.
        #[test]
        fn renumbering_moves_only_placeholders_outside_quotes(
            sql in sql_text(),
            offset in 0usize..1000,
        ) {
            let renumbered = renumber(&sql, offset);
            let (mut old, mut new) = (sql.chars().peekable(), renumbered.chars().peekable());
            let mut quote = None;
            while let Some(c) = old.next() {
                proptest::prop_assert_eq!(Some(c), new.next());
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => {}
                    None if c == '\'' || c == '"' => quote = Some(c),
                    None if c == '$' && old.peek().is_some_and(char::is_ascii_digit) => {
                        let take = |chars: &mut std::iter::Peekable<std::str::Chars>| {
                            let mut digits = String::new();
                            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                                digits.push(d);
                            }
                            digits
                        };
                        let (before, after) = (take(&mut old), take(&mut new));
                        let expected = before
                            .parse::<usize>()
                            .ok()
                            .and_then(|n| n.checked_add(offset))
                            .map_or(before.clone(), |n| n.to_string());
                        proptest::prop_assert_eq!(after, expected);
                    }
                    None => {}
                }
            }
            proptest::prop_assert_eq!(new.next(), None);
        }
    }
}
