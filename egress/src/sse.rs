//! Server-sent events, incrementally: [`EventSplitter`] cuts a byte stream into raw events
//! (exact bytes, terminator included) however the events are split across frames, and
//! [`parse_event`] reads one event's fields. Line ends may be `\n`, `\r\n` or `\r`; comments
//! (`:` lines) are skipped; several `data:` lines join with `\n` (the WHATWG algorithm).

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// What [`EventSplitter::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Within limits; complete events are available from [`EventSplitter::next_event`].
    Ok,
    /// The event being assembled grew past the cap without ending: the splitter gave up. The
    /// bytes it held are returned (so a filter can still forward them) and it passes nothing on
    /// from now on.
    Overflow(Bytes),
}

/// Cuts a byte stream into raw SSE events.
#[derive(Debug)]
pub(crate) struct EventSplitter {
    buf: BytesMut,
    /// Bytes of `buf` already looked at for line ends.
    scanned: usize,
    /// Start of the current line in `buf`.
    line_start: usize,
    /// Largest event kept.
    cap: usize,
    dead: bool,
}

impl EventSplitter {
    pub(crate) fn new(cap: usize) -> Self {
        EventSplitter {
            buf: BytesMut::new(),
            scanned: 0,
            line_start: 0,
            cap,
            dead: false,
        }
    }

    /// Appends bytes.
    fn push(&mut self, data: &[u8]) -> Pushed {
        if self.dead {
            return Pushed::Ok;
        }
        self.buf.extend_from_slice(data);
        Pushed::Ok
    }

    /// True once the splitter gave up (overflow).
    #[cfg(test)]
    pub(crate) fn is_dead(&self) -> bool {
        self.dead
    }

    /// The next complete raw event (its bytes up to and including the blank line that ends it),
    /// or `None` when more bytes are needed.
    pub(crate) fn next_event(&mut self) -> Option<Bytes> {
        if self.dead {
            return None;
        }
        loop {
            let hay = &self.buf[self.scanned..];
            let Some(off) = memchr::memchr2(b'\n', b'\r', hay) else {
                self.scanned = self.buf.len();
                return None;
            };
            let i = self.scanned + off;
            let next = if self.buf[i] == b'\n' {
                i + 1
            } else if i + 1 < self.buf.len() {
                if self.buf[i + 1] == b'\n' {
                    i + 2
                } else {
                    i + 1
                }
            } else {
                // A `\r` at the end: it may be the first half of `\r\n`. Wait.
                self.scanned = i;
                return None;
            };
            let empty_line = i == self.line_start;
            self.scanned = next;
            self.line_start = next;
            if empty_line {
                let ev = self.buf.split_to(next).freeze();
                self.scanned = 0;
                self.line_start = 0;
                return Some(ev);
            }
        }
    }

    /// Push, then report an overflow.
    pub(crate) fn push_checked(&mut self, data: &[u8]) -> Pushed {
        self.push(data);
        // Only the unscanned tail can hold an event end; scan before judging the size.
        match self.overflow_after_scan() {
            Some(b) => Pushed::Overflow(b),
            None => Pushed::Ok,
        }
    }

    fn overflow_after_scan(&mut self) -> Option<Bytes> {
        if self.buf.len() <= self.cap {
            return None;
        }
        // Complete events may still be in the buffer: the caller drains them with next_event
        // before the size check matters. Only a single unfinished event larger than the cap
        // counts.
        let held_incomplete = self.buf.len() - self.complete_prefix_len();
        if held_incomplete > self.cap {
            self.dead = true;
            return Some(std::mem::take(&mut self.buf).freeze());
        }
        None
    }

    /// Length of the prefix of `buf` made of complete events (scans without consuming).
    fn complete_prefix_len(&self) -> usize {
        let b = &self.buf[..];
        let mut line_start = 0;
        let mut last_end = 0;
        let mut pos = 0;
        while let Some(off) = memchr::memchr2(b'\n', b'\r', &b[pos..]) {
            let i = pos + off;
            let next = if b[i] == b'\n' {
                i + 1
            } else if i + 1 < b.len() {
                if b[i + 1] == b'\n' { i + 2 } else { i + 1 }
            } else {
                break;
            };
            if i == line_start {
                last_end = next;
            }
            line_start = next;
            pos = next;
        }
        last_end
    }

    /// The bytes held at the end of the stream (an event without its blank line, or nothing).
    pub(crate) fn take_rest(&mut self) -> Bytes {
        self.scanned = 0;
        self.line_start = 0;
        std::mem::take(&mut self.buf).freeze()
    }
}

/// One parsed event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Event<'a> {
    /// The `event:` field, if any.
    pub(crate) event: Option<Cow<'a, [u8]>>,
    /// The `data:` lines joined with `\n`; `None` when the event has no data line.
    pub(crate) data: Option<Cow<'a, [u8]>>,
}

/// Reads the fields of one raw event (as cut by [`EventSplitter`], or a stream's unterminated
/// tail).
pub(crate) fn parse_event(raw: &[u8]) -> Event<'_> {
    let mut event = None;
    let mut data: Option<Cow<'_, [u8]>> = None;
    for line in lines(raw) {
        if line.is_empty() || line[0] == b':' {
            continue;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &line[line.len()..]),
        };
        match field {
            b"data" => {
                data = Some(match data {
                    None => Cow::Borrowed(value),
                    Some(prev) => {
                        let mut v = prev.into_owned();
                        v.push(b'\n');
                        v.extend_from_slice(value);
                        Cow::Owned(v)
                    }
                });
            }
            b"event" => event = Some(Cow::Borrowed(value)),
            _ => {}
        }
    }
    Event { event, data }
}

/// Lines of `raw`, split at `\r\n`, `\n` or `\r`.
fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match memchr::memchr2(b'\n', b'\r', rest) {
            Some(i) => {
                let line = &rest[..i];
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = &rest[rest.len()..];
                Some(line)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> (Vec<Bytes>, Bytes) {
        let mut s = EventSplitter::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            assert_eq!(s.push_checked(c), Pushed::Ok);
            while let Some(e) = s.next_event() {
                out.push(e);
            }
        }
        let rest = s.take_rest();
        (out, rest)
    }

    #[test]
    fn events_survive_any_split_and_keep_their_bytes() {
        let stream: &[u8] = b"event: a\r\ndata: {\"x\":1}\r\n\r\n: comment\n\ndata: l1\ndata: l2\n\nevent: b\rdata: y\r\rdata: tail";
        for cut1 in 0..stream.len() {
            for cut2 in cut1..stream.len() {
                let (evs, rest) =
                    split_all(&[&stream[..cut1], &stream[cut1..cut2], &stream[cut2..]]);
                let mut joined: Vec<u8> = evs.iter().flat_map(|e| e.to_vec()).collect();
                joined.extend_from_slice(&rest);
                assert_eq!(joined, stream, "cuts {cut1} {cut2}");
                assert_eq!(evs.len(), 4, "cuts {cut1} {cut2}");
                assert_eq!(&rest[..], b"data: tail");
            }
        }
    }

    #[test]
    fn fields_comments_and_multiline_data() {
        let e = parse_event(b"event: message_start\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n");
        assert_eq!(e.event.as_deref(), Some(&b"message_start"[..]));
        assert_eq!(e.data.as_deref(), Some(&b"{\"a\":\n1}"[..]));
        let c = parse_event(b": keepalive\n\n");
        assert_eq!(c.data, None);
        let nospace = parse_event(b"data:[DONE]\n\n");
        assert_eq!(nospace.data.as_deref(), Some(&b"[DONE]"[..]));
        let cr = parse_event(b"data: x\rdata: y\r\r");
        assert_eq!(cr.data.as_deref(), Some(&b"x\ny"[..]));
    }

    #[test]
    fn an_oversized_event_gives_up_and_returns_its_bytes() {
        let mut s = EventSplitter::new(16);
        assert_eq!(s.push_checked(b"data: 1\n\n"), Pushed::Ok);
        assert!(s.next_event().is_some());
        match s.push_checked(b"data: 0123456789abcdefghij") {
            Pushed::Overflow(b) => assert_eq!(&b[..], b"data: 0123456789abcdefghij"),
            Pushed::Ok => panic!("no overflow"),
        }
        assert!(s.is_dead());
        assert_eq!(s.next_event(), None);
    }

    #[test]
    fn complete_events_do_not_count_towards_the_cap() {
        let mut s = EventSplitter::new(16);
        let many = b"data: 1\n\n".repeat(10);
        assert_eq!(s.push_checked(&many), Pushed::Ok);
        let mut n = 0;
        while s.next_event().is_some() {
            n += 1;
        }
        assert_eq!(n, 10);
    }
}
