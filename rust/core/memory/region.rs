//! 64-byte aligned, zero-filled memory regions: on the heap, or POSIX shared-memory segments
//! this process creates (owner-only), and the names of such segments.

use std::ffi::CString;
use std::ptr::NonNull;

use crate::core::error::CoreError;

/// Alignment of every region and slot: a cache line, and enough for any SIMD load.
pub const ALIGN: usize = 64;

/// `n` rounded up to a multiple of `ALIGN`.
pub fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// A zero-filled, 64-byte aligned block of memory: on the heap, or a mapped POSIX shared-memory
/// segment this process created (owner-only). Unmapped or freed on drop; unlinking a segment's
/// name is separate (`shm_unlink`), so a name can go while mappings live on.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    shared: bool,
}

// The region is plain memory; who may write where is the pool's business.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

fn os_error(what: &str, name: &str) -> CoreError {
    let error = std::io::Error::last_os_error();
    CoreError::Os(
        error.raw_os_error().unwrap_or(0),
        format!("{what} {name}: {error}"),
    )
}

fn shm_path(name: &str) -> Result<CString, CoreError> {
    CString::new(format!("/{name}"))
        .map_err(|_| CoreError::InvalidArgument("name: must not contain NUL".into()))
}

impl Region {
    pub fn heap(len: usize) -> Result<Region, CoreError> {
        let layout = std::alloc::Layout::from_size_align(len.max(1), ALIGN).map_err(|_| {
            CoreError::InvalidArgument(format!("a region of {len} bytes is too large"))
        })?;
        // Safety: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or_else(|| {
            CoreError::Os(
                libc::ENOMEM,
                format!("out of memory allocating {len} bytes"),
            )
        })?;
        Ok(Region {
            ptr,
            len,
            shared: false,
        })
    }

    /// Creates the shared-memory segment `/name` (it must not exist), mode 0600, and maps it.
    pub fn shm_create(name: &str, len: usize) -> Result<Region, CoreError> {
        let path = shm_path(name)?;
        let size = len.max(1);
        // Safety: plain libc calls on a valid C string; every failure is checked.
        unsafe {
            let fd = libc::shm_open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                0o600,
            );
            if fd < 0 {
                return Err(os_error("cannot create shared memory", name));
            }
            if libc::ftruncate(fd, size as libc::off_t) != 0 {
                let error = os_error("cannot size shared memory", name);
                libc::close(fd);
                libc::shm_unlink(path.as_ptr());
                return Err(error);
            }
            // Reserve the pages now: on a full /dev/shm the first write to an unreserved page
            // would kill the process with SIGBUS. (Filesystems without fallocate stay lazy.)
            let reserved = libc::posix_fallocate(fd, 0, size as libc::off_t);
            if reserved == libc::ENOSPC {
                libc::close(fd);
                libc::shm_unlink(path.as_ptr());
                return Err(CoreError::Os(
                    reserved,
                    format!("cannot reserve {size} bytes of shared memory {name}: no space left"),
                ));
            }
            let flags = libc::PROT_READ | libc::PROT_WRITE;
            let ptr = libc::mmap(std::ptr::null_mut(), size, flags, libc::MAP_SHARED, fd, 0);
            libc::close(fd);
            if ptr == libc::MAP_FAILED {
                let error = os_error("cannot map shared memory", name);
                libc::shm_unlink(path.as_ptr());
                return Err(error);
            }
            Ok(Region {
                ptr: NonNull::new_unchecked(ptr.cast()),
                len,
                shared: true,
            })
        }
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes of the region (the caller makes sure no one writes to them meanwhile).
    pub fn bytes(&self) -> &[u8] {
        // Safety: `len` bytes are mapped for the region's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let size = self.len.max(1);
        // Safety: the pointer and size are those of the allocation or mapping made above.
        unsafe {
            if self.shared {
                libc::munmap(self.ptr.as_ptr().cast(), size);
            } else {
                let layout = std::alloc::Layout::from_size_align_unchecked(size, ALIGN);
                std::alloc::dealloc(self.ptr.as_ptr(), layout);
            }
        }
    }
}

/// A random non-zero 64-bit number from the kernel, for names no other user can predict.
pub fn random_token() -> Result<u64, CoreError> {
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    while filled < bytes.len() {
        // Safety: writes at most the remaining bytes of `bytes`.
        let n = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if n < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(CoreError::Os(
                    error.raw_os_error().unwrap_or(0),
                    format!("cannot draw a random name: {error}"),
                ));
            }
        } else {
            filled += n as usize;
        }
    }
    Ok(u64::from_le_bytes(bytes).max(1))
}

/// Creates a segment named `{prefix}{token:016x}` for a fresh random token, drawing again when
/// the name is taken (another user may have created it): `(region, name, token)`.
pub fn shm_create_unique(prefix: &str, len: usize) -> Result<(Region, String, u64), CoreError> {
    for _ in 0..64 {
        let token = random_token()?;
        let name = format!("{prefix}{token:016x}");
        match Region::shm_create(&name, len) {
            Ok(region) => return Ok((region, name, token)),
            Err(CoreError::Os(libc::EEXIST, _)) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(CoreError::Os(
        libc::EEXIST,
        format!("cannot create shared memory {prefix}*: every name drawn was taken"),
    ))
}

/// Writes `bytes` at `offset` of the existing segment `name` (this user's own).
pub fn shm_write_at(name: &str, offset: usize, bytes: &[u8]) -> Result<(), CoreError> {
    let path = shm_path(name)?;
    // Safety: plain libc calls on a valid C string and buffer; every failure is checked.
    unsafe {
        let fd = libc::shm_open(path.as_ptr(), libc::O_RDWR, 0o600);
        if fd < 0 {
            return Err(os_error("cannot open shared memory", name));
        }
        let written = libc::pwrite(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            offset as libc::off_t,
        );
        let result = if written == bytes.len() as isize {
            Ok(())
        } else {
            Err(os_error("cannot write shared memory", name))
        };
        libc::close(fd);
        result
    }
}

/// Removes the name of a shared-memory segment; false if there was none.
pub fn shm_unlink(name: &str) -> bool {
    match shm_path(name) {
        // Safety: a valid C string.
        Ok(path) => unsafe { libc::shm_unlink(path.as_ptr()) == 0 },
        Err(_) => false,
    }
}

/// The error of a shared object used in a forked child.
pub fn foreign_process(what: &str, owner: u32) -> CoreError {
    CoreError::Closed(format!(
        "the {what} belongs to process {owner}; in this process, attach to it by name"
    ))
}
