//! Capped reads: every read of a file or stream whose size we do not control goes through here,
//! so a huge input is a clear error instead of an out-of-memory kill.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Reads at most `limit` bytes from `reader`; more than that is an `InvalidData` error.
pub fn read_to_end_capped(reader: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    #[allow(clippy::disallowed_methods)] // bounded by `take(limit + 1)` on the line itself
    reader.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("input is larger than the {limit}-byte limit"),
        ));
    }
    Ok(buf)
}

/// Reads the whole file at `path`, refusing files larger than `limit` bytes.
pub fn read_capped(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_to_end_capped(File::open(path)?, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_inclusive() {
        assert_eq!(read_to_end_capped(&b"abcd"[..], 4).unwrap(), b"abcd");
        let err = read_to_end_capped(&b"abcde"[..], 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
