/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vb2_resv C glue: what Rust-for-Linux has no abstraction for.
 *
 * Every function here is called from Rust (kmod/bindings.rs declares them). Each one states its
 * contract: the context it may be called from, what it takes and what it returns.
 */
#ifndef VB2_RESV_GLUE_H
#define VB2_RESV_GLUE_H

/* The module version: modinfo shows it, and the module logs it at load (vb2r_version()). */
#define VB2R_VERSION "0.1.0"

/*
 * vb2r_version() - VB2R_VERSION as a NUL-terminated string.
 * Context: any.
 */
const char *vb2r_version(void);

/*
 * vb2r_param_mode() / vb2r_param_attach() - the raw text of the module parameters.
 *
 * Rust has no string module parameters (and 6.12 has no Rust parameters at all), so the storage
 * is declared here with module_param_string() and the text is parsed and validated in Rust at
 * module init, which fails the load with a message naming the parameter.
 * Context: any. Returns a NUL-terminated string that lives as long as the module; it never
 * changes after load (perm 0444).
 */
const char *vb2r_param_mode(void);
const char *vb2r_param_attach(void);

#endif
