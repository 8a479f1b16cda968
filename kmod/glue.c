// SPDX-License-Identifier: GPL-2.0
/*
 * vb2_resv C glue. The contracts are in glue.h; this file holds no policy, only access to C
 * structures, macros and registration interfaces that Rust-for-Linux does not cover.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/version.h>

#include "glue.h"

MODULE_VERSION(VB2R_VERSION);

const char *vb2r_version(void)
{
	return VB2R_VERSION;
}

static char mode[16] = "queue";
module_param_string(mode, mode, sizeof(mode), 0444);
MODULE_PARM_DESC(mode, "what to fence: queue (default: a WRITE fence from QBUF until the driver returns the buffer), dqbuf (a signaled fence at DQBUF), off");

static char attach[256];
module_param_string(attach, attach, sizeof(attach), 0444);
MODULE_PARM_DESC(attach, "comma-separated V4L2 video nodes (/dev/videoN) or driver names (e.g. visl) to attach to at load");

const char *vb2r_param_mode(void)
{
	return mode;
}

const char *vb2r_param_attach(void)
{
	return attach;
}
