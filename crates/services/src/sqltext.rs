//! SQL scripts split into statements, for the account scripts of database servers: each
//! statement is applied on its own, so one the server refuses never stops the others.
//!
//! The splitter knows the quoting of both dialects it reads: strings (`'...'` with `''`, and
//! backslash escapes where the dialect has them), quoted identifiers (`"..."`, `` `...` ``),
//! comments (`-- `, `#` for MariaDB, `/* */`), MariaDB's executable comments (`/*!...*/`,
//! `/*M!...*/`, whose text is part of the statement) and PostgreSQL's dollar quoting.

/// Which server's SQL a script is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// MariaDB/MySQL: backslash escapes in strings, backquoted identifiers, `#` comments.
    Mysql,
    /// PostgreSQL with `standard_conforming_strings` on (as `pg_dumpall` sets it): `E'...'`
    /// escapes, `$tag$...$tag$` quoting, nested block comments, `\` meta-commands of psql.
    Postgres,
}

/// The statements of `script`, each without its terminating `;`, trimmed, comments outside
/// them left out. psql meta-commands (a line starting with `\`, PostgreSQL) are left out.
pub(crate) fn split(script: &str, dialect: Dialect) -> Vec<String> {
    let bytes = script.as_bytes();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    // Start of the text not yet copied into `current`.
    let mut from = 0;
    let flush = |current: &mut String, out: &mut Vec<String>| {
        let statement = current.trim();
        if !statement.is_empty() {
            out.push(statement.to_string());
        }
        current.clear();
    };
    while i < bytes.len() {
        let c = bytes[i];
        let rest = &bytes[i..];
        match c {
            b'\'' => {
                let backslash = dialect == Dialect::Mysql
                    || (i > 0 && matches!(bytes[i - 1], b'E' | b'e') && !word_byte(bytes, i - 1));
                i = end_of_quoted(bytes, i, b'\'', backslash);
            }
            b'"' => i = end_of_quoted(bytes, i, b'"', dialect == Dialect::Mysql),
            b'`' if dialect == Dialect::Mysql => i = end_of_quoted(bytes, i, b'`', false),
            b'$' if dialect == Dialect::Postgres && !word_byte(bytes, i) => {
                match dollar_tag(rest) {
                    Some(tag) => {
                        let body = i + tag.len();
                        i = find(bytes, body, tag.as_bytes())
                            .map_or(bytes.len(), |e| e + tag.len());
                    }
                    None => i += 1,
                }
            }
            b'-' if rest.starts_with(b"--")
                && (dialect == Dialect::Postgres
                    || rest.get(2).is_none_or(|b| b.is_ascii_whitespace())) =>
            {
                current.push_str(&script[from..i]);
                i = line_end(bytes, i);
                from = i;
            }
            b'#' if dialect == Dialect::Mysql => {
                current.push_str(&script[from..i]);
                i = line_end(bytes, i);
                from = i;
            }
            // The MariaDB client's sandbox-mode command: a line of its own, no `;`.
            b'/' if dialect == Dialect::Mysql
                && rest.starts_with(b"/*M!999999\\-")
                && at_line_start(bytes, i) =>
            {
                current.push_str(&script[from..i]);
                i = line_end(bytes, i);
                from = i;
            }
            b'/' if rest.starts_with(b"/*") => {
                let executable = dialect == Dialect::Mysql
                    && (rest.starts_with(b"/*!") || rest.starts_with(b"/*M!"));
                if executable {
                    // Its text belongs to the statement; quotes inside it still count.
                    i += 2;
                } else {
                    current.push_str(&script[from..i]);
                    i = end_of_comment(bytes, i, dialect == Dialect::Postgres);
                    current.push(' ');
                    from = i;
                }
            }
            b'\\' if dialect == Dialect::Postgres && at_line_start(bytes, i) => {
                // A psql meta-command (`\connect`, `\restrict`): to the end of its line.
                current.push_str(&script[from..i]);
                i = line_end(bytes, i);
                from = i;
            }
            b';' => {
                current.push_str(&script[from..i]);
                flush(&mut current, &mut out);
                i += 1;
                from = i;
            }
            _ => i += 1,
        }
    }
    current.push_str(&script[from.min(script.len())..]);
    flush(&mut current, &mut out);
    out
}

/// Whether the byte before `i` continues a word (so `$` or `'` at `i` is not an opening).
fn word_byte(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
}

fn at_line_start(bytes: &[u8], i: usize) -> bool {
    bytes[..i]
        .iter()
        .rev()
        .take_while(|&&b| b != b'\n')
        .all(|b| b.is_ascii_whitespace())
}

/// Past the closing `quote` of the quoted text opening at `start` (doubled quotes and, when
/// `backslash`, escaped characters inside); the end of the text when it never closes.
fn end_of_quoted(bytes: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if backslash && bytes[i] == b'\\' {
            i += 2;
        } else if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// `$tag$` at the start of `rest`, when it is one.
fn dollar_tag(rest: &[u8]) -> Option<String> {
    let end = rest[1..].iter().position(|&b| b == b'$')? + 1;
    let tag = &rest[1..end];
    let valid = tag
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)
        && tag.first().is_none_or(|b| !b.is_ascii_digit());
    valid.then(|| String::from_utf8_lossy(&rest[..=end]).into_owned())
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn line_end(bytes: &[u8], i: usize) -> usize {
    find(bytes, i, b"\n").map_or(bytes.len(), |e| e + 1)
}

/// Past the `*/` closing the comment opening at `start` (PostgreSQL's nest).
fn end_of_comment(bytes: &[u8], start: usize, nested: bool) -> usize {
    let mut depth = 1;
    let mut i = start + 2;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else if nested && bytes[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// The text of a MariaDB statement inside its executable comment (`/*!50001 ...*/`,
/// `/*M!100005 ...*/`), with its version; the statement itself when it is not wrapped.
pub(crate) fn unwrap_executable(statement: &str) -> (Option<u32>, &str) {
    let inner = statement
        .strip_prefix("/*M!")
        .or_else(|| statement.strip_prefix("/*!"));
    match inner.and_then(|s| s.strip_suffix("*/")) {
        Some(body) => {
            let digits = body.bytes().take_while(u8::is_ascii_digit).count();
            (body[..digits].parse().ok(), body[digits..].trim())
        }
        None => (None, statement),
    }
}

/// A statement (or a message quoting one) as a message shows it: on one line, cut before any
/// password or secret it carries, at most `max` characters.
pub(crate) fn shown(statement: &str, max: usize) -> String {
    let one_line: String = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    let upper = one_line.to_ascii_uppercase();
    let cut = ["IDENTIFIED", "PASSWORD", " USING "]
        .iter()
        .filter_map(|k| upper.find(k))
        .min();
    let (mut text, mut cut_short) = match cut {
        Some(at) => (one_line[..at].trim_end().to_string(), true),
        None => (one_line, false),
    };
    if text.chars().count() > max {
        text = text.chars().take(max).collect();
        cut_short = true;
    }
    if cut_short {
        text.push_str(" …");
    }
    crate::escape_untrusted(text.as_bytes(), crate::Newlines::Escape)
}

/// The first lines of a program's or server's message, at most `max` characters: the reason,
/// never pages of echoed SQL. Lines that report an error (`ERROR ...` from the MariaDB client,
/// `pg_restore: error: ...`) are preferred over the rest (the statement they echo).
pub(crate) fn reason(text: &str, max: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Warning") && !l.starts_with("-----"))
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("ERROR") || l.contains("error:"))
        .collect();
    let chosen = if errors.is_empty() { lines } else { errors };
    let mut out = chosen.into_iter().take(3).collect::<Vec<_>>().join("; ");
    if out.chars().count() > max {
        out = out.chars().take(max).collect();
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_statements_split_outside_quotes_and_comments() {
        let script = "-- a comment; with a semicolon\n\
/*!40101 SET NAMES utf8mb4 */;\n\
CREATE USER IF NOT EXISTS `we;ird`@`%` IDENTIFIED BY PASSWORD '*C0;7';\n\
GRANT SELECT ON `a;b`.* TO 'it''s;'@'%';\n\
# hash comment; here\n\
INSERT INTO t VALUES ('line\none; \\' still', \"dq;\");\n\
GRANT ALL ON `x``y;`.* TO `u`@`h` /* trailing; */;\n\
SELECT 1";
        assert_eq!(
            split(script, Dialect::Mysql),
            [
                "/*!40101 SET NAMES utf8mb4 */",
                "CREATE USER IF NOT EXISTS `we;ird`@`%` IDENTIFIED BY PASSWORD '*C0;7'",
                "GRANT SELECT ON `a;b`.* TO 'it''s;'@'%'",
                "INSERT INTO t VALUES ('line\none; \\' still', \"dq;\")",
                "GRANT ALL ON `x``y;`.* TO `u`@`h`",
                "SELECT 1",
            ]
        );
    }

    #[test]
    fn postgres_statements_split_outside_quotes_dollars_and_meta_commands() {
        let script = "\\restrict abc;def\n\
SET standard_conforming_strings = on;\n\
CREATE ROLE \"Odd;\"\"Name\";\n\
ALTER ROLE app SET search_path TO 'a;b', E'c\\';d';\n\
/* a /* nested; */ comment; */\n\
COMMENT ON ROLE app IS $x$semi;colon$x$;\n\
ALTER ROLE app WITH PASSWORD 'it''s;a\nsecret';\n\
\\unrestrict abc\n";
        assert_eq!(
            split(script, Dialect::Postgres),
            [
                "SET standard_conforming_strings = on",
                "CREATE ROLE \"Odd;\"\"Name\"",
                "ALTER ROLE app SET search_path TO 'a;b', E'c\\';d'",
                "COMMENT ON ROLE app IS $x$semi;colon$x$",
                "ALTER ROLE app WITH PASSWORD 'it''s;a\nsecret'",
            ]
        );
    }

    #[test]
    fn executable_comments_unwrap() {
        assert_eq!(
            unwrap_executable("/*M!100005 SET DEFAULT ROLE 'r' FOR 'a'@'%' */"),
            (Some(100005), "SET DEFAULT ROLE 'r' FOR 'a'@'%'")
        );
        assert_eq!(unwrap_executable("GRANT x TO y"), (None, "GRANT x TO y"));
    }

    #[test]
    fn messages_show_no_secret_and_stay_short() {
        assert_eq!(
            shown(
                "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*D8'",
                200
            ),
            "GRANT USAGE ON *.* TO `app`@`%` …"
        );
        assert_eq!(
            shown("ALTER ROLE app WITH LOGIN PASSWORD 'SCRAM'", 200),
            "ALTER ROLE app WITH LOGIN …"
        );
        let long = format!("INSERT INTO t VALUES ({})", "0x61".repeat(5000));
        let stderr = format!(
            "--------------\n{long}\n--------------\n\nERROR 2006 (HY000) at line 37: Server has gone away\n"
        );
        assert_eq!(
            reason(&stderr, 300),
            "ERROR 2006 (HY000) at line 37: Server has gone away"
        );
        assert!(reason(&long, 300).chars().count() <= 301);
        assert_eq!(
            reason(
                "pg_restore: error: could not execute query: ERROR:  tablespace \"fast\" does not exist\nCommand was: CREATE TABLE public.hot (\n    id integer\n);\n",
                300
            ),
            "pg_restore: error: could not execute query: ERROR:  tablespace \"fast\" does not exist"
        );
    }
}
