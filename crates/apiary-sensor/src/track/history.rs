//! Zeek-style connection history: one letter per notable event, upper case from the
//! originator, lower case from the responder, each letter recorded once per direction.

use crate::decode::tcp_flags::{ACK, FIN, RST, SYN};

/// A history string built without allocation (at most 14 letters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    letters: [u8; 14],
    len: u8,
    seen: u16,
}

const LETTERS: &[u8; 7] = b"shadfrq";

impl History {
    fn add(&mut self, letter: u8, orig: bool) {
        let Some(i) = LETTERS.iter().position(|l| *l == letter) else { return };
        let bit = 1u16 << (i * 2 + usize::from(orig));
        if self.seen & bit != 0 {
            return;
        }
        self.seen |= bit;
        if let Some(slot) = self.letters.get_mut(usize::from(self.len)) {
            *slot = if orig { letter.to_ascii_uppercase() } else { letter };
            self.len += 1;
        }
    }

    /// Records a TCP segment with `flags` and `payload_len` bytes of data.
    pub fn tcp(&mut self, flags: u8, payload_len: usize, orig: bool) {
        let syn = flags & SYN != 0;
        if syn && flags & (FIN | RST) != 0 {
            self.add(b'q', orig);
        }
        if syn {
            self.add(if flags & ACK != 0 { b'h' } else { b's' }, orig);
        }
        if payload_len > 0 {
            self.add(b'd', orig);
        }
        if flags & FIN != 0 {
            self.add(b'f', orig);
        }
        if flags & RST != 0 {
            self.add(b'r', orig);
        }
        if flags & ACK != 0 && flags & (SYN | FIN | RST) == 0 && payload_len == 0 {
            self.add(b'a', orig);
        }
    }

    /// Records a UDP datagram.
    pub fn udp(&mut self, payload_len: usize, orig: bool) {
        if payload_len > 0 {
            self.add(b'd', orig);
        }
    }

    /// The history string.
    pub fn as_str(&self) -> &str {
        let s = self.letters.get(..usize::from(self.len)).unwrap_or_default();
        std::str::from_utf8(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tcp_flags::PSH;

    #[test]
    fn handshake_data_fin() {
        let mut h = History::default();
        h.tcp(SYN, 0, true);
        h.tcp(SYN | ACK, 0, false);
        h.tcp(ACK, 0, true);
        h.tcp(ACK | PSH, 10, true);
        h.tcp(ACK | PSH, 10, true);
        h.tcp(ACK | PSH, 20, false);
        h.tcp(FIN | ACK, 0, true);
        assert_eq!(h.as_str(), "ShADdF");
    }
}
