//! rbd:// elements through librbd's asynchronous API (rbd_aio_*), for one JS thread.
//!
//! Each `RbdImage` is one thread's channel onto a process-wide image handle (rbd_api.rs). A
//! request is submitted without waiting; librbd's completion callback (on one of its own threads)
//! queues the result and, when the queue was empty, wakes the JS thread once through a
//! thread-safe function; JS then drains every result in one call. One wakeup per batch of
//! completions, not one per request: wakeups are what cost (CALIBRATION.md).
//!
//! Buffers are the request's own: a write's bytes are copied in at submission and a read's come
//! back as a fresh Buffer. JS may give up on a request at its deadline (a down OSD) and reuse its
//! slab slot while librbd still runs it; with our own buffers that late completion touches no
//! memory of the engine's.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{AsyncTask, Buffer, Function, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status, Task};
use napi_derive::napi;

use crate::errors::{errno_name, invalid_arg};
use crate::rbd_api::{self, Completion, Conn, Target};

/// Requests one channel may have with librbd at once (deadline-abandoned ones included): the
/// remote loop's ring bounds live ones far below this; the rest bounds a dead cluster's backlog.
const IN_FLIGHT_MAX: u32 = 4096;
/// Largest single request: the engine's are at most a few MiB.
const REQUEST_BYTES_MAX: u32 = 64 << 20;

type Notify = ThreadsafeFunction<(), (), (), Status, false>;

/// A finished request as JS drains it.
#[napi(object)]
pub struct RbdDone {
    pub tag: u32,
    /// librbd's return value: >= 0 done, < 0 a negated errno.
    pub ret: i64,
    /// The errno name when ret < 0 (EIO, ETIMEDOUT, ESHUTDOWN for a blocklisted client, ...).
    pub code: Option<String>,
    /// A read's bytes.
    pub data: Option<Buffer>,
}

struct Finished {
    tag: u32,
    ret: i64,
    data: Option<Vec<u8>>,
}

/// What librbd's threads share with the JS thread of one channel.
struct Shared {
    done: Mutex<Vec<Finished>>,
    notify: Mutex<Option<Notify>>,
    in_flight: AtomicU32,
}

impl Shared {
    fn push(&self, f: Finished) {
        let first = {
            let mut q = self.done.lock().unwrap_or_else(|p| p.into_inner());
            q.push(f);
            q.len() == 1
        };
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if first {
            if let Some(n) = self.notify.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                n.call((), ThreadsafeFunctionCallMode::NonBlocking);
            }
        }
    }
}

/// One request between submission and its callback (owned by the completion's cb_arg).
struct Request {
    shared: Arc<Shared>,
    image_in_flight: Arc<AtomicU32>,
    tag: u32,
    buf: Vec<u8>,
    is_read: bool,
}

unsafe extern "C" fn on_complete(c: Completion, arg: *mut c_void) {
    let Ok(api) = rbd_api::api() else { return };
    // SAFETY: arg is the Box<Request> leaked by submit(); librbd calls this exactly once.
    let req = unsafe { Box::from_raw(arg.cast::<Request>()) };
    let ret = unsafe { (api.aio_get_return_value)(c) } as i64;
    unsafe { (api.aio_release)(c) };
    let Request { shared, image_in_flight, tag, buf, is_read } = *req;
    image_in_flight.fetch_sub(1, Ordering::AcqRel);
    shared.push(Finished { tag, ret, data: if is_read && ret >= 0 { Some(buf) } else { None } });
}

#[derive(Clone, Copy)]
enum Kind {
    Read,
    Write,
    Flush,
    Zeroes,
}

/// One thread's channel onto an rbd image.
#[napi]
pub struct RbdImage {
    target: Target,
    /// Filled by connect()'s task; taken by close().
    conn: Slot,
    shared: Arc<Shared>,
}

type Slot = Arc<Mutex<Option<Arc<Conn>>>>;

pub struct ConnectTask {
    target: Target,
    slot: Slot,
}

impl Task for ConnectTask {
    type Output = f64;
    type JsValue = f64;
    /// Resolves with the image size in bytes. Errors carry the errno name first ("ENOENT: opening image …").
    fn compute(&mut self) -> napi::Result<f64> {
        let conn = rbd_api::open(&self.target).map_err(|(errno, what)| {
            let name = errno_name(errno);
            napi::Error::new(Status::GenericFailure, format!("{name}: {what} failed ({})", std::io::Error::from_raw_os_error(errno)))
        })?;
        let size = conn.size_bytes().map_err(|e| napi::Error::new(Status::GenericFailure, format!("{}: rbd_get_size failed", errno_name(e))))?;
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        Ok(size as f64)
    }
    fn resolve(&mut self, _env: Env, size: f64) -> napi::Result<f64> {
        Ok(size)
    }
}

/// Drops a handle off the JS thread: the last one runs rbd_close, which waits for in-flight requests.
pub struct CloseTask {
    conn: Option<Arc<Conn>>,
}

impl Task for CloseTask {
    type Output = ();
    type JsValue = ();
    fn compute(&mut self) -> napi::Result<()> {
        self.conn.take();
        Ok(())
    }
    fn resolve(&mut self, _env: Env, _out: ()) -> napi::Result<()> {
        Ok(())
    }
}

/// rbd_diff_iterate2 off the JS thread (it may read the object map from the OSDs).
pub struct AllocatedTask {
    conn: Option<Arc<Conn>>,
    offset: u64,
    len: u64,
    max: usize,
}

#[napi(object)]
pub struct RbdAllocated {
    /// [offset, length, offset, length, …] of allocated ranges, in order.
    pub extents: Vec<f64>,
    /// Where the answer ends: offset + length unless the extent bound stopped it first.
    pub end_bytes: f64,
}

impl Task for AllocatedTask {
    type Output = (Vec<(u64, u64)>, u64);
    type JsValue = RbdAllocated;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        let conn = self.conn.take().ok_or_else(|| napi::Error::new(Status::GenericFailure, "ENOTCONN: rbd image not connected".to_string()))?;
        conn.allocated(self.offset, self.len, self.max)
            .map_err(|e| napi::Error::new(Status::GenericFailure, format!("{}: rbd_diff_iterate2 failed", errno_name(e))))
    }
    fn resolve(&mut self, _env: Env, (extents, end): Self::Output) -> napi::Result<RbdAllocated> {
        Ok(RbdAllocated { extents: extents.into_iter().flat_map(|(o, l)| [o as f64, l as f64]).collect(), end_bytes: end as f64 })
    }
}

fn errno_error(errno: i32, what: &str) -> napi::Error<String> {
    let name = errno_name(errno);
    napi::Error::new(name.clone(), format!("{name}: {what} ({})", std::io::Error::from_raw_os_error(errno)))
}

#[napi]
impl RbdImage {
    /// `notify` is called (on this thread) when results are waiting: call drain().
    #[napi(constructor)]
    pub fn new(target: Target, notify: Function<(), ()>) -> napi::Result<Self> {
        if target.mount_timeout_s == 0 || target.op_timeout_s == 0 {
            return Err(napi::Error::from_reason("mountTimeoutS and opTimeoutS must be > 0"));
        }
        let tsfn: Notify = notify.build_threadsafe_function().callee_handled::<false>().build()?;
        let shared = Arc::new(Shared { done: Mutex::new(Vec::new()), notify: Mutex::new(Some(tsfn)), in_flight: AtomicU32::new(0) });
        Ok(RbdImage { target, conn: Arc::new(Mutex::new(None)), shared })
    }

    /// Connects (or joins this process's handle of the same image) off the JS thread; resolves
    /// with the image size in bytes.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn connect(&self) -> AsyncTask<ConnectTask> {
        AsyncTask::new(ConnectTask { target: self.target.clone(), slot: Arc::clone(&self.conn) })
    }

    fn conn(&self) -> napi::Result<Arc<Conn>, String> {
        let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = guard.as_ref().ok_or_else(|| errno_error(libc::ENOTCONN, "rbd image not connected"))?;
        if conn.fenced.load(Ordering::Acquire) {
            return Err(errno_error(libc::ESHUTDOWN, "fenced: this host lost the image's ownership lock"));
        }
        Ok(Arc::clone(conn))
    }

    #[napi]
    pub fn size_bytes(&self) -> napi::Result<f64, String> {
        let size = self.conn()?.size_bytes().map_err(|e| errno_error(e, "rbd_get_size failed"))?;
        Ok(size as f64)
    }

    /// This process's Ceph client address(es), as another host's fencing sees them.
    #[napi]
    pub fn client_addrs(&self) -> napi::Result<String, String> {
        self.conn()?.addrs().map_err(|e| errno_error(e, "rados_getaddrs failed"))
    }

    /// This channel's requests with librbd (deadline-abandoned ones included).
    #[napi]
    pub fn in_flight(&self) -> u32 {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// Every channel's requests on this process's handle of the image.
    #[napi]
    pub fn image_in_flight(&self) -> u32 {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, |c| c.in_flight.load(Ordering::Acquire))
    }

    /// True once the handle is fenced (rbdFence).
    #[napi]
    pub fn fenced(&self) -> bool {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|c| c.fenced.load(Ordering::Acquire))
    }

    #[napi]
    pub fn read(&self, tag: u32, offset_bytes: f64, length_bytes: u32) -> napi::Result<(), String> {
        self.submit(Kind::Read, tag, offset_bytes, vec![0u8; Self::checked_len(length_bytes)?])
    }

    /// `data` is a Uint8Array (over a SharedArrayBuffer too): copied before this returns.
    #[napi]
    pub fn write(&self, tag: u32, offset_bytes: f64, #[napi(ts_arg_type = "Uint8Array")] data: Unknown) -> napi::Result<(), String> {
        // SAFETY: the slice is only read during this call (copied into the request's own buffer).
        let bytes: &mut [u8] = unsafe { crate::uring::typed_slice(&data, napi::sys::TypedarrayType::uint8_array, "rbd write: data must be a Uint8Array")? };
        Self::checked_len(bytes.len() as u32)?;
        self.submit(Kind::Write, tag, offset_bytes, bytes.to_vec())
    }

    #[napi]
    pub fn write_zeroes(&self, tag: u32, offset_bytes: f64, length_bytes: u32) -> napi::Result<(), String> {
        let len = Self::checked_len(length_bytes)?;
        if self.conn()?.api().aio_write_zeroes.is_none() {
            return self.submit(Kind::Write, tag, offset_bytes, vec![0u8; len]);
        }
        self.submit_len(Kind::Zeroes, tag, offset_bytes, Vec::new(), len)
    }

    #[napi]
    pub fn flush(&self, tag: u32) -> napi::Result<(), String> {
        self.submit(Kind::Flush, tag, 0.0, Vec::new())
    }

    /// Allocated ranges of [offset, offset+length), at most maxExtents of them.
    #[napi(ts_return_type = "Promise<RbdAllocated>")]
    pub fn allocated(&self, offset_bytes: f64, length_bytes: f64, max_extents: u32) -> napi::Result<AsyncTask<AllocatedTask>, String> {
        let ok = |v: f64| v >= 0.0 && v <= (1u64 << 53) as f64 && v.fract() == 0.0;
        if !ok(offset_bytes) || !ok(length_bytes) || length_bytes == 0.0 || max_extents == 0 {
            return Err(invalid_arg(&format!("rbd allocated({offset_bytes}, {length_bytes}, {max_extents})")));
        }
        let conn = self.conn()?;
        Ok(AsyncTask::new(AllocatedTask { conn: Some(conn), offset: offset_bytes as u64, len: length_bytes as u64, max: max_extents as usize }))
    }

    /// Every result queued since the last drain.
    #[napi]
    pub fn drain(&self) -> Vec<RbdDone> {
        let taken = std::mem::take(&mut *self.shared.done.lock().unwrap_or_else(|p| p.into_inner()));
        taken
            .into_iter()
            .map(|f| RbdDone {
                tag: f.tag,
                ret: f.ret,
                code: if f.ret < 0 { Some(errno_name((-f.ret) as i32)) } else { None },
                data: f.data.map(Buffer::from),
            })
            .collect()
    }

    /// Stops notifications and lets go of the handle; the last channel's close runs rbd_close.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&mut self) -> AsyncTask<CloseTask> {
        self.shared.notify.lock().unwrap_or_else(|p| p.into_inner()).take();
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        AsyncTask::new(CloseTask { conn })
    }

    fn checked_len(length_bytes: u32) -> napi::Result<usize, String> {
        if length_bytes == 0 || length_bytes > REQUEST_BYTES_MAX {
            return Err(invalid_arg(&format!("rbd request of {length_bytes} bytes (1..{REQUEST_BYTES_MAX})")));
        }
        Ok(length_bytes as usize)
    }

    fn submit(&self, kind: Kind, tag: u32, offset_bytes: f64, buf: Vec<u8>) -> napi::Result<(), String> {
        let len = buf.len();
        self.submit_len(kind, tag, offset_bytes, buf, len)
    }

    fn submit_len(&self, kind: Kind, tag: u32, offset_bytes: f64, buf: Vec<u8>, len: usize) -> napi::Result<(), String> {
        if !(offset_bytes >= 0.0 && offset_bytes <= (1u64 << 53) as f64 && offset_bytes.fract() == 0.0) {
            return Err(invalid_arg(&format!("rbd offset {offset_bytes}")));
        }
        let conn = self.conn()?;
        if self.shared.in_flight.load(Ordering::Acquire) >= IN_FLIGHT_MAX {
            return Err(errno_error(libc::EAGAIN, &format!("{IN_FLIGHT_MAX} requests already with librbd")));
        }
        let api = conn.api();
        let off = offset_bytes as u64;
        let image_in_flight = Arc::clone(&conn.in_flight);
        let req = Box::new(Request { shared: Arc::clone(&self.shared), image_in_flight, tag, buf, is_read: matches!(kind, Kind::Read) });
        let raw = Box::into_raw(req);
        let mut c: Completion = std::ptr::null_mut();
        // SAFETY: raw is handed to librbd, which gives it back to on_complete exactly once.
        let r = unsafe { (api.aio_create_completion)(raw.cast(), on_complete, &mut c) };
        if r < 0 {
            drop(unsafe { Box::from_raw(raw) });
            return Err(errno_error(-r, "rbd_aio_create_completion failed"));
        }
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        // SAFETY: the buffer lives in the Request until on_complete; len <= its length for reads/writes.
        let data = unsafe { (*raw).buf.as_mut_ptr() };
        let r = unsafe {
            match kind {
                Kind::Read => (api.aio_read)(conn.image, off, len, data.cast::<c_char>(), c),
                Kind::Write => (api.aio_write)(conn.image, off, len, data.cast::<c_char>().cast_const(), c),
                Kind::Flush => (api.aio_flush)(conn.image, c),
                Kind::Zeroes => (api.aio_write_zeroes.expect("checked by write_zeroes"))(conn.image, off, len, c, 0, 0),
            }
        };
        if r < 0 {
            // Not queued: librbd will not call back, so the request and completion are ours again.
            self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            conn.in_flight.fetch_sub(1, Ordering::AcqRel);
            unsafe { (api.aio_release)(c) };
            drop(unsafe { Box::from_raw(raw) });
            return Err(errno_error(-r, "rbd request refused"));
        }
        Ok(())
    }
}

/// Whether librados/librbd can be loaded here, and why not: `null` when they can.
#[napi]
pub fn rbd_unavailable() -> Option<String> {
    rbd_api::api().err()
}

/// Fences every handle of POOL/IMAGE in this process (the ownership lock was lost): returns how many.
#[napi]
pub fn rbd_fence(pool: String, image: String) -> u32 {
    rbd_api::fence(&pool, &image)
}
