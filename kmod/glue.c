// SPDX-License-Identifier: GPL-2.0
/*
 * vb2_resv C glue. The contracts are in glue.h; this file holds no policy, only access to C
 * structures, macros and registration interfaces that Rust-for-Linux does not cover.
 */
#include <linux/delay.h>
#include <linux/device.h>
#include <linux/dma-buf.h>
#include <linux/dma-fence.h>
#include <linux/dma-resv.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/irq_work.h>
#include <linux/kmemleak.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/namei.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/sync_file.h>
#include <linux/workqueue.h>
#include <linux/version.h>
#include <linux/videodev2.h>
#include <media/v4l2-dev.h>
#include <media/v4l2-device.h>
#include <media/v4l2-fh.h>
#include <media/v4l2-ioctl.h>
#include <media/v4l2-mem2mem.h>
#include <media/media-device.h>
#include <media/media-request.h>
#include <media/videobuf2-core.h>
#include <media/videobuf2-v4l2.h>
#include <trace/events/vb2.h>

#include "glue.h"
#include "glue_internal.h"

MODULE_VERSION(VB2R_VERSION);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
MODULE_IMPORT_NS("DMA_BUF");
#else
MODULE_IMPORT_NS(DMA_BUF);
#endif

const char *vb2r_version(void)
{
	return VB2R_VERSION;
}

static char mode[16] = "strict";
module_param_string(mode, mode, sizeof(mode), 0444);
MODULE_PARM_DESC(mode, "what to fence: strict (default: a WRITE fence while a committed job writes the buffer, until the job ends), queue (RFC v1: from QBUF until the driver returns the buffer), dqbuf (a signaled fence at DQBUF), off");

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

/* ---------------------------------------------------------------------------------------------
 * Hook tables.
 */

struct vb2r_hooks {
	struct list_head list;			/* in vb2r_hooks_list until vb2r_glue_exit() */
	struct video_device *vdev;
	void *rs_node;
	const struct v4l2_file_operations *orig_fops;
	const struct v4l2_ioctl_ops *orig_ops;
	struct v4l2_file_operations fops;	/* our copies, what vdev points at when installed */
	struct v4l2_ioctl_ops ops;
	/* QBUFs in vb2r_w_unlocked_ioctl(): the task (NULL: free) and its registration. */
	struct {
		struct task_struct *task;
		struct vb2r_qbuf_wait *w;
	} qslots[VB2R_QBUF_SLOTS];
};

/* Every table made; readers (the wrappers) walk it under RCU, writers hold the mutex. */
static LIST_HEAD(vb2r_hooks_list);
DEFINE_MUTEX(vb2r_hooks_mutex);
/* Wrappers running now: vb2r_glue_exit() waits for zero. */
static atomic_t vb2r_inflight = ATOMIC_INIT(0);
static DECLARE_WAIT_QUEUE_HEAD(vb2r_inflight_wq);

/*
 * The tables of the node @file belongs to. Only our tables point at the wrappers, and the list
 * keeps every table until vb2r_glue_exit() has waited for every wrapper, so the search cannot
 * fail.
 */
static struct vb2r_hooks *vb2r_enter(struct file *file)
{
	struct video_device *vdev = video_devdata(file);
	struct vb2r_hooks *h, *found = NULL;

	atomic_inc(&vb2r_inflight);
	rcu_read_lock();
	list_for_each_entry_rcu(h, &vb2r_hooks_list, list) {
		if (h->vdev == vdev) {
			found = h;
			break;
		}
	}
	rcu_read_unlock();
	return found;
}

void vb2r_enter_count(void)
{
	atomic_inc(&vb2r_inflight);
}

/*
 * Test aid for kmod.unload-blocked-clients: once unload has begun (the module is no longer
 * live), a wrapper spins this long after it has dropped the in-flight count, before it returns:
 * still on our text, but no longer counted. On a busy CPU a task can be preempted right there for
 * as long; only the RCU-tasks wait after the drain (vb2r_wait_wrappers(), step 3) keeps unload
 * from freeing the text under it, and this makes that window certain instead of rare.
 * 0 (default): off.
 */
static uint test_unload_tail_ms;
module_param(test_unload_tail_ms, uint, 0644);
MODULE_PARM_DESC(test_unload_tail_ms, "test aid: during unload, spin this many milliseconds (at most 1000) in a hooked call after it has left the in-flight count (default: 0)");

static atomic_t vb2r_tails = ATOMIC_INIT(0);

void vb2r_exit_call(void)
{
	uint tail;

	/*
	 * Only unload waits for the count to reach zero (vb2r_wait_wrappers()): wake only a waiter
	 * (the usual wrapper finds none and takes no lock). The decrement is a full barrier and
	 * wq_has_sleeper() another, paired with the one in prepare_to_wait_event() between the
	 * waiter's enqueue and its look at the count: either it sees zero or we see it waiting.
	 */
	if (atomic_dec_and_test(&vb2r_inflight) && wq_has_sleeper(&vb2r_inflight_wq))
		wake_up_all(&vb2r_inflight_wq);
	tail = READ_ONCE(test_unload_tail_ms);
	if (unlikely(tail) && !module_is_live(THIS_MODULE)) {
		atomic_inc(&vb2r_tails);
		mdelay(min(tail, 1000U));
	}
}

/*
 * The calling task's QBUF registration in @h (vb2r_w_unlocked_ioctl()), or NULL. Only the
 * task itself writes its slot's @w (before the call that reads it here), so the task match
 * is all that needs to be atomic.
 */
static struct vb2r_qbuf_wait *vb2r_qslot_find(struct vb2r_hooks *h)
{
	unsigned int i;

	for (i = 0; i < VB2R_QBUF_SLOTS; i++)
		if (READ_ONCE(h->qslots[i].task) == current)
			return h->qslots[i].w;
	return NULL;
}

static void vb2r_call_init(struct vb2r_call *c, enum vb2r_op op, struct file *file, u32 type)
{
	memset(c, 0, sizeof(*c));
	c->op = op;
	c->file = file;
	c->type = type;
	c->fd = -1;
}

/*
 * The wrappers. Each one: find our tables, let Rust act before the original (it may refuse),
 * run the original (inside a fence signalling section when Rust published a fence it is on the
 * signalling path of), let Rust act on the result. A wrapper that finds no table (impossible,
 * see vb2r_enter()) fails the call rather than guessing an operation to run.
 */
#define VB2R_WRAP(name, member, argtype, fill)					\
static int vb2r_w_##name(struct file *file, void *priv, argtype arg)		\
{										\
	struct vb2r_hooks *h = vb2r_enter(file);				\
	struct vb2r_call c;							\
	bool ran = false;							\
	int ret;								\
										\
	if (WARN_ON_ONCE(!h)) {							\
		vb2r_exit_call();						\
		return -ENODEV;							\
	}									\
	fill;									\
	ret = vb2r_rs_pre(h->rs_node, &c);					\
	if (!ret) {								\
		bool cookie = c.signalling ? dma_fence_begin_signalling() : false; \
										\
		ret = h->orig_ops->member(file, priv, arg);			\
		if (c.signalling)						\
			dma_fence_end_signalling(cookie);			\
		ran = true;							\
		vb2r_fill_after_##name(&c, arg);				\
	}									\
	vb2r_rs_post(h->rs_node, &c, ran, ret);					\
	vb2r_exit_call();							\
	return ret;								\
}

static void vb2r_fill_buffer(struct vb2r_call *c, const struct v4l2_buffer *b)
{
	u32 p;

	c->index = b->index;
	c->memory = b->memory;
	c->flags = b->flags;
	c->ts = (u64)b->timestamp.tv_sec * NSEC_PER_SEC + (u64)b->timestamp.tv_usec * NSEC_PER_USEC;
	if (b->memory != V4L2_MEMORY_DMABUF)
		return;
	if (V4L2_TYPE_IS_MULTIPLANAR(b->type)) {
		/* video_usercopy() has copied the planes array into the kernel. */
		c->nplanes = min_t(u32, b->length, VB2R_MAX_PLANES);
		for (p = 0; p < c->nplanes; p++)
			c->fds[p] = b->m.planes[p].m.fd;
	} else {
		c->nplanes = 1;
		c->fds[0] = b->m.fd;
	}
}

static inline void vb2r_fill_after_reqbufs(struct vb2r_call *c, struct v4l2_requestbuffers *rb)
{
}

static inline void vb2r_fill_after_remove_bufs(struct vb2r_call *c, struct v4l2_remove_buffers *rb)
{
}

static inline void vb2r_fill_after_qbuf(struct vb2r_call *c, struct v4l2_buffer *b)
{
}

static inline void vb2r_fill_after_dqbuf(struct vb2r_call *c, struct v4l2_buffer *b)
{
	c->index = b->index;
	c->flags = b->flags;
}

static inline void vb2r_fill_after_expbuf(struct vb2r_call *c, struct v4l2_exportbuffer *eb)
{
	c->fd = eb->fd;
}

static inline void vb2r_fill_after_streamon(struct vb2r_call *c, enum v4l2_buf_type t)
{
}

static inline void vb2r_fill_after_streamoff(struct vb2r_call *c, enum v4l2_buf_type t)
{
}

VB2R_WRAP(reqbufs, vidioc_reqbufs, struct v4l2_requestbuffers *,
	  (vb2r_call_init(&c, VB2R_OP_REQBUFS, file, arg->type),
	   c.count = arg->count, c.memory = arg->memory))
VB2R_WRAP(remove_bufs, vidioc_remove_bufs, struct v4l2_remove_buffers *,
	  (vb2r_call_init(&c, VB2R_OP_REMOVE_BUFS, file, arg->type),
	   c.index = arg->index, c.count = arg->count))
VB2R_WRAP(qbuf, vidioc_qbuf, struct v4l2_buffer *,
	  (vb2r_call_init(&c, VB2R_OP_QBUF, file, arg->type), vb2r_fill_buffer(&c, arg),
	   c.wait = V4L2_TYPE_IS_CAPTURE(arg->type) ? vb2r_qslot_find(h) : NULL))
VB2R_WRAP(dqbuf, vidioc_dqbuf, struct v4l2_buffer *,
	  (vb2r_call_init(&c, VB2R_OP_DQBUF, file, arg->type), c.memory = arg->memory))
VB2R_WRAP(expbuf, vidioc_expbuf, struct v4l2_exportbuffer *,
	  (vb2r_call_init(&c, VB2R_OP_EXPBUF, file, arg->type),
	   c.index = arg->index, c.plane = arg->plane))
VB2R_WRAP(streamon, vidioc_streamon, enum v4l2_buf_type,
	  vb2r_call_init(&c, VB2R_OP_STREAMON, file, arg))
VB2R_WRAP(streamoff, vidioc_streamoff, enum v4l2_buf_type,
	  vb2r_call_init(&c, VB2R_OP_STREAMOFF, file, arg))

static int vb2r_w_release(struct file *file)
{
	struct vb2r_hooks *h = vb2r_enter(file);
	struct vb2r_call c;
	int ret;

	if (WARN_ON_ONCE(!h)) {
		vb2r_exit_call();
		return 0;
	}
	vb2r_call_init(&c, VB2R_OP_RELEASE, file, 0);
	/* A release cannot be refused: Rust's pre only prepares the queue for what follows. */
	(void)vb2r_rs_pre(h->rs_node, &c);
	ret = h->orig_fops->release ? h->orig_fops->release(file) : 0;
	vb2r_rs_post(h->rs_node, &c, true, ret);
	vb2r_exit_call();
	return ret;
}

/*
 * unlocked_ioctl: for a QBUF, register the task (vb2r_qslot_find()) so that the QBUF pre hook
 * can hand back a wait for other devices' readers, and do that wait here, outside the V4L2
 * lock, before the QBUF runs again (glue.h); everything else goes straight through.
 */
static long vb2r_w_unlocked_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct vb2r_hooks *h = vb2r_enter(file);
	struct vb2r_qbuf_wait w;
	unsigned int i, slot = VB2R_QBUF_SLOTS;
	long ret;

	if (WARN_ON_ONCE(!h)) {
		vb2r_exit_call();
		return -ENODEV;
	}
	if (cmd == VIDIOC_QBUF && vb2r_rs_qbuf_checks(h->rs_node)) {
		w.retry = 0;
		w.nbufs = 0;
		w.waited_ns = 0;
		for (i = 0; i < VB2R_QBUF_SLOTS; i++) {
			if (!READ_ONCE(h->qslots[i].task) &&
			    !cmpxchg(&h->qslots[i].task, NULL, current)) {
				WRITE_ONCE(h->qslots[i].w, &w);
				slot = i;
				break;
			}
		}
	}
	for (;;) {
		/* A bad argument is the driver's to refuse, as without us. */
		ret = h->orig_fops->unlocked_ioctl(file, cmd, arg);
		if (slot == VB2R_QBUF_SLOTS || !w.retry)
			break;
		/* Pre refused the QBUF for busy readers (its errno is not the answer): wait, retry. */
		w.retry = 0;
		ret = vb2r_rs_qbuf_wait(h->rs_node, &w);
		if (ret)
			break;
	}
	if (slot < VB2R_QBUF_SLOTS) {
		WRITE_ONCE(h->qslots[slot].w, NULL);
		smp_store_release(&h->qslots[slot].task, NULL);
	}
	vb2r_exit_call();
	return ret;
}

/* Writes our wrappers into the entries of @h's tables that the driver has (WRITE_ONCE each). */
static void vb2r_hooks_arm(struct vb2r_hooks *h)
{
#define VB2R_HOOK(member, name) do {					\
		if (h->orig_ops->member)				\
			WRITE_ONCE(h->ops.member, vb2r_w_##name);	\
	} while (0)
	VB2R_HOOK(vidioc_reqbufs, reqbufs);
	VB2R_HOOK(vidioc_remove_bufs, remove_bufs);
	VB2R_HOOK(vidioc_qbuf, qbuf);
	VB2R_HOOK(vidioc_dqbuf, dqbuf);
	VB2R_HOOK(vidioc_expbuf, expbuf);
	VB2R_HOOK(vidioc_streamon, streamon);
	VB2R_HOOK(vidioc_streamoff, streamoff);
#undef VB2R_HOOK
	if (h->orig_fops->release)
		WRITE_ONCE(h->fops.release, vb2r_w_release);
	if (h->orig_fops->unlocked_ioctl)
		WRITE_ONCE(h->fops.unlocked_ioctl, vb2r_w_unlocked_ioctl);
}

/* Writes the driver's own operations back into the wrapped entries (WRITE_ONCE each). */
static void vb2r_hooks_disarm(struct vb2r_hooks *h)
{
#define VB2R_UNHOOK(member) WRITE_ONCE(h->ops.member, h->orig_ops->member)
	VB2R_UNHOOK(vidioc_reqbufs);
	VB2R_UNHOOK(vidioc_remove_bufs);
	VB2R_UNHOOK(vidioc_qbuf);
	VB2R_UNHOOK(vidioc_dqbuf);
	VB2R_UNHOOK(vidioc_expbuf);
	VB2R_UNHOOK(vidioc_streamon);
	VB2R_UNHOOK(vidioc_streamoff);
#undef VB2R_UNHOOK
	WRITE_ONCE(h->fops.release, h->orig_fops->release);
	WRITE_ONCE(h->fops.unlocked_ioctl, h->orig_fops->unlocked_ioctl);
}

struct vb2r_hooks *vb2r_hooks_get(struct video_device *vdev, void *rs_node)
{
	struct vb2r_hooks *h;

	mutex_lock(&vb2r_hooks_mutex);
	list_for_each_entry(h, &vb2r_hooks_list, list) {
		/* Reused only for the same driver tables; a table is never rewritten wholesale. */
		if (h->vdev == vdev && h->orig_ops == vdev->ioctl_ops &&
		    h->orig_fops == vdev->fops)
			goto arm;
	}
	h = kzalloc(sizeof(*h), GFP_KERNEL);
	if (!h) {
		mutex_unlock(&vb2r_hooks_mutex);
		return NULL;
	}
	h->vdev = vdev;
	h->orig_fops = vdev->fops;
	h->orig_ops = vdev->ioctl_ops;
	/* Nothing can read a new table yet: plain copies. */
	h->fops = *vdev->fops;
	h->ops = *vdev->ioctl_ops;
	/* Newest first, so that a newer table for the same vdev is found before an older one. */
	list_add_rcu(&h->list, &vb2r_hooks_list);
arm:
	WRITE_ONCE(h->rs_node, rs_node);
	vb2r_hooks_arm(h);
	mutex_unlock(&vb2r_hooks_mutex);
	return h;
}

void vb2r_hooks_install(struct vb2r_hooks *h)
{
	/* Publish the fully written tables before the pointers that lead to them. */
	smp_wmb();
	WRITE_ONCE(h->vdev->ioctl_ops, &h->ops);
	WRITE_ONCE(h->vdev->fops, &h->fops);
}

void vb2r_hooks_remove(struct vb2r_hooks *h)
{
	WRITE_ONCE(h->vdev->fops, h->orig_fops);
	WRITE_ONCE(h->vdev->ioctl_ops, h->orig_ops);
	/* A task that read our table pointer before the switch now finds the driver's entries. */
	mutex_lock(&vb2r_hooks_mutex);
	vb2r_hooks_disarm(h);
	mutex_unlock(&vb2r_hooks_mutex);
}

/* ---------------------------------------------------------------------------------------------
 * Nodes.
 */

bool vb2r_is_video_chrdev(struct inode *inode)
{
	return S_ISCHR(inode->i_mode) && imajor(inode) == VIDEO_MAJOR;
}

/* Pins the node of @file; on failure returns NULL with *err set. */
static struct video_device *vb2r_vdev_get(struct file *file, int *err)
{
	struct video_device *vdev;

	if (!vb2r_is_video_chrdev(file_inode(file))) {
		*err = -ENOTTY;
		return NULL;
	}
	vdev = video_devdata(file);
	if (!vdev->fops || !video_is_registered(vdev) || !try_module_get(vdev->fops->owner)) {
		*err = -ENODEV;
		return NULL;
	}
	get_device(&vdev->dev);
	return vdev;
}

struct video_device *vb2r_vdev_get_from_fd(int fd, int *err)
{
	struct video_device *vdev;
	struct fd f = fdget(fd);

	if (!fd_file(f)) {
		*err = -EBADF;
		return NULL;
	}
	vdev = vb2r_vdev_get(fd_file(f), err);
	fdput(f);
	return vdev;
}

struct video_device *vb2r_vdev_get_from_path(const char *path, int *err)
{
	struct video_device *vdev;
	struct path p;
	struct file *file;
	bool video;

	*err = kern_path(path, LOOKUP_FOLLOW, &p);
	if (*err)
		return NULL;
	video = vb2r_is_video_chrdev(d_inode(p.dentry));
	path_put(&p);
	if (!video) {
		*err = -ENOTTY;
		return NULL;
	}
	file = filp_open(path, O_RDWR | O_NONBLOCK, 0);
	if (IS_ERR(file)) {
		*err = PTR_ERR(file);
		return NULL;
	}
	vdev = vb2r_vdev_get(file, err);
	filp_close(file, NULL);
	return vdev;
}

void vb2r_vdev_put(struct video_device *vdev)
{
	struct module *owner = vdev->fops == NULL ? NULL : vdev->fops->owner;
	struct vb2r_hooks *h;

	/* While hooked, vdev->fops is our copy; its owner field is the driver's. */
	mutex_lock(&vb2r_hooks_mutex);
	list_for_each_entry(h, &vb2r_hooks_list, list)
		if (h->vdev == vdev && h->orig_fops)
			owner = h->orig_fops->owner;
	mutex_unlock(&vb2r_hooks_mutex);
	put_device(&vdev->dev);
	module_put(owner);
}

void vb2r_vdev_info(struct video_device *vdev, struct vb2r_vdev_info *info)
{
	const struct v4l2_ioctl_ops *ops = vdev->ioctl_ops;

	info->vfl_type = vdev->vfl_type;
	info->vfl_video = VFL_TYPE_VIDEO;
	info->device_caps = vdev->device_caps;
	info->has_qbuf = ops && ops->vidioc_qbuf && ops->vidioc_dqbuf;
	info->uses_fh = test_bit(V4L2_FL_USES_V4L2_FH, &vdev->flags);
	info->registered = video_is_registered(vdev);
}

void vb2r_vdev_name(struct video_device *vdev, char *buf, size_t len)
{
	strscpy(buf, video_device_node_name(vdev), len);
}

void vb2r_vdev_driver(struct video_device *vdev, char *buf, size_t len)
{
	struct device *parent = vdev->dev.parent;

	if (parent && parent->driver && parent->driver->name)
		strscpy(buf, parent->driver->name, len);
	else if (vdev->fops && vdev->fops->owner)
		strscpy(buf, module_name(vdev->fops->owner), len);
	else
		strscpy(buf, "", len);
}

/* Unregistration of any node of the video class (class_interface.remove_dev). */
static void vb2r_class_remove_dev(struct device *dev)
{
	vb2r_rs_vdev_removed(container_of(dev, struct video_device, dev));
}

static struct class_interface vb2r_class_intf = {
	.remove_dev = vb2r_class_remove_dev,
};
static DEFINE_MUTEX(vb2r_class_mutex);
static bool vb2r_class_registered;

int vb2r_watch_class(struct video_device *vdev)
{
	int ret = 0;

	mutex_lock(&vb2r_class_mutex);
	if (!vb2r_class_registered) {
		vb2r_class_intf.class = vdev->dev.class;
		ret = class_interface_register(&vb2r_class_intf);
		vb2r_class_registered = !ret;
	}
	mutex_unlock(&vb2r_class_mutex);
	return ret;
}

/* ---------------------------------------------------------------------------------------------
 * At module exit (vb2r_glue_exit()).
 */

void vb2r_class_unwatch(void)
{
	mutex_lock(&vb2r_class_mutex);
	if (vb2r_class_registered)
		class_interface_unregister(&vb2r_class_intf);
	vb2r_class_registered = false;
	mutex_unlock(&vb2r_class_mutex);
}

void vb2r_wait_wrappers(void)
{
	unsigned long waited = 0;

	/* 1. A task may have read one of our wrapper pointers just before the entries were restored. */
	synchronize_rcu_tasks();
	/* 2. The wrappers running now, including those asleep in a driver's DQBUF. */
	while (!wait_event_timeout(vb2r_inflight_wq, atomic_read(&vb2r_inflight) == 0, 5 * HZ)) {
		waited += 5;
		pr_info("vb2_resv: unload waits for %d hooked ioctl(s) still running (%lu s)\n",
			atomic_read(&vb2r_inflight), waited);
	}
	/* 3. A wrapper that dropped the counter may still be on its last instructions. */
	synchronize_rcu_tasks();
	if (READ_ONCE(test_unload_tail_ms))
		pr_info("vb2_resv: test_unload_tail_ms: %d hooked call(s) spun during unload after leaving the in-flight count\n",
			atomic_read(&vb2r_tails));
}

void vb2r_hooks_leak_all(void)
{
	struct vb2r_hooks *h, *tmp;

	/*
	 * The tables stay: a task that read a table pointer before it was restored may be asleep
	 * on the V4L2 serialization lock and read an entry (now the driver's own) at any time.
	 */
	mutex_lock(&vb2r_hooks_mutex);
	list_for_each_entry_safe(h, tmp, &vb2r_hooks_list, list) {
		list_del(&h->list);
		kmemleak_not_leak(h);
	}
	mutex_unlock(&vb2r_hooks_mutex);
}
