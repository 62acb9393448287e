//! PostgreSQL `COPY ... FROM STDIN` text format: the escaping both the Core's event store and the
//! PostgreSQL logger use, so the two cannot drift apart.

/// Appends `s` escaped for COPY's text format: backslash, tab, newline and carriage return
/// become `\\`, `\t`, `\n` and `\r`; every other byte is copied as is.
///
/// Copies runs of plain bytes in one `extend_from_slice` (the common case, a JSON document,
/// has few or no specials).
pub fn escape(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// Appends one COPY text column: the value escaped, or `\N` for NULL, then a tab, or the row's
/// newline when `last`.
pub fn column<T: AsRef<[u8]>>(out: &mut Vec<u8>, v: Option<T>, last: bool) {
    match v {
        Some(v) => escape(out, v.as_ref()),
        None => out.extend_from_slice(b"\\N"),
    }
    out.push(if last { b'\n' } else { b'\t' });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_specials_and_keeps_the_rest() {
        let mut out = Vec::new();
        escape(&mut out, b"a\\b\tc\nd\re");
        assert_eq!(out, b"a\\\\b\\tc\\nd\\re");
        out.clear();
        escape(&mut out, "plain \u{e9}".as_bytes());
        assert_eq!(out, "plain \u{e9}".as_bytes());
        out.clear();
        escape(&mut out, b"\n");
        assert_eq!(out, b"\\n");
    }

    #[test]
    fn columns_end_with_tab_or_newline_and_null_is_backslash_n() {
        let mut out = Vec::new();
        column(&mut out, Some("x\ty"), false);
        column(&mut out, None::<&str>, true);
        assert_eq!(out, b"x\\ty\t\\N\n");
    }
}
