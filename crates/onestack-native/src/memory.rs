//! Real addresses of JS memory, so the engine can place O_DIRECT slots on aligned boundaries.

use napi::bindgen_prelude::{BigInt, Unknown};
use napi::{sys, JsValue};
use napi_derive::napi;

use crate::errors::invalid_arg;

/// The memory behind a typed array: element type, data pointer (byte offset applied) and
/// length in elements. None when `view` is not a typed array or has no backing memory.
pub(crate) fn typed_array_memory(
    view: &Unknown,
) -> Option<(sys::napi_typedarray_type, *mut u8, usize)> {
    let raw = view.value();
    let mut is_typed = false;
    // SAFETY: env and value come from the current callback scope and are valid for its duration.
    let status = unsafe { sys::napi_is_typedarray(raw.env, raw.value, &mut is_typed) };
    if status != sys::Status::napi_ok || !is_typed {
        return None;
    }
    let mut kind: sys::napi_typedarray_type = 0;
    let mut length: usize = 0;
    let mut data: *mut std::ffi::c_void = std::ptr::null_mut();
    let mut buffer: sys::napi_value = std::ptr::null_mut();
    let mut byte_offset: usize = 0;
    // SAFETY: all out-pointers point to live locals; `data` already includes byte_offset.
    let status = unsafe {
        sys::napi_get_typedarray_info(
            raw.env,
            raw.value,
            &mut kind,
            &mut length,
            &mut data,
            &mut buffer,
            &mut byte_offset,
        )
    };
    // A zero-length view over a detached buffer reports NULL.
    if status != sys::Status::napi_ok || data.is_null() {
        return None;
    }
    Some((kind, data as *mut u8, length))
}

/// Address of the first byte of a typed array (any kind, over an ArrayBuffer or a
/// SharedArrayBuffer). BigInt because a 57-bit address space exceeds f64's 53 bits.
///
/// Raw `napi_get_typedarray_info` rather than napi-rs's typed-array wrappers: it takes any
/// element type, borrows nothing past this call, and Node answers it for SAB-backed views
/// (checked in packages/native/test/native.test.ts against /proc/self/mem).
#[napi]
pub fn buffer_address(view: Unknown) -> napi::Result<BigInt, String> {
    let (_, data, _) = typed_array_memory(&view).ok_or_else(|| {
        invalid_arg("bufferAddress expects a typed array with memory (e.g. Uint8Array; not detached or empty)")
    })?;
    Ok(BigInt::from(data as usize as u64))
}
