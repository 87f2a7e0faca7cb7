//! Page-cache reads that never block: preadv2(RWF_NOWAIT) returns EAGAIN instead of waiting
//! for the device. The top driver serves cached reads with it inline on the main thread and
//! queues the rest, so a cache miss never stalls the event loop (buffered RWF_NOWAIT writes are
//! EOPNOTSUPP on ext4 here, so writes always take the queue).

use napi::bindgen_prelude::Unknown;
use napi::sys;
use napi_derive::napi;

use crate::errors::invalid_arg;
use crate::memory::typed_array_memory;

/// Data pointer and byte length of a Uint8Array (ArrayBuffer- or SharedArrayBuffer-backed).
fn typed_array_bytes(view: &Unknown) -> Option<(*mut u8, usize)> {
    // Only Uint8Array, so the element count is a byte count.
    match typed_array_memory(view)? {
        (kind, data, length) if kind == sys::TypedarrayType::uint8_array => Some((data, length)),
        _ => None,
    }
}

/// Reads `length_bytes` at `file_offset_bytes` of `fd` into `view[view_offset_bytes..]` only
/// if it needs no device I/O. Returns the bytes read (possibly short) or -errno (-EAGAIN: not
/// all in the page cache). Never throws for I/O outcomes; bad arguments throw EINVAL.
#[napi]
pub fn pread_nowait(
    fd: i32,
    view: Unknown,
    view_offset_bytes: u32,
    length_bytes: u32,
    file_offset_bytes: f64,
) -> napi::Result<i32, String> {
    let (data, view_bytes) = typed_array_bytes(&view)
        .ok_or_else(|| invalid_arg("preadNowait expects a Uint8Array with memory"))?;
    let end = view_offset_bytes as usize + length_bytes as usize;
    if end > view_bytes || length_bytes > i32::MAX as u32 {
        return Err(invalid_arg("preadNowait: range outside the view"));
    }
    let exact = file_offset_bytes.is_finite()
        && file_offset_bytes >= 0.0
        && file_offset_bytes.fract() == 0.0;
    if !exact || file_offset_bytes > 9_007_199_254_740_991.0 {
        return Err(invalid_arg(
            "preadNowait: file offset must be a non-negative integer",
        ));
    }
    let iov = libc::iovec {
        // SAFETY: end <= view_bytes was checked, so the pointer stays inside the view.
        iov_base: unsafe { data.add(view_offset_bytes as usize) } as *mut libc::c_void,
        iov_len: length_bytes as usize,
    };
    // SAFETY: iov points into JS memory that stays alive (and unmoved: typed-array backing
    // stores do not move) for this synchronous call.
    let n = unsafe {
        libc::preadv2(
            fd,
            &iov,
            1,
            file_offset_bytes as libc::off_t,
            libc::RWF_NOWAIT,
        )
    };
    if n < 0 {
        return Ok(-std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(n as i32)
}
