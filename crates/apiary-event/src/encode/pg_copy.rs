//! PostgreSQL `COPY ... FROM STDIN`: the text format's escaping and the binary format's framing,
//! shared by the Core's event store and the PostgreSQL logger so the two cannot drift apart.

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

/// `COPY ... FROM STDIN (FORMAT binary)`: a header, rows of length-prefixed fields in the
/// columns' binary send formats, and a trailer. The server skips parsing numbers and escapes,
/// and the client writes each value once, straight into the buffer.
pub mod binary {
    use std::net::IpAddr;

    /// PostgreSQL's epoch (2000-01-01T00:00:00Z) in Unix microseconds (`timestamptz` values).
    pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
    /// `PGSQL_AF_INET` and `PGSQL_AF_INET6` of the `inet` binary format.
    const PG_AF_INET: u8 = 2;
    const PG_AF_INET6: u8 = 3;

    /// Appends the header: signature, flags, header extension length.
    pub fn header(out: &mut Vec<u8>) {
        out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
    }

    /// Appends the trailer that ends the data.
    pub fn trailer(out: &mut Vec<u8>) {
        out.extend_from_slice(&(-1i16).to_be_bytes());
    }

    /// Starts a row of `columns` fields.
    pub fn row(out: &mut Vec<u8>, columns: i16) {
        out.extend_from_slice(&columns.to_be_bytes());
    }

    /// Appends one field.
    pub fn field(out: &mut Vec<u8>, bytes: &[u8]) {
        // A field past 1 GiB is refused by the server anyway; the length saturates.
        out.extend_from_slice(&i32::try_from(bytes.len()).unwrap_or(i32::MAX).to_be_bytes());
        out.extend_from_slice(bytes);
    }

    /// Appends one field written by `write` straight into `out` (no intermediate buffer); the
    /// length is filled in afterwards.
    pub fn field_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
        let at = out.len();
        out.extend_from_slice(&0i32.to_be_bytes());
        write(out);
        let len = i32::try_from(out.len() - at - 4).unwrap_or(i32::MAX).to_be_bytes();
        if let Some(slot) = out.get_mut(at..at + 4) {
            slot.copy_from_slice(&len);
        }
    }

    /// Appends a NULL.
    pub fn null(out: &mut Vec<u8>) {
        out.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// A `text` (or `json`) value.
    pub fn text(out: &mut Vec<u8>, v: Option<&str>) {
        match v {
            Some(s) => field(out, s.as_bytes()),
            None => null(out),
        }
    }

    /// An `int4` value.
    pub fn int4(out: &mut Vec<u8>, v: Option<i32>) {
        match v {
            Some(n) => field(out, &n.to_be_bytes()),
            None => null(out),
        }
    }

    /// An `int8` value.
    pub fn int8(out: &mut Vec<u8>, v: Option<i64>) {
        match v {
            Some(n) => field(out, &n.to_be_bytes()),
            None => null(out),
        }
    }

    /// A `uuid` value (16 bytes).
    pub fn uuid(out: &mut Vec<u8>, v: Option<uuid::Uuid>) {
        match v {
            Some(u) => field(out, u.as_bytes()),
            None => null(out),
        }
    }

    /// A UUID into a `text` column, in its hyphenated lower-case form.
    pub fn uuid_text(out: &mut Vec<u8>, v: Option<uuid::Uuid>) {
        match v {
            Some(u) => {
                field(out, u.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).as_bytes())
            }
            None => null(out),
        }
    }

    /// An `inet` value (a host address: full-length netmask).
    pub fn inet(out: &mut Vec<u8>, v: Option<IpAddr>) {
        match v {
            Some(IpAddr::V4(a)) => {
                field(out, &[&[PG_AF_INET, 32, 0, 4][..], &a.octets()].concat());
            }
            Some(IpAddr::V6(a)) => {
                field(out, &[&[PG_AF_INET6, 128, 0, 16][..], &a.octets()].concat());
            }
            None => null(out),
        }
    }

    /// An address into a `text` column, as `Display` writes it.
    pub fn ip_text(out: &mut Vec<u8>, v: Option<IpAddr>) {
        use std::io::Write as _;
        match v {
            // Writing into a Vec cannot fail.
            Some(ip) => field_with(out, |o| drop(write!(o, "{ip}"))),
            None => null(out),
        }
    }
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

    #[test]
    fn binary_fields_are_length_prefixed_and_null_is_minus_one() {
        let mut out = Vec::new();
        binary::field_with(&mut out, |o| o.extend_from_slice(b"abc"));
        binary::ip_text(&mut out, Some([10, 0, 0, 1].into()));
        binary::int8(&mut out, Some(-2));
        binary::text(&mut out, None);
        binary::uuid_text(&mut out, Some(uuid::Uuid::from_u128(1)));
        let mut want = Vec::new();
        want.extend_from_slice(&3i32.to_be_bytes());
        want.extend_from_slice(b"abc");
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(b"10.0.0.1");
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&(-2i64).to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&36i32.to_be_bytes());
        want.extend_from_slice(b"00000000-0000-0000-0000-000000000001");
        assert_eq!(out, want);
    }
}
