//! io_uring for the bottom driver: one ring per worker thread, fed in batches of READ, WRITE,
//! WRITE+RWF_DSYNC (FUA) and FDATASYNC records whose buffers are ranges of the shared data slab.
//!
//! The call is synchronous on purpose: the bottom worker is a thread that blocked in pread/pwrite
//! before; now it blocks once per batch in io_uring_enter while the kernel runs the whole batch
//! (O_DIRECT: in parallel on the device). Every record is checked before anything is submitted,
//! so a bad batch is refused whole and the kernel never sees an address outside the slab.

use io_uring::{opcode, squeue, types, IoUring};
use napi::bindgen_prelude::{Uint8Array, Unknown};
use napi::{sys, JsValue};
use napi_derive::napi;

use crate::errors::{invalid_arg, io_error, SysResult};
use crate::uring_record::{parse_batch, Kind, Record};

/// Ring sizes accepted by the constructor: a batch never needs more (the engine's is 32).
const ENTRIES_MAX: u32 = 4096;
/// io_uring_enter rounds per batch: each waits for at least one completion, so `count` rounds
/// suffice; the rest absorb EINTR/EAGAIN/EBUSY retries.
const ROUNDS_MAX: usize = 1 << 16;

/// The registered slab: its JS view (held, so the SAB outlives the ring's use of it) and where
/// its bytes are.
struct Slab {
    _view: Uint8Array,
    base: *mut u8,
    bytes: u64,
}

/// An io_uring instance owned by one JS thread.
#[napi]
pub struct Uring {
    ring: Option<IoUring>,
    entries: u32,
    slab: Option<Slab>,
    records: Vec<Record>,
    seen: Vec<bool>,
}

/// DEFER_TASKRUN (6.1+) runs completion work only inside our own io_uring_enter, where this
/// thread waits anyway; older kernels refuse the flags (EINVAL) and get a plain ring.
fn setup(entries: u32) -> std::io::Result<IoUring> {
    let mut tuned = IoUring::builder();
    tuned.setup_single_issuer().setup_defer_taskrun();
    match tuned.build(entries) {
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => IoUring::new(entries),
        other => other,
    }
}

fn entry_of(r: &Record, base: *mut u8, user_data: u64) -> squeue::Entry {
    let fd = types::Fd(r.fd);
    // SAFETY (of the pointer arithmetic): parse_record proved slab_offset + length <= slab bytes.
    let buf = base.wrapping_add(r.slab_offset as usize);
    let entry = match r.kind {
        Kind::Read => opcode::Read::new(fd, buf, r.length)
            .offset(r.file_offset)
            .build(),
        Kind::Write => opcode::Write::new(fd, buf, r.length)
            .offset(r.file_offset)
            .build(),
        Kind::WriteDsync => opcode::Write::new(fd, buf, r.length)
            .offset(r.file_offset)
            .rw_flags(libc::RWF_DSYNC)
            .build(),
        Kind::Fdatasync => opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build(),
    };
    entry.user_data(user_data)
}

/// A typed-array argument of element kind `kind` as a slice. Raw napi (like memory.rs) rather
/// than napi-rs's typed-array types: no napi reference per batch, and our own EINVAL message.
///
/// # Safety
/// The slice aliases JS memory: use it only during the current call, and `T` must match `kind`.
pub(crate) unsafe fn typed_slice<'a, T>(
    value: &Unknown,
    kind: sys::napi_typedarray_type,
    what: &str,
) -> napi::Result<&'a mut [T], String> {
    let raw = value.value();
    let mut got: sys::napi_typedarray_type = -1;
    let mut length: usize = 0;
    let mut data: *mut std::ffi::c_void = std::ptr::null_mut();
    let mut buffer: sys::napi_value = std::ptr::null_mut();
    let mut byte_offset: usize = 0;
    let mut is_typed = false;
    let status = sys::napi_is_typedarray(raw.env, raw.value, &mut is_typed);
    if status == sys::Status::napi_ok && is_typed {
        let out = (
            &mut got,
            &mut length,
            &mut data,
            &mut buffer,
            &mut byte_offset,
        );
        sys::napi_get_typedarray_info(raw.env, raw.value, out.0, out.1, out.2, out.3, out.4);
    }
    if got != kind {
        return Err(invalid_arg(what));
    }
    if length == 0 || data.is_null() {
        return Ok(&mut []);
    }
    Ok(std::slice::from_raw_parts_mut(data.cast::<T>(), length))
}

fn transient(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
    )
}

#[napi]
impl Uring {
    /// io_uring_setup; ENOSYS (no io_uring), EPERM (kernel.io_uring_disabled), ENOMEM come back
    /// as JS errors whose `code` is the errno name.
    #[napi(constructor)]
    pub fn new(entries: u32) -> napi::Result<Self, String> {
        if entries == 0 || entries > ENTRIES_MAX {
            return Err(invalid_arg(&format!(
                "entries {entries} outside [1, {ENTRIES_MAX}]"
            )));
        }
        let ring = setup(entries).map_err(|e| io_error(&e, "io_uring_setup"))?;
        let sq_entries = ring.params().sq_entries();
        debug_assert!(sq_entries >= entries);
        Ok(Uring {
            ring: Some(ring),
            entries,
            slab: None,
            records: Vec::with_capacity(entries as usize),
            seen: vec![false; entries as usize],
        })
    }

    /// The batch size this ring takes (what the constructor was given).
    #[napi(getter)]
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// Remembers the slab view: records name byte ranges of it. The view is held (a napi
    /// reference), so its SharedArrayBuffer stays alive while the ring may use it.
    #[napi]
    pub fn register_slab(&mut self, view: Uint8Array) -> napi::Result<(), String> {
        let bytes = view.len() as u64;
        if bytes == 0 {
            return Err(invalid_arg("registerSlab expects a non-empty Uint8Array"));
        }
        let base = view.as_ptr() as *mut u8;
        self.slab = Some(Slab {
            _view: view,
            base,
            bytes,
        });
        Ok(())
    }

    /// Submits `count` records from `ops` and waits for all of them; results[i] gets record
    /// i's result (bytes done, or -errno). Throws only for a bad batch (nothing submitted) or a
    /// closed ring; I/O errors are results.
    #[napi]
    pub fn submit_and_wait(
        &mut self,
        ops: Unknown,
        count: u32,
        results: Unknown,
    ) -> napi::Result<u32, String> {
        let Some(ring) = self.ring.as_mut() else {
            return Err(napi::Error::new(
                String::from("EBADF"),
                String::from("EBADF: ring is closed"),
            ));
        };
        // SAFETY: both slices are used only within this call, on the JS thread that owns them.
        let ops: &[f64] = unsafe {
            typed_slice(
                &ops,
                sys::TypedarrayType::float64_array,
                "submitAndWait: ops must be a Float64Array",
            )
        }?;
        let results: &mut [i32] = unsafe {
            typed_slice(
                &results,
                sys::TypedarrayType::int32_array,
                "submitAndWait: results must be an Int32Array",
            )
        }?;
        let slab_bytes = self.slab.as_ref().map(|s| s.bytes);
        let count = count as usize;
        parse_batch(
            ops,
            count,
            self.entries,
            results.len(),
            slab_bytes,
            &mut self.records,
        )
        .map_err(|m| invalid_arg(&format!("submitAndWait: {m}")))?;
        let base = self.slab.as_ref().map_or(std::ptr::null_mut(), |s| s.base);
        {
            let mut sq = ring.submission();
            assert!(sq.is_empty(), "a previous batch left entries in the SQ");
            for (i, r) in self.records.iter().enumerate() {
                // SAFETY: the buffer lies inside the slab, which `self.slab` keeps alive, and this
                // call does not return before the kernel has completed the entry.
                unsafe { sq.push(&entry_of(r, base, i as u64)) }
                    .expect("SQ has `entries` free slots");
            }
        }
        self.seen[..count].fill(false);
        if let Err(err) = reap(ring, count, results, &mut self.seen) {
            // The kernel took none of the entries, but they sit published in the SQ: a later
            // enter would submit them. Closing the ring discards them; later calls get EBADF.
            self.ring = None;
            return Err(err);
        }
        Ok(count as u32)
    }

    /// Closes the ring and lets the slab go. Later calls fail with EBADF; closing twice is fine.
    #[napi]
    pub fn close(&mut self) {
        self.ring = None;
        self.slab = None;
    }
}

/// Submits what the SQ holds and collects `count` completions into `results`.
fn reap(ring: &mut IoUring, count: usize, results: &mut [i32], seen: &mut [bool]) -> SysResult<()> {
    let mut submitted = 0usize;
    let mut done = 0usize;
    for _ in 0..ROUNDS_MAX {
        if done == count {
            return Ok(());
        }
        match ring.submit_and_wait(count - done) {
            Ok(n) => submitted += n,
            Err(err) if transient(&err) => {}
            Err(err) if submitted == 0 && done == 0 => {
                return Err(io_error(&err, "io_uring_enter"))
            }
            Err(err) => in_flight_abort(&err),
        }
        for cqe in ring.completion() {
            let i = cqe.user_data() as usize;
            assert!(
                i < count && !seen[i],
                "completion for unknown or repeated record {i}"
            );
            seen[i] = true;
            results[i] = cqe.result();
            done += 1;
        }
    }
    in_flight_abort(&std::io::Error::from_raw_os_error(libc::EAGAIN))
}

/// Entries are in flight into slab memory that JS will reuse as soon as we return: returning
/// an error would be a use-after-free in the making, so stop the process instead.
fn in_flight_abort(err: &std::io::Error) -> ! {
    eprintln!("onestack-native: io_uring_enter failed with entries in flight ({err}); aborting");
    std::process::abort()
}
