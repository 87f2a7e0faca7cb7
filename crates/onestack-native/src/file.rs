//! O_DIRECT open, fallocate hole punching / zeroing, and block-device geometry.
//! Each function is one syscall on a caller-owned fd; none keeps state.

use std::ffi::CString;

use napi_derive::napi;

use crate::errors::{invalid_arg, last_os_error, SysResult};

// The block ioctls are not in the libc crate. Generic Linux encoding (x86, arm, riscv,
// loongarch, s390x): dir << 30 | size << 16 | type << 8 | nr. Other arches encode
// differently, hence the cfg: there the build fails loudly rather than issue a wrong ioctl.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "loongarch64",
    target_arch = "s390x"
))]
const fn ioc(dir: u64, kind: u64, nr: u64, size: u64) -> libc::Ioctl {
    ((dir << 30) | (size << 16) | (kind << 8) | nr) as libc::Ioctl
}
/// _IO(0x12, 104): logical sector size as int.
const BLKSSZGET: libc::Ioctl = ioc(0, 0x12, 104, 0);
/// _IOR(0x12, 114, size_t): device size in bytes as u64.
const BLKGETSIZE64: libc::Ioctl = ioc(2, 0x12, 114, std::mem::size_of::<usize>() as u64);

/// Byte offsets and lengths come from JS as f64: accept only exact non-negative integers
/// below 2^53, so a NaN or 1.5 never turns into a silently truncated range.
fn to_off(value: f64, what: &str) -> SysResult<libc::off_t> {
    let exact = value.is_finite() && value >= 0.0 && value.fract() == 0.0;
    if !exact || value > 9_007_199_254_740_991.0 {
        return Err(invalid_arg(&format!(
            "{what} must be a non-negative integer, got {value}"
        )));
    }
    Ok(value as libc::off_t)
}

/// Opens `path` with O_DIRECT|O_CLOEXEC and O_RDWR (write) or O_RDONLY. Never creates.
#[napi]
pub fn open_direct(path: String, write: bool) -> napi::Result<i32, String> {
    let c_path = CString::new(path).map_err(|_| invalid_arg("path contains a NUL byte"))?;
    let access = if write { libc::O_RDWR } else { libc::O_RDONLY };
    let flags = access | libc::O_DIRECT | libc::O_CLOEXEC;
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags) };
    if fd < 0 {
        return Err(last_os_error("open(O_DIRECT)"));
    }
    Ok(fd)
}

fn fallocate(fd: i32, mode: i32, offset: f64, length: f64, what: &str) -> SysResult<()> {
    let off = to_off(offset, "offset")?;
    let len = to_off(length, "length")?;
    if len == 0 {
        return Err(invalid_arg("length must be > 0"));
    }
    // SAFETY: fallocate only reads its integer arguments; a bad fd yields EBADF, not UB.
    let rc = unsafe { libc::fallocate(fd, mode, off, len) };
    if rc != 0 {
        return Err(last_os_error(what));
    }
    Ok(())
}

/// Deallocates [offset, offset+length): reads return zeroes, st_blocks drops, size is kept.
#[napi]
pub fn punch_hole(fd: i32, offset: f64, length: f64) -> napi::Result<(), String> {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fallocate(fd, mode, offset, length, "fallocate(PUNCH_HOLE)")
}

/// Zeroes [offset, offset+length) (unwritten extents where the fs can), size is kept.
#[napi]
pub fn zero_range(fd: i32, offset: f64, length: f64) -> napi::Result<(), String> {
    let mode = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
    fallocate(fd, mode, offset, length, "fallocate(ZERO_RANGE)")
}

/// Size in bytes of the block device open on `fd` (BLKGETSIZE64). f64 is exact below 8 PiB.
#[napi]
pub fn block_device_size(fd: i32) -> napi::Result<f64, String> {
    let mut size_bytes: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to a live local.
    let rc = unsafe { libc::ioctl(fd, BLKGETSIZE64, &mut size_bytes as *mut u64) };
    if rc != 0 {
        return Err(last_os_error("ioctl(BLKGETSIZE64)"));
    }
    Ok(size_bytes as f64)
}

/// Logical block size of the block device open on `fd` (BLKSSZGET): O_DIRECT's unit.
#[napi]
pub fn logical_block_size(fd: i32) -> napi::Result<u32, String> {
    let mut size_bytes: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points to a live local.
    let rc = unsafe { libc::ioctl(fd, BLKSSZGET, &mut size_bytes as *mut libc::c_int) };
    if rc != 0 {
        return Err(last_os_error("ioctl(BLKSSZGET)"));
    }
    debug_assert!(size_bytes > 0);
    Ok(size_bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn ioctl_numbers_match_linux_headers() {
        assert_eq!(BLKSSZGET, 0x1268_u32 as libc::Ioctl);
        assert_eq!(BLKGETSIZE64, 0x8008_1272_u32 as libc::Ioctl);
    }

    #[test]
    fn offsets_must_be_exact_non_negative_integers() {
        assert_eq!(to_off(4096.0, "offset").ok(), Some(4096));
        for bad in [-1.0, 1.5, f64::NAN, f64::INFINITY, 2f64.powi(60)] {
            assert!(to_off(bad, "offset").is_err(), "{bad} accepted");
        }
    }
}
