//! librados/librbd loaded at run time, and the process-wide table of open images.
//!
//! The libraries are dlopen'ed, never linked (as rdma.rs does with libibverbs): the addon must
//! load on hosts without Ceph, and "no librbd" is an answer (the engine then starts its qemu-nbd
//! gateway). Only stable C entry points of librados2/librbd1 are used, through opaque handles.
//!
//! One image handle per (cluster, user, pool, image, options) per process: the control plane and
//! the remote loop threads share it. Two handles in one process would be two Ceph clients, and
//! with the exclusive-lock feature every write of one would pull the lock from the other.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use libloading::Library;

pub type Handle = *mut c_void;
pub type Completion = *mut c_void;
pub type Callback = unsafe extern "C" fn(Completion, *mut c_void);

const RADOS_NAMES: [&str; 2] = ["librados.so.2", "librados.so"];
const RBD_NAMES: [&str; 2] = ["librbd.so.1", "librbd.so"];

/// The entry points, copied out of the libraries (which stay loaded for the life of the process:
/// librados keeps threads and global state that a dlclose would pull away).
pub struct Api {
    _rados_lib: Library,
    _rbd_lib: Library,
    pub rados_create: unsafe extern "C" fn(*mut Handle, *const c_char) -> c_int,
    pub rados_conf_read_file: unsafe extern "C" fn(Handle, *const c_char) -> c_int,
    pub rados_conf_set: unsafe extern "C" fn(Handle, *const c_char, *const c_char) -> c_int,
    pub rados_connect: unsafe extern "C" fn(Handle) -> c_int,
    pub rados_shutdown: unsafe extern "C" fn(Handle),
    pub rados_ioctx_create: unsafe extern "C" fn(Handle, *const c_char, *mut Handle) -> c_int,
    pub rados_ioctx_destroy: unsafe extern "C" fn(Handle),
    pub rados_getaddrs: unsafe extern "C" fn(Handle, *mut *mut c_char) -> c_int,
    pub rados_buffer_free: unsafe extern "C" fn(*mut c_char),
    pub rbd_open: unsafe extern "C" fn(Handle, *const c_char, *mut Handle, *const c_char) -> c_int,
    pub rbd_close: unsafe extern "C" fn(Handle) -> c_int,
    pub rbd_get_size: unsafe extern "C" fn(Handle, *mut u64) -> c_int,
    pub aio_create_completion: unsafe extern "C" fn(*mut c_void, Callback, *mut Completion) -> c_int,
    pub aio_read: unsafe extern "C" fn(Handle, u64, usize, *mut c_char, Completion) -> c_int,
    pub aio_write: unsafe extern "C" fn(Handle, u64, usize, *const c_char, Completion) -> c_int,
    pub aio_flush: unsafe extern "C" fn(Handle, Completion) -> c_int,
    /// Octopus (librbd 1.15) and later; absent before, then zeroes are written as data.
    pub aio_write_zeroes: Option<unsafe extern "C" fn(Handle, u64, usize, Completion, c_int, c_int) -> c_int>,
    pub aio_get_return_value: unsafe extern "C" fn(Completion) -> isize,
    pub aio_release: unsafe extern "C" fn(Completion),
    pub diff_iterate2: unsafe extern "C" fn(Handle, *const c_char, u64, u64, u8, u8, DiffCallback, *mut c_void) -> c_int,
}

/// rbd_diff_iterate2's callback: (offset, length, exists, arg) -> 0 to go on, < 0 to stop.
pub type DiffCallback = unsafe extern "C" fn(u64, usize, c_int, *mut c_void) -> c_int;

fn open_first(names: &[&str]) -> Result<Library, String> {
    let mut errors = Vec::with_capacity(names.len());
    for name in names {
        // SAFETY: librados/librbd initialisers set up only their own state.
        match unsafe { Library::new(*name) } {
            Ok(lib) => return Ok(lib),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    Err(errors.join("; "))
}

macro_rules! sym {
    ($lib:expr, $name:literal) => {
        // SAFETY: the signature is the C prototype in rados/librados.h or rbd/librbd.h.
        *unsafe { $lib.get($name) }.map_err(|e| format!("{}: {e}", String::from_utf8_lossy(&$name[..$name.len() - 1])))?
    };
}

fn load() -> Result<Api, String> {
    let rados = open_first(&RADOS_NAMES)?;
    let rbd = open_first(&RBD_NAMES)?;
    // SAFETY: as in sym!; an optional symbol that is missing is None.
    let write_zeroes = unsafe { rbd.get(b"rbd_aio_write_zeroes\0") }.ok().map(|s| *s);
    Ok(Api {
        rados_create: sym!(rados, b"rados_create\0"),
        rados_conf_read_file: sym!(rados, b"rados_conf_read_file\0"),
        rados_conf_set: sym!(rados, b"rados_conf_set\0"),
        rados_connect: sym!(rados, b"rados_connect\0"),
        rados_shutdown: sym!(rados, b"rados_shutdown\0"),
        rados_ioctx_create: sym!(rados, b"rados_ioctx_create\0"),
        rados_ioctx_destroy: sym!(rados, b"rados_ioctx_destroy\0"),
        rados_getaddrs: sym!(rados, b"rados_getaddrs\0"),
        rados_buffer_free: sym!(rados, b"rados_buffer_free\0"),
        rbd_open: sym!(rbd, b"rbd_open\0"),
        rbd_close: sym!(rbd, b"rbd_close\0"),
        rbd_get_size: sym!(rbd, b"rbd_get_size\0"),
        aio_create_completion: sym!(rbd, b"rbd_aio_create_completion\0"),
        aio_read: sym!(rbd, b"rbd_aio_read\0"),
        aio_write: sym!(rbd, b"rbd_aio_write\0"),
        aio_flush: sym!(rbd, b"rbd_aio_flush\0"),
        aio_write_zeroes: write_zeroes,
        aio_get_return_value: sym!(rbd, b"rbd_aio_get_return_value\0"),
        aio_release: sym!(rbd, b"rbd_aio_release\0"),
        diff_iterate2: sym!(rbd, b"rbd_diff_iterate2\0"),
        _rados_lib: rados,
        _rbd_lib: rbd,
    })
}

/// The loaded API, or why it could not be loaded (the same answer for the life of the process).
pub fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// What identifies one image handle; also the registry key (and the JS constructor's options).
#[napi_derive::napi(object, js_name = "RbdTargetOptions")]
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Target {
    pub conf: String,
    pub id: String,
    pub keyring: Option<String>,
    pub pool: String,
    pub image: String,
    pub mount_timeout_s: u32,
    pub op_timeout_s: u32,
}

/// One connected cluster handle, pool context and open image. librbd's handles are thread-safe.
pub struct Conn {
    api: &'static Api,
    cluster: Handle,
    ioctx: Handle,
    pub image: Handle,
    /// Set when this host lost the image's ownership lock: nothing more is sent.
    pub fenced: AtomicBool,
    /// Requests of every channel with librbd now (shared with the requests, never the handle:
    /// a callback must not hold the last handle, whose drop would rbd_close on librbd's thread).
    pub in_flight: Arc<AtomicU32>,
}

// SAFETY: librados clusters, ioctxs and librbd images may be used from any thread.
unsafe impl Send for Conn {}
unsafe impl Sync for Conn {}

impl Drop for Conn {
    /// rbd_close waits for the image's in-flight requests (bounded by rados_osd_op_timeout), so
    /// callers drop the last handle off the JS thread (rbd.rs close()).
    fn drop(&mut self) {
        // SAFETY: the handles were opened in connect() and are closed exactly once, here.
        unsafe {
            (self.api.rbd_close)(self.image);
            (self.api.rados_ioctx_destroy)(self.ioctx);
            (self.api.rados_shutdown)(self.cluster);
        }
    }
}

impl Conn {
    pub fn api(&self) -> &'static Api {
        self.api
    }

    pub fn size_bytes(&self) -> Result<u64, i32> {
        let mut size = 0u64;
        // SAFETY: the image is open; size is a valid out pointer.
        let r = unsafe { (self.api.rbd_get_size)(self.image, &mut size) };
        if r < 0 { Err(-r) } else { Ok(size) }
    }

    /// The allocated extents of [offset, offset+len) in order (whole objects: with the object map
    /// this reads no data), at most `max` of them; the second value is where the answer ends
    /// (short of offset+len when `max` stopped it).
    pub fn allocated(&self, offset: u64, len: u64, max: usize) -> Result<(Vec<(u64, u64)>, u64), i32> {
        struct Acc { out: Vec<(u64, u64)>, max: usize, end: u64 }
        unsafe extern "C" fn cb(off: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int {
            // SAFETY: arg is the Acc below, alive for the whole call.
            let acc = unsafe { &mut *arg.cast::<Acc>() };
            if exists == 0 {
                return 0;
            }
            if acc.out.len() >= acc.max {
                acc.end = off; // everything before this extent is answered
                return -libc::ECANCELED;
            }
            match acc.out.last_mut() {
                Some(last) if last.0 + last.1 == off => last.1 += len as u64,
                _ => acc.out.push((off, len as u64)),
            }
            0
        }
        let mut acc = Acc { out: Vec::new(), max, end: offset + len };
        // SAFETY: open image; whole_object=1, include_parent=1; cb/acc valid during the call.
        let r = unsafe { (self.api.diff_iterate2)(self.image, std::ptr::null(), offset, len, 1, 1, cb, (&mut acc as *mut Acc).cast()) };
        if r < 0 && r != -libc::ECANCELED {
            return Err(-r);
        }
        // Whole objects may start before offset or end past the range: clip.
        let end = acc.end;
        let clipped = acc.out.into_iter().filter_map(|(o, l)| {
            let (a, b) = (o.max(offset), (o + l).min(end));
            (b > a).then_some((a, b - a))
        }).collect();
        Ok((clipped, end))
    }

    /// This client's addresses as librados prints them ("v2:127.0.0.1:0/123,v1:…" or one).
    pub fn addrs(&self) -> Result<String, i32> {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: connected cluster; the string is freed with rados_buffer_free.
        let r = unsafe { (self.api.rados_getaddrs)(self.cluster, &mut out) };
        if r < 0 || out.is_null() {
            return Err(if r < 0 { -r } else { libc::EIO });
        }
        // SAFETY: librados returns a NUL-terminated string.
        let text = unsafe { CStr::from_ptr(out) }.to_string_lossy().into_owned();
        unsafe { (self.api.rados_buffer_free)(out) };
        Ok(text)
    }
}

fn cstr(value: &str, what: &str) -> Result<CString, (i32, String)> {
    CString::new(value).map_err(|_| (libc::EINVAL, format!("{what} contains a NUL byte")))
}

/// rados_create .. rbd_open; on failure everything opened so far is released.
fn connect(api: &'static Api, t: &Target) -> Result<Conn, (i32, String)> {
    let id = cstr(&t.id, "id")?;
    let mut cluster: Handle = std::ptr::null_mut();
    // SAFETY: out pointer valid; id NUL-terminated.
    let r = unsafe { (api.rados_create)(&mut cluster, id.as_ptr()) };
    if r < 0 {
        return Err((-r, "rados_create".into()));
    }
    let shut = |err: (i32, String)| {
        // SAFETY: created above and not yet shut down.
        unsafe { (api.rados_shutdown)(cluster) };
        Err(err)
    };
    let conf = match cstr(&t.conf, "conf") { Ok(c) => c, Err(e) => return shut(e) };
    // SAFETY: valid handle and strings.
    let r = unsafe { (api.rados_conf_read_file)(cluster, conf.as_ptr()) };
    if r < 0 {
        return shut((-r, format!("reading {}", t.conf)));
    }
    let mount = t.mount_timeout_s.to_string();
    let op = t.op_timeout_s.to_string();
    let mut settings: Vec<(&str, &str)> = vec![
        // Bounded connects and requests: an unreachable cluster or a down OSD ends in an error, not a hang.
        ("client_mount_timeout", &mount),
        ("rados_mon_op_timeout", &op),
        ("rados_osd_op_timeout", &op),
        // No client cache: a write is acknowledged once the OSDs have it (what FUA and FLUSH promise).
        ("rbd_cache", "false"),
    ];
    if let Some(k) = t.keyring.as_deref() {
        settings.push(("keyring", k));
    }
    for (name, value) in settings {
        let (n, v) = match (cstr(name, name), cstr(value, name)) { (Ok(n), Ok(v)) => (n, v), (Err(e), _) | (_, Err(e)) => return shut(e) };
        // SAFETY: valid handle and strings.
        let r = unsafe { (api.rados_conf_set)(cluster, n.as_ptr(), v.as_ptr()) };
        if r < 0 {
            return shut((-r, format!("setting {name}")));
        }
    }
    // SAFETY: configured handle; blocks at most client_mount_timeout.
    let r = unsafe { (api.rados_connect)(cluster) };
    if r < 0 {
        return shut((-r, "connecting to the cluster".into()));
    }
    let pool = match cstr(&t.pool, "pool") { Ok(p) => p, Err(e) => return shut(e) };
    let mut ioctx: Handle = std::ptr::null_mut();
    // SAFETY: connected handle.
    let r = unsafe { (api.rados_ioctx_create)(cluster, pool.as_ptr(), &mut ioctx) };
    if r < 0 {
        return shut((-r, format!("opening pool {}", t.pool)));
    }
    let image_name = match cstr(&t.image, "image") { Ok(i) => i, Err(e) => { unsafe { (api.rados_ioctx_destroy)(ioctx) }; return shut(e); } };
    let mut image: Handle = std::ptr::null_mut();
    // SAFETY: valid ioctx; no snapshot (NULL).
    let r = unsafe { (api.rbd_open)(ioctx, image_name.as_ptr(), &mut image, std::ptr::null()) };
    if r < 0 {
        unsafe { (api.rados_ioctx_destroy)(ioctx) };
        return shut((-r, format!("opening image {}/{}", t.pool, t.image)));
    }
    Ok(Conn { api, cluster, ioctx, image, fenced: AtomicBool::new(false), in_flight: Arc::new(AtomicU32::new(0)) })
}

fn registry() -> &'static Mutex<HashMap<Target, Weak<Conn>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<Target, Weak<Conn>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The process's handle for `t`, opened if none is live. The registry lock is held across the
/// connect on purpose: two threads opening the same image must not become two Ceph clients; the
/// wait is bounded by client_mount_timeout.
pub fn open(t: &Target) -> Result<Arc<Conn>, (i32, String)> {
    let api = api().map_err(|e| (libc::ENOSYS, e))?;
    let mut table = registry().lock().unwrap_or_else(|p| p.into_inner());
    table.retain(|_, w| w.strong_count() > 0);
    if let Some(live) = table.get(t).and_then(Weak::upgrade) {
        if live.fenced.load(Ordering::Acquire) {
            return Err((libc::ESHUTDOWN, "fenced: this host lost the image's ownership lock".into()));
        }
        return Ok(live);
    }
    let conn = Arc::new(connect(api, t)?);
    table.insert(t.clone(), Arc::downgrade(&conn));
    Ok(conn)
}

/// Fences every live handle of pool/image (any user or options): returns how many.
pub fn fence(pool: &str, image: &str) -> u32 {
    let table = registry().lock().unwrap_or_else(|p| p.into_inner());
    let mut n = 0;
    for (t, w) in table.iter() {
        if t.pool == pool && t.image == image {
            if let Some(c) = w.upgrade() {
                c.fenced.store(true, Ordering::Release);
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_key_separates_options() {
        let a = Target { conf: "/c".into(), id: "admin".into(), keyring: None, pool: "rbd".into(), image: "img".into(), mount_timeout_s: 15, op_timeout_s: 30 };
        let mut b = a.clone();
        assert_eq!(a, b);
        b.op_timeout_s = 31;
        assert_ne!(a, b);
    }

    #[test]
    fn cstr_refuses_nul() {
        assert!(cstr("a\0b", "image").is_err());
        assert!(cstr("img", "image").is_ok());
    }
}
