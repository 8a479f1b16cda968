// SPDX-License-Identifier: GPL-2.0
/*
 * vb2_resv C glue for Linux 6.12 LTS only (Kbuild links it when the kernel is 6.12, together
 * with `--cfg vb2r_k612` for the Rust side). 6.12's Rust-for-Linux has no IRQ-safe spinlock, no
 * debugfs and no misc device abstraction; this file is the C plumbing that kmod/k612.rs wraps
 * in the same shapes as 7.x's kernel::sync::SpinLockIrq, kernel::debugfs and
 * kernel::miscdevice. The contracts are in glue.h ("6.12 only"); the text of the debugfs files
 * and the meaning of the ioctls stay in Rust.
 */
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/spinlock.h>

#include "glue.h"

/* ---------------------------------------------------------------------------------------------
 * IRQ-safe spinlock (the backend of k612.rs's SpinLockIrq).
 */

unsigned long vb2r_spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

void vb2r_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	spin_unlock_irqrestore(lock, flags);
}

bool vb2r_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags)
{
	unsigned long f;

	if (!spin_trylock_irqsave(lock, f))
		return false;
	*flags = f;
	return true;
}

/* ---------------------------------------------------------------------------------------------
 * debugfs.
 */

static int vb2r_debugfs_show(struct seq_file *m, void *unused)
{
	return vb2r_rs_debugfs_show(m->private, m);
}

static int vb2r_debugfs_open(struct inode *inode, struct file *file)
{
	return single_open(file, vb2r_debugfs_show, inode->i_private);
}

static const struct file_operations vb2r_debugfs_fops = {
	.owner = THIS_MODULE,
	.open = vb2r_debugfs_open,
	.read = seq_read,
	.llseek = seq_lseek,
	.release = single_release,
};

struct dentry *vb2r_debugfs_dir(const char *name)
{
	return debugfs_create_dir(name, NULL);
}

struct dentry *vb2r_debugfs_file(struct dentry *dir, const char *name, void *rs_file)
{
	/* debugfs_create_file(): the full proxy, so debugfs_remove() waits for running readers. */
	return debugfs_create_file(name, 0444, dir, rs_file, &vb2r_debugfs_fops);
}

void vb2r_debugfs_remove(struct dentry *dentry)
{
	debugfs_remove(dentry);
}

int vb2r_seq_write(struct seq_file *m, const char *buf, size_t len)
{
	return seq_write(m, buf, len);
}

/* ---------------------------------------------------------------------------------------------
 * The control device /dev/vb2_resv.
 */

static long vb2r_misc_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	return vb2r_rs_control_ioctl(cmd, arg);
}

static const struct file_operations vb2r_misc_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = vb2r_misc_ioctl,
	/* As 7.x's kernel::miscdevice does for a device with ioctl and no compat_ioctl. */
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice vb2r_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "vb2_resv",
	.fops = &vb2r_misc_fops,
};

int vb2r_misc_register(void)
{
	return misc_register(&vb2r_misc);
}

void vb2r_misc_deregister(void)
{
	misc_deregister(&vb2r_misc);
}
