// SPDX-License-Identifier: GPL-2.0

//! Declarations of the C glue in `glue.c` (contracts in `glue.h`) and thin safe wrappers.

use kernel::ffi::c_char;

extern "C" {
    fn vb2r_version() -> *const c_char;
    fn vb2r_param_mode() -> *const c_char;
    fn vb2r_param_attach() -> *const c_char;
}

/// Borrows a NUL-terminated string that lives as long as the module.
///
/// # Safety
///
/// `p` must be non-NULL, NUL-terminated, and valid and unchanged for the module's lifetime.
unsafe fn static_bytes(p: *const c_char) -> &'static [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { kernel::str::CStr::from_char_ptr(p) }.to_bytes()
}

/// The module version (`VB2R_VERSION` in glue.h).
pub(crate) fn version() -> &'static [u8] {
    // SAFETY: `vb2r_version` returns a string literal (glue.h contract).
    unsafe { static_bytes(vb2r_version()) }
}

/// The raw text of the `mode=` parameter.
pub(crate) fn param_mode() -> &'static [u8] {
    // SAFETY: glue.h: a NUL-terminated module-lifetime buffer, read-only after load (perm 0444).
    unsafe { static_bytes(vb2r_param_mode()) }
}

/// The raw text of the `attach=` parameter.
pub(crate) fn param_attach() -> &'static [u8] {
    // SAFETY: glue.h: a NUL-terminated module-lifetime buffer, read-only after load (perm 0444).
    unsafe { static_bytes(vb2r_param_attach()) }
}
