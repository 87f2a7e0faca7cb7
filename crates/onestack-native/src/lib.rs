//! onestack-native: the few Linux I/O primitives Node cannot reach by itself.
//!
//! Layout (one role per file):
//! - `errors.rs`: errno -> JS error whose `code` and message carry the errno name.
//! - `checksum.rs`: per-block CRC32C / xxHash64 of a byte view into a typed array (issue 10).
//! - `memory.rs`: real addresses of typed-array memory (O_DIRECT alignment).
//! - `file.rs`:   O_DIRECT open, fallocate (punch hole, zero range), block-device ioctls.
//! - `nowait.rs`: preadv2(RWF_NOWAIT): page-cache reads that never wait for the device.
//! - `seek.rs`:  lseek(SEEK_DATA / SEEK_HOLE): where sparse files hold data.
//! - `rbd.rs`:    rbd:// elements through librbd's rbd_aio_* (librados/librbd dlopen'ed in
//!   `rbd_api.rs`, one image handle per process); results are drained in batches.
//! - `rdma.rs`:   RDMA device/port probe through libibverbs loaded at run time.
//! - `uring.rs`:  io_uring rings for the bottom driver: batches of READ/WRITE/FUA WRITE/FDATASYNC
//!   records over the shared data slab, submitted and waited for in one call;
//!   `uring_record.rs` checks each record first.
//!
//! Every function is synchronous and bounded: one syscall (or two) per call; `Uring` waits in
//! io_uring_enter until its batch has completed (a few calls at most).

#![deny(clippy::all)]
// Under `cargo test` napi-derive registers nothing, so the exported fns look unused.
#![cfg_attr(test, allow(dead_code))]

mod checksum;
mod errors;
mod file;
mod memory;
mod nowait;
mod rbd;
mod rbd_api;
mod rdma;
mod seek;
mod uring;
mod uring_record;

use napi_derive::napi;

/// Crate version, so JS can report which addon build it loaded.
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
