/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the glue's C files share with each other. Not an interface to Rust: that is glue.h.
 */
#ifndef VB2R_GLUE_INTERNAL_H
#define VB2R_GLUE_INTERNAL_H

#include <linux/mutex.h>
#include <linux/types.h>

struct inode;

/* Serializes writers of the ioctl and media device tables (glue.c, glue_buf.c). */
extern struct mutex vb2r_hooks_mutex;

/*
 * A wrapper starts / ends: vb2r_wait_wrappers() waits for the count to reach zero. With the
 * test_unload_tail_ms test aid, vb2r_exit_call() spins after the decrement during unload.
 */
void vb2r_enter_count(void);
void vb2r_exit_call(void);

/* A V4L2 character device (major 81). */
bool vb2r_is_video_chrdev(struct inode *inode);

/* Module exit, in this order (vb2r_glue_exit()): see glue.h for why. */
void vb2r_class_unwatch(void);
void vb2r_wait_wrappers(void);
void vb2r_hooks_leak_all(void);
void vb2r_mdev_leak_all(void);

#endif
