//! The receiving side of legacy scp (`scp -t`): a state machine over the control lines
//! (`C0644 SIZE NAME`, `D...`, `E`, `T...`) and file bodies, hashing every byte and keeping the
//! first bytes of each file as evidence.
#![deny(clippy::indexing_slicing)]

use sha2::Digest as _;

/// A file the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upload {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    /// The first bytes (capped).
    pub(crate) head: Vec<u8>,
}

#[derive(Debug)]
enum State {
    Header,
    Body {
        name: String,
        size: u64,
        left: u64,
        hash: sha2::Sha256,
        head: Vec<u8>,
    },
    /// After a body: the client's status byte.
    Ack(Upload),
    Done,
}

/// One `scp -t` transfer.
#[derive(Debug)]
pub(crate) struct ScpSink {
    state: State,
    line: Vec<u8>,
    keep: usize,
    max: u64,
}

const MAX_LINE: usize = 4096;

impl ScpSink {
    /// A sink keeping `keep` bytes of each file and refusing files over `max` bytes.
    pub(crate) fn new(keep: usize, max: u64) -> Self {
        Self { state: State::Header, line: Vec::new(), keep, max }
    }

    /// The byte scp expects first: "ready".
    pub(crate) fn start() -> &'static [u8] {
        b"\0"
    }

    pub(crate) fn done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Feeds client bytes; returns replies and finished files.
    pub(crate) fn feed(&mut self, mut data: &[u8], reply: &mut Vec<u8>, files: &mut Vec<Upload>) {
        while !data.is_empty() {
            match &mut self.state {
                State::Done => return,
                State::Header => {
                    let Some(pos) = data.iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(data);
                        if self.line.len() > MAX_LINE {
                            self.state = State::Done;
                        }
                        return;
                    };
                    self.line.extend_from_slice(data.get(..pos).unwrap_or_default());
                    data = data.get(pos + 1..).unwrap_or_default();
                    let line =
                        String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    self.header(&line, reply);
                }
                State::Body { left, hash, head, .. } => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    let chunk = data.get(..n).unwrap_or_default();
                    hash.update(chunk);
                    let room = self.keep.saturating_sub(head.len());
                    head.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
                    *left -= n as u64;
                    data = data.get(n..).unwrap_or_default();
                    if *left == 0 {
                        let State::Body { name, size, hash, head, .. } =
                            std::mem::replace(&mut self.state, State::Done)
                        else {
                            return;
                        };
                        let sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
                        self.state = State::Ack(Upload { name, size, sha256, head });
                    }
                }
                State::Ack(_) => {
                    let status = data.first().copied();
                    data = data.get(1..).unwrap_or_default();
                    let State::Ack(up) = std::mem::replace(&mut self.state, State::Header) else {
                        return;
                    };
                    files.push(up);
                    if status == Some(0) {
                        reply.push(0);
                    } else {
                        self.state = State::Done;
                    }
                }
            }
        }
    }

    fn header(&mut self, line: &str, reply: &mut Vec<u8>) {
        let mut parts = line.splitn(3, ' ');
        let kind = parts.next().unwrap_or_default();
        match kind.chars().next() {
            Some('C') => {
                let size: Option<u64> = parts.next().and_then(|s| s.parse().ok());
                let name = parts.next().unwrap_or_default().to_owned();
                match size {
                    Some(size) if size <= self.max && !name.is_empty() => {
                        reply.push(0);
                        self.state = if size == 0 {
                            let sha256 = sha2::Sha256::digest(b"")
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect();
                            State::Ack(Upload { name, size, sha256, head: Vec::new() })
                        } else {
                            State::Body {
                                name,
                                size,
                                left: size,
                                hash: sha2::Sha256::new(),
                                head: Vec::new(),
                            }
                        };
                    }
                    Some(_) => {
                        reply.extend_from_slice(
                            format!("\x02scp: {name}: No space left on device\n").as_bytes(),
                        );
                        self.state = State::Done;
                    }
                    None => {
                        reply.extend_from_slice(b"\x02scp: protocol error: bad mode\n");
                        self.state = State::Done;
                    }
                }
            }
            Some('D' | 'E' | 'T') => reply.push(0),
            _ => self.state = State::Done,
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn receives_files_in_any_split() {
        let stream = b"T1700000000 0 1700000000 0\nC0755 11 bot.sh\nhello world\0C0644 0 empty\n\0";
        for split in 1..stream.len() {
            let mut s = ScpSink::new(5, 1000);
            let (mut reply, mut files) = (Vec::new(), Vec::new());
            s.feed(&stream[..split], &mut reply, &mut files);
            s.feed(&stream[split..], &mut reply, &mut files);
            assert_eq!(files.len(), 2, "split {split}");
            assert_eq!(files[0].name, "bot.sh");
            assert_eq!(files[0].size, 11);
            assert_eq!(files[0].head, b"hello");
            assert_eq!(
                files[0].sha256,
                "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
            );
            assert_eq!(files[1].size, 0);
            assert_eq!(reply, vec![0; 5]);
        }
        let mut s = ScpSink::new(5, 10);
        let mut reply = Vec::new();
        s.feed(b"C0644 11 big\n", &mut reply, &mut Vec::new());
        assert!(reply.starts_with(b"\x02"));
        assert!(s.done());
    }
}
