//! Text that lifeboat did not write (HTTP bodies, a child program's stderr, a server's error
//! message) made safe to show: a terminal must never receive a control sequence from it.

use std::fmt::Write;

/// What [`escape_untrusted`] does with line feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newlines {
    /// Kept: the text is shown as separate lines (a program's stderr under an error).
    Keep,
    /// Escaped as `\n`: the text is shown inside one line.
    Escape,
}

/// Renders untrusted bytes for a terminal or a message: control characters (C0 and C1, ESC,
/// CR, DEL, tab), bidirectional overrides and invalid UTF-8 are escaped (`\n`, `\r`, `\t`,
/// `\x1b`, `\u{202e}`, `\xff`), everything else is kept as it is. Line feeds are kept or
/// escaped as `newlines` says.
pub fn escape_untrusted(bytes: &[u8], newlines: Newlines) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c, newlines);
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

fn push_char(out: &mut String, c: char, newlines: Newlines) {
    match c {
        '\n' if newlines == Newlines::Keep => out.push('\n'),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x20 || c == '\x7f' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        // C1 controls (a lone 0x9b is CSI to some terminals) and the characters that
        // reorder what follows them on screen.
        '\u{80}'..='\u{9f}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}' => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_bad_bytes_are_escaped() {
        let one_line = |b: &[u8]| escape_untrusted(b, Newlines::Escape);
        assert_eq!(
            one_line(b"plain text: \xc3\xa9t\xc3\xa9"),
            "plain text: été"
        );
        assert_eq!(
            one_line(b"\x1b[31mred\x1b[0m"),
            "\\x1b[31mred\\x1b[0m",
            "ESC never reaches a terminal"
        );
        assert_eq!(
            one_line(b"a\r\nb\tc\x00\x07\x7f"),
            "a\\r\\nb\\tc\\x00\\x07\\x7f"
        );
        assert_eq!(one_line(b"bad \xff\xfe utf8"), "bad \\xff\\xfe utf8");
        assert_eq!(one_line("\u{9b}31m".as_bytes()), "\\u{9b}31m", "C1 CSI");
        assert_eq!(
            one_line("user\u{202e}gnp.exe".as_bytes()),
            "user\\u{202e}gnp.exe"
        );
        // A truncated multi-byte character at the end (a body cut at its limit).
        assert_eq!(one_line(b"caf\xc3"), "caf\\xc3");
    }

    #[test]
    fn lines_are_kept_only_when_asked() {
        let stderr = b"pg_dump: error: one\npg_dump: \x1b]0;title\x07two\r\n";
        assert_eq!(
            escape_untrusted(stderr, Newlines::Keep),
            "pg_dump: error: one\npg_dump: \\x1b]0;title\\x07two\\r\n"
        );
        assert_eq!(
            escape_untrusted(stderr, Newlines::Escape),
            "pg_dump: error: one\\npg_dump: \\x1b]0;title\\x07two\\r\\n"
        );
    }

    #[test]
    fn nothing_escaped_contains_a_control_character() {
        let all: Vec<u8> = (0..=255u8).collect();
        for newlines in [Newlines::Keep, Newlines::Escape] {
            let out = escape_untrusted(&all, newlines);
            assert!(
                out.chars()
                    .all(|c| !c.is_control() || (c == '\n' && newlines == Newlines::Keep)),
                "{out:?}"
            );
        }
    }
}
