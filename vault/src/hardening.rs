//! Process and memory hardening. This is the one module in the workspace allowed `unsafe`
//! (`[workspace.lints]` denies it everywhere else): a handful of libc calls, each commented.
//!
//! * [`harden_process`] turns off core dumps (`RLIMIT_CORE = 0`) and marks the process
//!   non-dumpable (`PR_SET_DUMPABLE = 0`, which also stops same-user `ptrace` and makes
//!   `/proc/<pid>/mem` root-only), so a crash never writes key material to disk.
//! * [`KeyBytes`] keeps a 32-byte key alone on its own page, locked with `mlock` (no swap) and
//!   excluded from dumps with `MADV_DONTDUMP`, and zeroized before the page is freed.
//!
//! * [`bound_allocator`] and [`release_free_memory`] keep a long-running daemon's resident memory
//!   close to what it uses: glibc otherwise grows one arena per thread that ever contended and
//!   keeps freed pages of a replaced redactor (megabytes, rebuilt whenever the vault changes)
//!   mapped. Measured with 2,000 vault values and six rebuilds: 63 MiB resident before, 25 MiB
//!   after.
//!
//! Both are best-effort where the OS refuses (an unprivileged `RLIMIT_MEMLOCK` of 64 KiB holds
//! sixteen keys): the failure is logged once and the key is still zeroized on drop.
#![allow(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use zeroize::Zeroize;

/// Size of a key.
pub const KEY_LEN: usize = 32;
const PAGE: usize = 4096;

/// What [`harden_process`] managed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HardeningReport {
    /// Core dumps disabled (`RLIMIT_CORE` set to 0).
    pub core_dumps_disabled: bool,
    /// Process marked non-dumpable.
    pub non_dumpable: bool,
}

/// Disables core dumps and marks the process non-dumpable. Call once, first thing in `main`.
pub fn harden_process() -> HardeningReport {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid, initialised rlimit struct we own for the call's duration.
    let core_dumps_disabled = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } == 0;
    // SAFETY: PR_SET_DUMPABLE takes plain integer arguments and touches no memory of ours.
    let non_dumpable = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0;
    HardeningReport {
        core_dumps_disabled,
        non_dumpable,
    }
}

/// Caps glibc's malloc arenas (`M_ARENA_MAX`) for a long-running daemon. Call early, before
/// threads allocate. A no-op on other C libraries.
pub fn bound_allocator() {
    // One: every arena holds its own freed memory, and the daemon's threads (the egress
    // thread, two tokio workers, blocking threads) allocate little enough that sharing one
    // costs nothing measurable. Under `scripts/bench-egress` two arenas peaked at 55-58 MiB
    // resident during the load and held 36.5-37.4 MiB idle afterwards; one arena 41-42 and
    // 34.1-34.9, with the same latencies (two runs each).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and only changes the allocator's tuning parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns free heap pages to the kernel (glibc `malloc_trim(0)`: every arena, holes included),
/// after a large structure was dropped. A no-op on other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A key alone on a page-aligned page, so locking and unlocking it cannot affect any other
/// allocation.
#[repr(C, align(4096))]
struct Page {
    key: [u8; KEY_LEN],
    _rest: [u8; PAGE - KEY_LEN],
}

static MLOCK_WARNED: AtomicBool = AtomicBool::new(false);

/// A 32-byte key held in locked, non-dumpable memory and zeroized on drop. `Debug` prints
/// nothing of it.
pub struct KeyBytes {
    page: Box<Page>,
    locked: bool,
}

impl KeyBytes {
    /// Moves `key` into a fresh locked page and wipes the caller's copy.
    pub fn from_array(key: &mut [u8; KEY_LEN]) -> Self {
        let mut page = Box::new(Page {
            key: [0; KEY_LEN],
            _rest: [0; PAGE - KEY_LEN],
        });
        let locked = lock_page(&mut page);
        page.key.copy_from_slice(key);
        key.zeroize();
        Self { page, locked }
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.page.key
    }
}

fn lock_page(page: &mut Page) -> bool {
    let ptr = (page as *mut Page).cast::<libc::c_void>();
    // SAFETY: `ptr` points to a live, page-aligned allocation of exactly PAGE bytes that we own.
    let locked = unsafe { libc::mlock(ptr, PAGE) } == 0;
    // SAFETY: same range; MADV_DONTDUMP only changes dump behaviour, never the contents.
    unsafe { libc::madvise(ptr, PAGE, libc::MADV_DONTDUMP) };
    if !locked && !MLOCK_WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "Could not lock key memory (raise LimitMEMLOCK); keys are still zeroized on drop."
        );
    }
    locked
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        self.page.key.zeroize();
        if self.locked {
            let ptr = (&mut *self.page as *mut Page).cast::<libc::c_void>();
            // SAFETY: the range was locked by `lock_page` and is still owned by us.
            unsafe { libc::munlock(ptr, PAGE) };
        }
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBytes(**REDACTED**)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_hardening_takes_effect() {
        let report = harden_process();
        assert_eq!(
            report,
            HardeningReport {
                core_dumps_disabled: true,
                non_dumpable: true
            }
        );
        // SAFETY: PR_GET_DUMPABLE takes no pointers.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
        let mut limit = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) }, 0);
        assert_eq!((limit.rlim_cur, limit.rlim_max), (0, 0));
    }

    #[test]
    fn key_is_moved_and_source_wiped() {
        let mut raw = [7u8; KEY_LEN];
        let key = KeyBytes::from_array(&mut raw);
        assert_eq!(raw, [0; KEY_LEN]);
        assert_eq!(key.as_bytes(), &[7u8; KEY_LEN]);
        assert_eq!(format!("{key:?}"), "KeyBytes(**REDACTED**)");
        assert_eq!((key.as_bytes().as_ptr() as usize) % PAGE, 0);
    }
}
