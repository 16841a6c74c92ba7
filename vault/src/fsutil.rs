//! Small durable-file helpers: `clawgate_protocol::io`'s, with this crate's error type.

use std::path::Path;

use crate::error::{Error, Result};

/// fsyncs the directory holding `path`, so a create, rename or unlink survives power loss.
pub(crate) fn sync_parent_dir(path: &Path) -> Result<()> {
    clawgate_protocol::io::sync_parent_dir(path)
        .map_err(|e| Error::io(format!("syncing the directory of {}", path.display()), e))
}

/// Writes `contents` to `path` atomically, mode 0600 (see `clawgate_protocol::io::write_atomic`).
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    clawgate_protocol::io::write_atomic(path, contents)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
