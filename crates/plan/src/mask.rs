//! Credentials written into URLs (`scheme://user:password@host`, `?password=...`): found in
//! any text, so that nothing lifeboat prints (a plan snippet, a URL) shows them.

use std::ops::Range;

/// What a credential is shown as.
pub const MASK: &str = "****";

/// The byte ranges of every credential in the URLs of `text`: the password of a userinfo and
/// the value of a query parameter named like a credential. Ranges are in order and disjoint.
pub fn credentials_in(text: &str) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("://") {
        let start = from + at + 3;
        // A URL in a plan ends at its string's quote; in prose, at a space.
        let end = text[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .map_or(text.len(), |n| start + n);
        credentials_in_url(&text[start..end], start, &mut found);
        from = end.max(start);
    }
    found
}

/// `url` without its scheme, found at `offset`.
fn credentials_in_url(url: &str, offset: usize, found: &mut Vec<Range<usize>>) {
    let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
    if let Some(at) = url[..authority_end].rfind('@')
        && let Some(colon) = url[..at].find(':')
        && colon + 1 < at
    {
        found.push(offset + colon + 1..offset + at);
    }
    let Some(question) = url.find('?') else {
        return;
    };
    let query_start = question + 1;
    let query_end = url[query_start..]
        .find('#')
        .map_or(url.len(), |n| query_start + n);
    let mut position = query_start;
    for pair in url[query_start..query_end].split(['&', ';']) {
        if let Some((key, value)) = pair.split_once('=')
            && !value.is_empty()
            && names_a_credential(&percent_decoded(key))
        {
            let value_start = position + key.len() + 1;
            found.push(offset + value_start..offset + value_start + value.len());
        }
        position += pair.len() + 1;
    }
}

/// `text` with every credential of its URLs shown as [`MASK`].
pub fn masked(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for range in credentials_in(text) {
        out.push_str(&text[last..range.start]);
        out.push_str(MASK);
        last = range.end;
    }
    out.push_str(&text[last..]);
    out
}

/// Where byte `offset` of a text lands once `ranges` (sorted, disjoint) are masked: after a
/// masked range it moves with the shortening; inside one, to the mask's start.
pub fn offset_after_masking(offset: usize, ranges: &[Range<usize>]) -> usize {
    let mut shift: isize = 0;
    for range in ranges {
        if offset <= range.start {
            break;
        }
        if offset < range.end {
            return (range.start as isize + shift) as usize;
        }
        shift += MASK.len() as isize - range.len() as isize;
    }
    (offset as isize + shift) as usize
}

/// A query parameter's name that says its value is a credential.
pub(crate) fn names_a_credential(key: &str) -> bool {
    let key: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    matches!(key.as_str(), "pass" | "pwd" | "auth")
        || [
            "password",
            "passwd",
            "secret",
            "token",
            "apikey",
            "credential",
        ]
        .iter()
        .any(|word| key.contains(word))
}

/// `%XX` escapes decoded (others kept as written), so `pass%77ord` is seen as `password`.
pub(crate) fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while position < bytes.len() {
        let hex = bytes
            .get(position + 1..position + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[position], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                position += 3;
            }
            (byte, _) => {
                out.push(byte);
                position += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn userinfo_and_query_credentials_are_masked() {
        assert_eq!(
            masked(r#"url = "postgres://app:s3cret@db:5432/x""#),
            r#"url = "postgres://app:****@db:5432/x""#
        );
        assert_eq!(
            masked("https://h/p?user=a&access_token=abc&x=1 and more"),
            "https://h/p?user=a&access_token=**** and more".replace("**** and", "****&x=1 and")
        );
        assert_eq!(masked("mysql://u@h/db"), "mysql://u@h/db");
        assert_eq!(masked("no url: a:b@c"), "no url: a:b@c");
        assert_eq!(
            masked(r#"a = "http://u:p@h" b = "http://v:q@i?pwd=z""#),
            r#"a = "http://u:****@h" b = "http://v:****@i?pwd=****""#
        );
    }

    #[test]
    fn offsets_follow_the_masking() {
        let text = "x = \"postgres://a:longpassword@h/db\"\ny = 1\n";
        let ranges = credentials_in(text);
        let after = masked(text);
        let y = text.find("y = 1").unwrap();
        assert_eq!(&after[offset_after_masking(y, &ranges)..][..5], "y = 1");
        let inside = text.find("longpassword").unwrap() + 3;
        assert_eq!(&after[offset_after_masking(inside, &ranges)..][..4], MASK);
        assert_eq!(offset_after_masking(0, &ranges), 0);
    }

    proptest! {
        #[test]
        fn masking_never_panics_and_hides_every_found_credential(text in ".{0,80}", secret in "[a-z]{6,12}") {
            let with_url = format!("{text} \"postgres://user:{secret}@host/db?password={secret}\" {text}");
            let shown = masked(&with_url);
            let in_userinfo = format!(":{secret}@");
            let in_query = format!("password={secret}");
            prop_assert!(!shown.contains(&in_userinfo));
            prop_assert!(!shown.contains(&in_query));
            for range in credentials_in(&text) {
                prop_assert!(text.get(range).is_some());
            }
        }
    }
}
