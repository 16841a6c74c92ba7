//! A small, bounds-checked reader of the TLS ClientHello: enough to learn the server name (SNI)
//! a client asks for and whether it hides its real one behind Encrypted ClientHello. It never
//! panics, never allocates more than the input, and refuses anything ambiguous: records other
//! than handshake records before the hello is complete, a handshake message other than a
//! ClientHello, trailing bytes, duplicate extensions, several or non-`host_name` server names.

/// Largest TLS record fragment (RFC 8446 §5.1).
const MAX_FRAGMENT: usize = 16 * 1024;

/// Content type of handshake records.
const HANDSHAKE: u8 = 0x16;
/// Handshake type of the ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Extension carrying the server name (RFC 6066).
const EXT_SERVER_NAME: u16 = 0;

/// What the ClientHello says, as far as the proxy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The `host_name` of the server_name extension: lower-case, trailing dot removed. `None`
    /// when the extension is absent.
    pub sni: Option<String>,
    /// The hello carries an Encrypted ClientHello (or ESNI) extension: the name it really asks
    /// for is hidden from the proxy.
    pub ech: bool,
    /// Bytes of input the hello's records took (the records that follow are not part of it).
    pub record_bytes: usize,
}

/// The result of reading the start of a client's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed (the hello is incomplete so far and within the limit).
    NeedMore,
    /// A complete, well-formed ClientHello.
    Complete(ClientHello),
    /// The stream does not start with a TLS handshake record.
    NotTls,
    /// A TLS handshake that is malformed, ambiguous or over the size limit.
    Malformed(&'static str),
}

/// A bounds-checked cursor over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(
            (usize::from(*b.first()?) << 16)
                | (usize::from(*b.get(1)?) << 8)
                | usize::from(*b.get(2)?),
        )
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self) -> Option<Reader<'a>> {
        let n = self.u16()?;
        self.take(usize::from(n)).map(Reader::new)
    }
}

/// True for extension types of Encrypted ClientHello (final and draft code points) and of the
/// older encrypted SNI.
fn is_ech(ext: u16) -> bool {
    matches!(ext, 0xfe08..=0xfe0d | 0xffce)
}

/// Reads the ClientHello at the start of `buf`, reassembling a handshake message split across
/// records. `max_hello` caps the handshake message (and with it how much is buffered).
pub fn parse_client_hello(buf: &[u8], max_hello: usize) -> Hello {
    let Some(&first) = buf.first() else {
        return Hello::NeedMore;
    };
    if first != HANDSHAKE {
        return Hello::NotTls;
    }
    if let Some(&major) = buf.get(1)
        && major != 3
    {
        return Hello::NotTls;
    }
    let mut handshake: Vec<u8> = Vec::new();
    let mut rest = Reader::new(buf);
    let mut consumed = 0usize;
    loop {
        match complete_message(&handshake, max_hello) {
            Some(Err(why)) => return Hello::Malformed(why),
            Some(Ok(Some(body))) => {
                if handshake.len() != 4 + body.len() {
                    return Hello::Malformed("bytes after the ClientHello in its records");
                }
                return match parse_body(body) {
                    Ok((sni, ech)) => Hello::Complete(ClientHello {
                        sni,
                        ech,
                        record_bytes: consumed,
                    }),
                    Err(why) => Hello::Malformed(why),
                };
            }
            None | Some(Ok(None)) => {}
        }
        // Every round consumes at least one record of at least one byte, or returns.
        if let Err(answer) = next_record(&mut rest, &mut handshake, &mut consumed, max_hello) {
            return answer;
        }
    }
}

/// Checks the handshake header. `None`: fewer than 4 bytes so far; `Some(Ok(None))`: the
/// message is incomplete; `Some(Ok(Some(body)))`: complete.
fn complete_message(
    handshake: &[u8],
    max_hello: usize,
) -> Option<Result<Option<&[u8]>, &'static str>> {
    let mut r = Reader::new(handshake);
    let kind = r.u8()?;
    let len = r.u24()?;
    if kind != CLIENT_HELLO {
        return Some(Err("the first handshake message is not a ClientHello"));
    }
    if len > max_hello {
        return Some(Err("the ClientHello is larger than the limit"));
    }
    Some(Ok(r.take(len)))
}

/// Appends the next record's fragment to `handshake`, or says why it cannot (the answer).
fn next_record(
    rest: &mut Reader<'_>,
    handshake: &mut Vec<u8>,
    consumed: &mut usize,
    max_hello: usize,
) -> Result<(), Hello> {
    if rest.buf.len() < 5 {
        return Err(Hello::NeedMore);
    }
    let mut header = Reader::new(rest.buf);
    let (Some(kind), Some(version), Some(len)) = (header.u8(), header.u16(), header.u16()) else {
        return Err(Hello::NeedMore);
    };
    if kind != HANDSHAKE {
        return Err(Hello::Malformed(
            "a non-handshake record before the ClientHello was complete",
        ));
    }
    if version >> 8 != 3 {
        return Err(Hello::Malformed("unknown record version"));
    }
    let len = usize::from(len);
    if len == 0 {
        return Err(Hello::Malformed("an empty handshake record"));
    }
    if len > MAX_FRAGMENT {
        return Err(Hello::Malformed("a record longer than TLS allows"));
    }
    if handshake.len() + len > max_hello.saturating_add(4) {
        return Err(Hello::Malformed("the ClientHello is larger than the limit"));
    }
    if rest.buf.len() < 5 + len {
        return Err(Hello::NeedMore);
    }
    let (Some(_), Some(fragment)) = (rest.take(5), rest.take(len)) else {
        return Err(Hello::NeedMore);
    };
    handshake.extend_from_slice(fragment);
    *consumed += 5 + len;
    Ok(())
}

/// Parses the ClientHello body: `(sni, ech)`.
fn parse_body(body: &[u8]) -> Result<(Option<String>, bool), &'static str> {
    const BAD: &str = "truncated ClientHello";
    let mut r = Reader::new(body);
    let _legacy_version = r.u16().ok_or(BAD)?;
    let _random = r.take(32).ok_or(BAD)?;
    let session_id = r.vec8().ok_or(BAD)?;
    if session_id.len() > 32 {
        return Err("session id longer than 32 bytes");
    }
    let suites = r.vec16().ok_or(BAD)?;
    if suites.buf.is_empty() || suites.buf.len() % 2 != 0 {
        return Err("bad cipher suite list");
    }
    let compression = r.vec8().ok_or(BAD)?;
    if compression.is_empty() {
        return Err("empty compression method list");
    }
    if r.is_empty() {
        return Ok((None, false));
    }
    let mut exts = r.vec16().ok_or(BAD)?;
    if !r.is_empty() {
        return Err("bytes after the extensions");
    }
    let mut seen: Vec<u16> = Vec::new();
    let mut sni = None;
    let mut ech = false;
    while !exts.is_empty() {
        let ty = exts.u16().ok_or(BAD)?;
        let mut data = exts.vec16().ok_or(BAD)?;
        if seen.contains(&ty) {
            return Err("duplicate extension");
        }
        seen.push(ty);
        if is_ech(ty) {
            ech = true;
        }
        if ty == EXT_SERVER_NAME {
            let mut list = data.vec16().ok_or("bad server_name extension")?;
            if !data.is_empty() {
                return Err("bytes after the server name list");
            }
            let name_type = list.u8().ok_or("empty server name list")?;
            if name_type != 0 {
                return Err("a server name that is not a host name");
            }
            let name = list.vec16().ok_or("bad server name")?;
            if !list.is_empty() {
                return Err("several server names");
            }
            sni = Some(normalise_name(name.buf).ok_or("the server name is not a host name")?);
        }
    }
    Ok((sni, ech))
}

/// Lower-cases a host name and drops one trailing dot; `None` unless it is non-empty ASCII
/// made of letters, digits, `-`, `_`, `.` and `:` (IP literals some clients send anyway).
fn normalise_name(raw: &[u8]) -> Option<String> {
    if raw.is_empty()
        || raw.len() > 255
        || !raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return None;
    }
    let s: String = raw
        .iter()
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect();
    let s = s.strip_suffix('.').map(str::to_owned).unwrap_or(s);
    (!s.is_empty()).then_some(s)
}

/// A fatal TLS alert record (TLS 1.2 record version, which every client accepts before the
/// handshake): sent before closing so the client reports a clear error.
pub(crate) fn alert(description: u8) -> [u8; 7] {
    [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]
}

/// `unrecognized_name`.
pub(crate) const ALERT_UNRECOGNIZED_NAME: u8 = 112;
/// `decode_error`.
pub(crate) const ALERT_DECODE_ERROR: u8 = 50;
/// `access_denied`.
pub(crate) const ALERT_ACCESS_DENIED: u8 = 49;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proptest::prelude::*;

    /// A ClientHello handshake message with these extensions.
    pub(crate) fn hello_message(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(32);
        body.extend([9u8; 32]);
        body.extend([0x00, 0x04, 0x13, 0x01, 0x13, 0x02]);
        body.extend([0x01, 0x00]);
        let mut e = Vec::new();
        for (ty, data) in exts {
            e.extend(ty.to_be_bytes());
            e.extend((data.len() as u16).to_be_bytes());
            e.extend(data);
        }
        body.extend((e.len() as u16).to_be_bytes());
        body.extend(e);
        let mut msg = vec![CLIENT_HELLO];
        msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        msg
    }

    pub(crate) fn sni_ext(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![0u8];
        entry.extend((name.len() as u16).to_be_bytes());
        entry.extend(name.as_bytes());
        let mut d = (entry.len() as u16).to_be_bytes().to_vec();
        d.extend(entry);
        (0, d)
    }

    /// Wraps a handshake message in records of at most `chunk` bytes.
    pub(crate) fn records(msg: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in msg.chunks(chunk) {
            out.extend([HANDSHAKE, 0x03, 0x01]);
            out.extend((c.len() as u16).to_be_bytes());
            out.extend(c);
        }
        out
    }

    fn sni_of(bytes: &[u8]) -> Hello {
        parse_client_hello(bytes, 16 * 1024)
    }

    #[test]
    fn reads_the_sni() {
        let bytes = records(
            &hello_message(&[(10, vec![0, 2, 0, 29]), sni_ext("Api.GitHub.com.")]),
            16384,
        );
        let Hello::Complete(h) = sni_of(&bytes) else {
            panic!()
        };
        assert_eq!(h.sni.as_deref(), Some("api.github.com"));
        assert!(!h.ech);
        assert_eq!(h.record_bytes, bytes.len());
        // Followed by more records: still complete, record_bytes stops at the hello.
        let mut more = bytes.clone();
        more.extend([0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
        let Hello::Complete(h2) = sni_of(&more) else {
            panic!()
        };
        assert_eq!(h2.record_bytes, bytes.len());
    }

    #[test]
    fn reassembles_split_records_and_asks_for_more_on_every_prefix() {
        let msg = hello_message(&[sni_ext("example.com"), (0x2b, vec![2, 3, 4])]);
        for chunk in [1, 2, 7, 50, 16384] {
            let bytes = records(&msg, chunk);
            for cut in 0..bytes.len() {
                assert_eq!(
                    sni_of(&bytes[..cut]),
                    Hello::NeedMore,
                    "chunk {chunk} cut {cut}"
                );
            }
            let Hello::Complete(h) = sni_of(&bytes) else {
                panic!("chunk {chunk}")
            };
            assert_eq!(h.sni.as_deref(), Some("example.com"));
        }
    }

    #[test]
    fn refusals() {
        let ok = hello_message(&[sni_ext("example.com")]);
        let cases: Vec<(Vec<u8>, Hello)> = vec![
            (b"GET / HTTP/1.1\r\n".to_vec(), Hello::NotTls),
            (vec![0x80, 0x2e, 0x01], Hello::NotTls),
            (vec![0x16, 0x01, 0x00], Hello::NotTls),
            (
                records(&hello_message(&[sni_ext("a.com"), sni_ext("b.com")]), 16384),
                Hello::Malformed("duplicate extension"),
            ),
            (
                records(
                    &hello_message(&[(0, {
                        let mut d = sni_ext("a.com").1;
                        let extra = sni_ext("b.com").1;
                        d.extend(&extra[2..]);
                        let l = (d.len() - 2) as u16;
                        d[..2].copy_from_slice(&l.to_be_bytes());
                        d
                    })]),
                    16384,
                ),
                Hello::Malformed("several server names"),
            ),
            (
                records(&hello_message(&[sni_ext("bad name")]), 16384),
                Hello::Malformed("the server name is not a host name"),
            ),
            (
                records(&hello_message(&[(0, vec![])]), 16384),
                Hello::Malformed("bad server_name extension"),
            ),
            (
                {
                    let mut m = ok.clone();
                    m[0] = 2;
                    records(&m, 16384)
                },
                Hello::Malformed("the first handshake message is not a ClientHello"),
            ),
            (
                {
                    let mut r = records(&ok, 20);
                    r[20 + 5] = 0x17;
                    r
                },
                Hello::Malformed("a non-handshake record before the ClientHello was complete"),
            ),
            (
                {
                    let mut m = ok.clone();
                    m.extend([0, 0, 0, 0]);
                    records(&m, 16384)
                },
                Hello::Malformed("bytes after the ClientHello in its records"),
            ),
            (
                vec![0x16, 0x03, 0x01, 0x00, 0x00],
                Hello::Malformed("an empty handshake record"),
            ),
            (
                vec![0x16, 0x03, 0x01, 0x40, 0x01],
                Hello::Malformed("a record longer than TLS allows"),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(sni_of(&bytes), want, "{bytes:02x?}");
        }
        // Over the size limit: refused as soon as the header says so.
        let big = records(
            &hello_message(&[sni_ext("a.com"), (0x15, vec![0; 3000])]),
            16384,
        );
        assert_eq!(
            parse_client_hello(&big[..10], 1000),
            Hello::Malformed("the ClientHello is larger than the limit")
        );
        // No extensions at all, and no SNI.
        let Hello::Complete(h) = sni_of(&records(&hello_message(&[]), 16384)) else {
            panic!()
        };
        assert_eq!(h.sni, None);
    }

    #[test]
    fn flags_encrypted_client_hello() {
        let bytes = records(
            &hello_message(&[sni_ext("public.example"), (0xfe0d, vec![0; 40])]),
            16384,
        );
        let Hello::Complete(h) = sni_of(&bytes) else {
            panic!()
        };
        assert!(h.ech);
        assert_eq!(h.sni.as_deref(), Some("public.example"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_client_hello(&bytes, 16 * 1024);
            let _ = parse_client_hello(&bytes, 10);
        }

        #[test]
        fn never_panics_on_random_handshake_records(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..700,
        ) {
            let mut msg = vec![CLIENT_HELLO];
            msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
            msg.extend(body);
            let _ = parse_client_hello(&records(&msg, chunk), 16 * 1024);
        }

        #[test]
        fn never_panics_on_mutated_hellos(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
            chunk in 1usize..300,
        ) {
            let msg = hello_message(&[sni_ext("api.example.com"), (10, vec![0, 2, 0, 29]), (0xfe0d, vec![1; 9])]);
            let mut bytes = records(&msg, chunk);
            for (i, b) in flips {
                let n = bytes.len();
                bytes[i % n] = b;
            }
            let n = bytes.len();
            bytes.truncate(cut % (n + 1));
            if let Hello::Complete(h) = parse_client_hello(&bytes, 16 * 1024) {
                prop_assert!(h.record_bytes <= bytes.len());
                if let Some(s) = h.sni {
                    prop_assert!(!s.is_empty() && s.bytes().all(|b| !b.is_ascii_uppercase()));
                }
            }
        }
    }
}
