//! Errors that name their errno, so JS can branch on `err.code` (e.g. EOPNOTSUPP -> zero-fill).

/// Result whose error `status` is the errno name; napi throws it as a JS Error with that `code`.
pub type SysResult<T> = napi::Result<T, String>;

/// The symbolic name of an errno value; the short list covers what open/fallocate/ioctl return.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP", // == ENOTSUP on Linux
        libc::EDQUOT => "EDQUOT",
        libc::ERANGE => "ERANGE",
        libc::ENOTCONN => "ENOTCONN",
        libc::ESHUTDOWN => "ESHUTDOWN", // librados: this client is blocklisted
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECANCELED => "ECANCELED",
        _ => return format!("E{errno}"),
    };
    name.to_string()
}

/// The calling thread's last errno as a JS-bound error: "EINVAL: fallocate(...) failed (Invalid argument)".
pub fn last_os_error(what: &str) -> napi::Error<String> {
    io_error(&std::io::Error::last_os_error(), what)
}

/// An `std::io::Error` from a syscall wrapper (e.g. the io-uring crate) as a JS-bound error,
/// shaped like `last_os_error`'s.
pub fn io_error(err: &std::io::Error, what: &str) -> napi::Error<String> {
    let errno = err.raw_os_error().unwrap_or(0);
    let name = errno_name(errno);
    // std's text ends in " (os error N)"; the name already says it.
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let reason = format!("{name}: {what} failed ({text})");
    napi::Error::new(name, reason)
}

/// Bad arguments from JS (negative offsets, NaN): rejected before any syscall.
pub fn invalid_arg(what: &str) -> napi::Error<String> {
    napi::Error::new("EINVAL".to_string(), format!("EINVAL: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_errnos_js_branches_on() {
        assert_eq!(errno_name(libc::EOPNOTSUPP), "EOPNOTSUPP");
        assert_eq!(errno_name(libc::ENOTSUP), "EOPNOTSUPP"); // same value on Linux
        assert_eq!(errno_name(libc::EINVAL), "EINVAL");
        assert_eq!(errno_name(4242), "E4242");
    }
}
