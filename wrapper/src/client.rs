//! A minimal blocking HTTP/1.1 client over a Unix socket, for the CLI's talks with the running
//! daemon (`clawgate approvals …` over the admin socket). One request per connection.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};

/// Largest response read.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// A response: status and JSON body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Parsed body (`Null` when empty).
    pub body: Value,
}

/// Sends one request and reads the whole response.
pub fn request(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> Result<Reply> {
    let io = |what: &str, e| Error::io(format!("{what} {}", socket.display()), e);
    let mut stream = UnixStream::connect(socket).map_err(|e| io("connecting to", e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| io("configuring", e))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: clawgate\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(payload.as_bytes()))
        .map_err(|e| io("writing to", e))?;
    let raw = clawgate_protocol::io::read_to_end_capped(&mut stream, MAX_RESPONSE)
        .map_err(|e| io("reading from", e))?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<Reply> {
    let bad = |why: &str| Error::BadRequest(format!("malformed response from the daemon: {why}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("header not UTF-8"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("broken chunked body"))?;
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|_| bad("body is not JSON"))?
    };
    Ok(Reply { status, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{\"a\":1}\n").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body["a"], 1);
        let r = parse_response(
            b"HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:2}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 409);
        assert_eq!(r.body["a"], 2);
        assert!(parse_response(b"garbage").is_err());
    }
}
