//! lseek(SEEK_DATA / SEEK_HOLE): where a sparse file's data and holes are, without reading it.
//! The engine's base:allocation answer (NBD block status) walks these so copies of sparse
//! volumes skip holes. One syscall per call; the fd is the caller's.

use napi_derive::napi;

use crate::errors::{invalid_arg, last_os_error, SysResult};

/// Offsets come from JS as f64: only exact non-negative integers below 2^53.
fn to_off(value: f64) -> SysResult<libc::off_t> {
    let exact = value.is_finite() && value >= 0.0 && value.fract() == 0.0;
    if !exact || value > 9_007_199_254_740_991.0 {
        return Err(invalid_arg(&format!(
            "seek offset must be a non-negative integer, got {value}"
        )));
    }
    Ok(value as libc::off_t)
}

/// lseek with `whence`; ENXIO (no data / hole at or after `offset`, or offset past the end)
/// is the answer -1, not an error. Other errnos throw with their name (EINVAL: the file system
/// does not know SEEK_DATA, ESPIPE: not seekable).
fn seek(fd: i32, offset: f64, whence: i32, what: &str) -> SysResult<f64> {
    let off = to_off(offset)?;
    // SAFETY: lseek only reads its integer arguments; a bad fd yields EBADF, not UB.
    let at = unsafe { libc::lseek(fd, off, whence) };
    if at < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if errno == libc::ENXIO {
            return Ok(-1.0);
        }
        return Err(last_os_error(what));
    }
    Ok(at as f64)
}

/// The first offset >= `offset_bytes` holding data, or -1 when there is none before the end.
#[napi]
pub fn seek_data(fd: i32, offset_bytes: f64) -> napi::Result<f64, String> {
    seek(fd, offset_bytes, libc::SEEK_DATA, "lseek(SEEK_DATA)")
}

/// The first offset >= `offset_bytes` inside a hole (the file's end counts as one), or -1 when
/// `offset_bytes` is at or past the end.
#[napi]
pub fn seek_hole(fd: i32, offset_bytes: f64) -> napi::Result<f64, String> {
    seek(fd, offset_bytes, libc::SEEK_HOLE, "lseek(SEEK_HOLE)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::io::AsRawFd;

    #[test]
    fn finds_data_and_holes_in_a_sparse_file() {
        let path = std::env::temp_dir().join(format!("onestack-seek-{}", std::process::id()));
        let mut f = std::fs::File::create(&path).unwrap();
        f.set_len(8 << 20).unwrap();
        f.seek(SeekFrom::Start(4 << 20)).unwrap();
        f.write_all(&[0x5a; 65536]).unwrap();
        f.sync_all().unwrap();
        let fd = f.as_raw_fd();
        let data = seek_data(fd, 0.0).unwrap();
        // tmpfs and ext4 both report the written block; a fs without SEEK_DATA says 0 (all data).
        assert!(data == 0.0 || data == (4 << 20) as f64);
        let hole = seek_hole(fd, data).unwrap();
        assert!(hole > data);
        assert_eq!(seek_data(fd, (9 << 20) as f64).unwrap(), -1.0);
        assert!(seek_data(fd, -1.0).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
