//! Untrusted text (from plugins, from clients) made safe to log and show.

/// `text` with every character that could forge or hide a log line escaped:
/// control characters (CR, LF, ESC…), line and paragraph separators,
/// bidirectional overrides and zero-width characters. The result is one
/// visible line in any log format.
pub fn escape_untrusted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if deceptive(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A character that hides or reorders text when shown: control characters,
/// line and paragraph separators, bidirectional overrides (`photo\u{202e}gnp.exe`
/// shows as `photoexe.png`) and zero-width characters.
pub fn deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `text` cut to at most `max` bytes (on a character boundary), then
/// escaped: untrusted text as one bounded visible line.
pub fn one_line(text: &str, max: usize) -> String {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    escape_untrusted(&text[..cut])
}

/// `type/subtype` of a content type, lower-cased, parameters dropped.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// `err` and its sources, `: `-separated, as one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::escape_untrusted;

    #[test]
    fn forging_characters_are_escaped_and_the_rest_kept() {
        let forged = "ok\n2026-01-01 ERROR fake\r\u{1b}[2K\u{2028}\u{202e}\u{feff}é";
        let escaped = escape_untrusted(forged);
        assert!(!escaped.chars().any(|c| c.is_control()), "{escaped}");
        assert_eq!(
            escaped,
            "ok\\n2026-01-01 ERROR fake\\r\\u{1b}[2K\\u{2028}\\u{202e}\\u{feff}é"
        );
    }
}
