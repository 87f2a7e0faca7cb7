//! RDMA verbs probe: which RDMA devices (and port states) libibverbs sees on this host.
//!
//! libibverbs (rdma-core) is loaded with dlopen at run time, never linked: the addon must load
//! on hosts without rdma-core, and "no library" or "no device" is an answer, not an error.
//! Only the stable IBVERBS_1.1 entry points are used, through opaque pointers; the one struct
//! read (`ibv_port_attr`) is written into a zeroed buffer larger than any of its versions.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use libloading::Library;
use napi_derive::napi;

const LIBRARY_NAMES: [&str; 2] = ["libibverbs.so.1", "libibverbs.so"];
/// Bounds the device list and the port walk: real HCAs have 1-2 ports, hosts a handful of HCAs.
const DEVICES_MAX: usize = 64;
const PORTS_MAX: u8 = 16;
/// `struct ibv_port_attr` is ~56 bytes in current rdma-core; 256 leaves room for growth.
const PORT_ATTR_BYTES: usize = 256;

#[napi(object)]
pub struct RdmaPort {
    pub port: u32,
    /// IBV_PORT_* without the prefix: DOWN, INIT, ARMED, ACTIVE, ACTIVE_DEFER, NOP or UNKNOWN(n).
    pub state: String,
}

#[napi(object)]
pub struct RdmaDevice {
    pub name: String,
    pub ports: Vec<RdmaPort>,
}

#[napi(object)]
pub struct RdmaProbeResult {
    /// "missing" (dlopen failed) or "loaded".
    pub library: String,
    pub devices: Vec<RdmaDevice>,
    pub reason: Option<String>,
}

type GetDeviceList = unsafe extern "C" fn(*mut c_int) -> *mut *mut c_void;
type FreeDeviceList = unsafe extern "C" fn(*mut *mut c_void);
type GetDeviceName = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type OpenDevice = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type CloseDevice = unsafe extern "C" fn(*mut c_void) -> c_int;
type QueryPort = unsafe extern "C" fn(*mut c_void, u8, *mut c_void) -> c_int;

/// Loaded once and never unloaded: libibverbs keeps provider plugins and global state that a
/// dlclose under a later probe (or a live context) would pull away.
fn library() -> Result<&'static Library, String> {
    static LIBRARY: OnceLock<Result<Library, String>> = OnceLock::new();
    let loaded = LIBRARY.get_or_init(|| {
        let mut errors = Vec::with_capacity(LIBRARY_NAMES.len());
        for name in LIBRARY_NAMES {
            // SAFETY: libibverbs' initialisers only set up its own state (no side effects on ours).
            match unsafe { Library::new(name) } {
                Ok(lib) => return Ok(lib),
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        Err(errors.join("; "))
    });
    loaded.as_ref().map_err(Clone::clone)
}

fn port_state_name(state: u32) -> String {
    match state {
        0 => "NOP".into(),
        1 => "DOWN".into(),
        2 => "INIT".into(),
        3 => "ARMED".into(),
        4 => "ACTIVE".into(),
        5 => "ACTIVE_DEFER".into(),
        n => format!("UNKNOWN({n})"),
    }
}

/// Port states of one device: ports are numbered from 1; the first refused query ends the walk.
fn device_ports(lib: &Library, device: *mut c_void) -> Result<Vec<RdmaPort>, String> {
    // SAFETY: symbol types match rdma-core's <infiniband/verbs.h> declarations.
    let (open, close, query) = unsafe {
        (
            lib.get::<OpenDevice>(b"ibv_open_device\0")
                .map_err(|e| e.to_string())?,
            lib.get::<CloseDevice>(b"ibv_close_device\0")
                .map_err(|e| e.to_string())?,
            lib.get::<QueryPort>(b"ibv_query_port\0")
                .map_err(|e| e.to_string())?,
        )
    };
    // SAFETY: `device` comes from the live device list.
    let context = unsafe { open(device) };
    if context.is_null() {
        return Err(format!(
            "ibv_open_device failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut ports = Vec::new();
    for port in 1..=PORTS_MAX {
        let mut attr = [0u64; PORT_ATTR_BYTES / 8]; // u64 for the struct's alignment
                                                    // SAFETY: `attr` is zeroed, aligned and larger than any ibv_port_attr version.
        if unsafe { query(context, port, attr.as_mut_ptr().cast()) } != 0 {
            break;
        }
        let state = (attr[0] & 0xffff_ffff) as u32; // first field: enum ibv_port_state
        ports.push(RdmaPort {
            port: u32::from(port),
            state: port_state_name(state),
        });
    }
    // SAFETY: `context` was opened above and is closed exactly once.
    unsafe { close(context) };
    debug_assert!(ports.len() <= usize::from(PORTS_MAX));
    Ok(ports)
}

fn probe_devices(lib: &Library) -> Result<(Vec<RdmaDevice>, Option<String>), String> {
    // SAFETY: symbol types match rdma-core's <infiniband/verbs.h> declarations.
    let (get_list, free_list, get_name) = unsafe {
        (
            lib.get::<GetDeviceList>(b"ibv_get_device_list\0")
                .map_err(|e| e.to_string())?,
            lib.get::<FreeDeviceList>(b"ibv_free_device_list\0")
                .map_err(|e| e.to_string())?,
            lib.get::<GetDeviceName>(b"ibv_get_device_name\0")
                .map_err(|e| e.to_string())?,
        )
    };
    let mut count: c_int = 0;
    // SAFETY: `count` is a live out-pointer; the list is freed below on every path.
    let list = unsafe { get_list(&mut count) };
    if list.is_null() {
        // e.g. ENOSYS when the kernel has no uverbs support: still "no device".
        return Ok((
            Vec::new(),
            Some(format!(
                "ibv_get_device_list: {}",
                std::io::Error::last_os_error()
            )),
        ));
    }
    let count = usize::try_from(count).unwrap_or(0).min(DEVICES_MAX);
    let mut devices = Vec::with_capacity(count);
    let mut problems = Vec::new();
    for i in 0..count {
        // SAFETY: the list holds `count` non-null entries followed by NULL.
        let device = unsafe { *list.add(i) };
        if device.is_null() {
            break;
        }
        // SAFETY: the name is a NUL-terminated string owned by the device.
        let name_ptr = unsafe { get_name(device) };
        let name = if name_ptr.is_null() {
            format!("device{i}")
        } else {
            // SAFETY: non-null, NUL-terminated, valid while the list lives.
            unsafe { CStr::from_ptr(name_ptr) }
                .to_string_lossy()
                .into_owned()
        };
        let ports = device_ports(lib, device).unwrap_or_else(|e| {
            problems.push(format!("{name}: {e}"));
            Vec::new()
        });
        devices.push(RdmaDevice { name, ports });
    }
    // SAFETY: `list` came from ibv_get_device_list and is freed once.
    unsafe { free_list(list) };
    let reason = (!problems.is_empty()).then(|| problems.join("; "));
    Ok((devices, reason))
}

/// Enumerates RDMA devices and their port states. Never throws: a missing library or a failing
/// call is reported in `library` and `reason`.
#[napi]
pub fn rdma_probe() -> RdmaProbeResult {
    let lib = match library() {
        Ok(lib) => lib,
        Err(reason) => {
            return RdmaProbeResult {
                library: "missing".into(),
                devices: Vec::new(),
                reason: Some(reason),
            }
        }
    };
    match probe_devices(lib) {
        Ok((devices, reason)) => RdmaProbeResult {
            library: "loaded".into(),
            devices,
            reason,
        },
        Err(reason) => RdmaProbeResult {
            library: "loaded".into(),
            devices: Vec::new(),
            reason: Some(reason),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_never_panics_and_is_consistent() {
        let result = rdma_probe();
        assert!(result.library == "missing" || result.library == "loaded");
        if result.library == "missing" {
            assert!(result.devices.is_empty() && result.reason.is_some());
        }
        assert_eq!(port_state_name(4), "ACTIVE");
    }
}
