//! onestack-native: the few Linux I/O primitives Node cannot reach by itself.
//!
//! Layout (one role per file, so io_uring can land beside them in issue 6):
//! - `errors.rs`: errno -> JS error whose `code` and message carry the errno name.
//! - `memory.rs`: real addresses of typed-array memory (O_DIRECT alignment).
//! - `file.rs`:   O_DIRECT open, fallocate (punch hole, zero range), block-device ioctls.
//! - `rdma.rs`:   RDMA device/port probe through libibverbs loaded at run time.
//! - `uring.rs`:  (issue 6) io_uring submission/completion rings.
//!
//! Every function is synchronous and bounded: one syscall (or two) per call.

#![deny(clippy::all)]
// Under `cargo test` napi-derive registers nothing, so the exported fns look unused.
#![cfg_attr(test, allow(dead_code))]

mod errors;
mod file;
mod memory;
mod rdma;

use napi_derive::napi;

/// Crate version, so JS can report which addon build it loaded.
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
