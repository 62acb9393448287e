//! A terminal line discipline for fake shells: turns raw keystrokes from an SSH pty or a
//! Telnet session into lines, with the echo a Linux tty in cooked mode would send.

/// What a chunk of keystrokes completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditorEvent {
    /// Enter was pressed: the line, lossily decoded.
    Line(String),
    /// Ctrl-C: the line was discarded.
    Interrupt,
    /// Ctrl-D on an empty line: logout.
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [` or `ESC O` until the final byte.
    Seq,
}

/// Cooked-mode line editing: echo, backspace, Ctrl-U, Ctrl-C, Ctrl-D; arrow keys and other
/// escape sequences are swallowed. The line is capped at `max` bytes.
#[derive(Debug)]
pub struct LineEditor {
    buf: Vec<u8>,
    max: usize,
    esc: Esc,
    last_cr: bool,
}

impl LineEditor {
    /// An editor whose lines are at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { buf: Vec::new(), max, esc: Esc::None, last_cr: false }
    }

    /// Feeds keystrokes: appends the echo to `echo` and completed lines to `events`.
    pub fn feed(&mut self, data: &[u8], echo: &mut Vec<u8>, events: &mut Vec<EditorEvent>) {
        for &b in data {
            let after_cr = std::mem::take(&mut self.last_cr);
            match self.esc {
                Esc::Start => {
                    self.esc = if b == b'[' || b == b'O' { Esc::Seq } else { Esc::None };
                    continue;
                }
                Esc::Seq => {
                    if (0x40..=0x7e).contains(&b) {
                        self.esc = Esc::None;
                    }
                    continue;
                }
                Esc::None => {}
            }
            match b {
                b'\n' | 0 if after_cr => {}
                b'\r' | b'\n' => {
                    self.last_cr = b == b'\r';
                    echo.extend_from_slice(b"\r\n");
                    let line = String::from_utf8_lossy(&self.buf).into_owned();
                    self.buf.clear();
                    events.push(EditorEvent::Line(line));
                }
                0x7f | 0x08 => {
                    // Remove one whole UTF-8 character.
                    while let Some(c) = self.buf.pop() {
                        if c & 0xc0 != 0x80 {
                            echo.extend_from_slice(b"\x08 \x08");
                            break;
                        }
                    }
                }
                0x03 => {
                    echo.extend_from_slice(b"^C\r\n");
                    self.buf.clear();
                    events.push(EditorEvent::Interrupt);
                }
                0x04 => {
                    if self.buf.is_empty() {
                        events.push(EditorEvent::Eof);
                    }
                }
                0x15 => {
                    for _ in 0..String::from_utf8_lossy(&self.buf).chars().count() {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                    self.buf.clear();
                }
                0x1b => self.esc = Esc::Start,
                b if b < 0x20 => {}
                b => {
                    if self.buf.len() < self.max {
                        self.buf.push(b);
                        echo.push(b);
                    }
                }
            }
        }
    }
}

/// Converts `\n` line ends to `\r\n` for a terminal (leaving existing `\r\n` alone).
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing() {
        let mut ed = LineEditor::new(8);
        let (mut echo, mut ev) = (Vec::new(), Vec::new());
        ed.feed(b"lx\x7fs\x1b[A -la\r\n", &mut echo, &mut ev);
        assert_eq!(ev, vec![EditorEvent::Line("ls -la".into())]);
        assert_eq!(echo, b"lx\x08 \x08s -la\r\n");
        ev.clear();
        ed.feed(b"abc\x03\x04", &mut echo, &mut ev);
        assert_eq!(ev, vec![EditorEvent::Interrupt, EditorEvent::Eof]);
        ev.clear();
        ed.feed(b"0123456789\r\0x\n", &mut echo, &mut ev);
        assert_eq!(ev, vec![EditorEvent::Line("01234567".into()), EditorEvent::Line("x".into())]);
        assert_eq!(to_crlf(b"a\nb\r\n"), b"a\r\nb\r\n");
    }
}
