//! Reading and parsing the `CONNECT` request head, and the proxy credentials in it.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clawgate_protocol::SecretString;
use tokio::io::{AsyncRead, AsyncReadExt};
use zeroize::Zeroizing;

/// Most header lines accepted.
const MAX_HEADERS: usize = 64;

/// Why no head could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// The head did not end within the size limit.
    TooLarge,
    /// The head did not end within the time limit.
    Timeout,
    /// The client closed (or the socket failed) before the head ended.
    Closed,
}

/// A head as read: its bytes (zeroed on drop: they carry the credentials) and any bytes the
/// client sent after it (the start of the tunnel).
pub(crate) struct RawHead {
    pub(crate) head: Zeroizing<Vec<u8>>,
    pub(crate) rest: Vec<u8>,
}

/// Reads up to the blank line ending the head, within `max` bytes and `timeout` in total (a
/// client trickling bytes gets no more time than one that sends nothing).
pub(crate) async fn read_head<R: AsyncRead + Unpin>(
    io: &mut R,
    max: usize,
    timeout: Duration,
) -> Result<RawHead, HeadError> {
    let read = async {
        let mut buf = Zeroizing::new(Vec::with_capacity(1024));
        let mut chunk = Zeroizing::new([0u8; 2048]);
        loop {
            let from = buf.len().saturating_sub(3);
            let n = io
                .read(&mut chunk[..])
                .await
                .map_err(|_| HeadError::Closed)?;
            if n == 0 {
                return Err(HeadError::Closed);
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            if let Some(i) = memchr::memmem::find(buf.get(from..).unwrap_or_default(), b"\r\n\r\n")
            {
                let end = from + i + 4;
                if end > max {
                    return Err(HeadError::TooLarge);
                }
                let rest = buf.get(end..).unwrap_or_default().to_vec();
                buf.truncate(end);
                return Ok(RawHead { head: buf, rest });
            }
            if buf.len() >= max {
                return Err(HeadError::TooLarge);
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(HeadError::Timeout))
}

/// A parsed `CONNECT` head.
#[derive(Debug)]
pub(crate) struct Head<'a> {
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    headers: Vec<(&'a str, &'a str)>,
}

/// Why a head is not a well-formed HTTP/1.x request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadHead(pub(crate) &'static str);

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a head (including its final blank line).
pub(crate) fn parse_head(raw: &[u8]) -> Result<Head<'_>, BadHead> {
    let text = std::str::from_utf8(raw).map_err(|_| BadHead("the request head is not UTF-8"))?;
    let text = text
        .strip_suffix("\r\n\r\n")
        .ok_or(BadHead("the request head does not end with a blank line"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    if request_line.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(BadHead("control characters in the request line"));
    }
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadHead("the request line is not `METHOD target HTTP/1.1`"));
    };
    if !is_token(method) {
        return Err(BadHead("the method is not a token"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(BadHead("only HTTP/1.1 is spoken here"));
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            return Err(BadHead("folded header lines are not accepted"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(BadHead("a header line without a colon"))?;
        if !is_token(name) {
            return Err(BadHead("a header name is not a token"));
        }
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(BadHead("control characters in a header value"));
        }
        headers.push((name, value.trim_matches([' ', '\t'])));
        if headers.len() > MAX_HEADERS {
            return Err(BadHead("too many header lines"));
        }
    }
    Ok(Head {
        method,
        target,
        headers,
    })
}

impl Head<'_> {
    /// Every value of header `name` (case-insensitive).
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The proxy token: from `Proxy-Authorization: Basic base64(user:token)` (the user name is
    /// informational) or `Proxy-Authorization: Bearer token`.
    pub(crate) fn proxy_token(&self) -> Credentials {
        let mut values = self.values("proxy-authorization");
        let Some(value) = values.next() else {
            return Credentials::Missing;
        };
        if values.next().is_some() {
            return Credentials::Invalid;
        }
        let (scheme, param) = value.split_once(' ').unwrap_or((value, ""));
        let param = param.trim_matches(' ');
        if param.is_empty() {
            return Credentials::Invalid;
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return Credentials::Token(SecretString::new(param.to_owned()));
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Credentials::Invalid;
        }
        let Ok(decoded) = B64.decode(param).map(Zeroizing::new) else {
            return Credentials::Invalid;
        };
        let Ok(text) = std::str::from_utf8(&decoded) else {
            return Credentials::Invalid;
        };
        match text.split_once(':') {
            Some((_, token)) if !token.is_empty() => {
                Credentials::Token(SecretString::new(token.to_owned()))
            }
            _ => Credentials::Invalid,
        }
    }
}

/// What the client presented.
pub(crate) enum Credentials {
    /// No `Proxy-Authorization` header.
    Missing,
    /// A header that is not a single Basic or Bearer credential.
    Invalid,
    /// The token (zeroed on drop, never shown).
    Token(SecretString),
}

/// A CONNECT target: `host:port` or `[v6]:port`. The host is returned without brackets and
/// unvalidated beyond its shape (the host policy validates it).
pub(crate) fn parse_authority(target: &str) -> Result<(&str, u16), BadHead> {
    if target.contains('@') {
        return Err(BadHead("the CONNECT target must not carry user info"));
    }
    let (host, port) = if let Some(v6) = target.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or(BadHead("unterminated IPv6 literal in the CONNECT target"))?;
        let port = after
            .strip_prefix(':')
            .ok_or(BadHead("the CONNECT target has no port"))?;
        if !host.contains(':') {
            return Err(BadHead(
                "brackets around something that is not an IPv6 address",
            ));
        }
        (host, port)
    } else {
        let (host, port) = target
            .rsplit_once(':')
            .ok_or(BadHead("the CONNECT target has no port"))?;
        if host.contains(':') {
            return Err(BadHead("an IPv6 CONNECT target must be in brackets"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(BadHead("the CONNECT target has no host"));
    }
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadHead("the CONNECT port is not a number"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok((host, p)),
        _ => Err(BadHead("the CONNECT port is out of range")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn authorities() {
        let ok = [
            ("api.github.com:443", ("api.github.com", 443)),
            ("[2001:db8::1]:8443", ("2001:db8::1", 8443)),
            ("1.2.3.4:1", ("1.2.3.4", 1)),
        ];
        for (t, want) in ok {
            assert_eq!(parse_authority(t), Ok(want), "{t}");
        }
        for bad in [
            "api.github.com",
            "api.github.com:",
            "api.github.com:0",
            "api.github.com:65536",
            "api.github.com:+443",
            "api.github.com:443 ",
            "user:pw@api.github.com:443",
            ":443",
            "2001:db8::1:443",
            "[2001:db8::1]",
            "[2001:db8::1]443",
            "[1.2.3.4]:443",
            "[]:443",
            "api.github.com:000443",
        ] {
            assert!(parse_authority(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn heads_and_credentials() {
        let raw = b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\nProxy-Authorization: Basic YWdlbnQ6Y2ctdG9rZW4=\r\n\r\n";
        let h = parse_head(raw).unwrap();
        assert_eq!((h.method, h.target), ("CONNECT", "a.example:443"));
        let Credentials::Token(t) = h.proxy_token() else {
            panic!()
        };
        assert_eq!(t.expose(), "cg-token");

        let raw = b"CONNECT a.example:443 HTTP/1.1\r\nproxy-authorization: bearer cg-token\r\n\r\n";
        let Credentials::Token(t) = parse_head(raw).unwrap().proxy_token() else {
            panic!()
        };
        assert_eq!(t.expose(), "cg-token");

        for (raw, want) in [
            (&b"CONNECT a:1 HTTP/1.1\r\n\r\n"[..], "missing"),
            (b"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Basic !!!\r\n\r\n", "invalid"),
            (b"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Basic bm9jb2xvbg==\r\n\r\n", "invalid"),
            (b"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Digest x\r\n\r\n", "invalid"),
            (b"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Bearer\r\n\r\n", "invalid"),
            (
                b"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Bearer a\r\nProxy-Authorization: Bearer b\r\n\r\n",
                "invalid",
            ),
        ] {
            let got = match parse_head(raw).unwrap().proxy_token() {
                Credentials::Missing => "missing",
                Credentials::Invalid => "invalid",
                Credentials::Token(_) => "token",
            };
            assert_eq!(got, want, "{}", String::from_utf8_lossy(raw));
        }
        for bad in [
            &b"CONNECT a:1\r\n\r\n"[..],
            b"CONNECT  a:1 HTTP/1.1\r\n\r\n",
            b"CONNECT a:1 HTTP/2\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1\r\n folded\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1\r\nno colon\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1\r\nbad name: x\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1\r\nx: a\x00b\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1\r\nx: \xff\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
