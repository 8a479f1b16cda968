// SPDX-License-Identifier: GPL-2.0
/*
 * vb2_resv C glue: dma-buf, dma_resv, dma_fence and sync_file mechanics; waiting for other
 * devices' fences; the watchdog's work.
 * The contracts are in glue.h; no policy here (see glue.c).
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

/*
 * A fence outlives the module that issued it: a dma-buf's resv keeps it as long as the buffer
 * lives. It is independent of us only if (a) the core detaches its ops when it signals
 * (dma_fence_signal_timestamp_locked() clears fence->ops when there is no .release and no .wait)
 * and (b) its spinlock is the fence's inline lock (a lock of ours would carry a lockdep class whose
 * key and name live in our module). Both came in 7.1 (541c8f2468b9 "dma-buf: detach fence ops on
 * signal v3" and 1f32f310a13c "dma-buf: inline spinlock for fence protection v5", drm-misc-next
 * after 7.0-rc1), but 7.1's dma_fence tracepoints (signaled, wait_end, destroy) still read
 * fence->ops of a detached fence: a NULL dereference with those events enabled, fixed by
 * e94b9f01543c "dma-fence: Fix potential tracepoint null pointer dereferences" in 7.2. So a fence
 * of ours is independent from 7.2 on (checked in Debian's 7.2.12 and 7.3.4); 6.12 has neither
 * (6.12.117: dma_fence_init() BUG()s on a NULL lock and fence->ops is never cleared), and 7.0
 * and 7.1 take the old path too (docs/design.md, "7.0, 7.1 and 7.2"). On old kernels every fence
 * holds a reference on this module from its creation to its release (.release below, which also
 * keeps 7.1 from detaching its ops): rmmod answers -EBUSY while any of our fences exists instead
 * of leaving fences that point into freed module memory, and works again once the last one is
 * gone.
 */
#define VB2R_FENCE_INDEPENDENT (LINUX_VERSION_CODE >= KERNEL_VERSION(7, 2, 0))

/* ---------------------------------------------------------------------------------------------
 * Watchdog, explicit sync.
 */

/*
 * fence_timeout_ms: hantro's own job watchdog fires after 2 s and returns the buffers with an
 * error; 3 s leaves it that second to do so, so ours only ends what a driver never finishes.
 */
static uint fence_timeout_ms = 3000;
module_param(fence_timeout_ms, uint, 0644);
MODULE_PARM_DESC(fence_timeout_ms, "end a fence still pending after this many ms with -ETIMEDOUT (0: never; default 3000, above hantro's 2 s job watchdog)");

u32 vb2r_param_fence_timeout_ms(void)
{
	return READ_ONCE(fence_timeout_ms);
}

/*
 * wait_readers: panfrost adds its job fence to every BO it uses as WRITE, and compositors release
 * a buffer before their GPU read ends (shared/research/consumers.md), so a decoder that writes a
 * buffer as soon as it is queued again can overwrite a picture still being sampled. Default on:
 * it is the hazard the RFC's review named first.
 */
static bool wait_readers = true;
module_param(wait_readers, bool, 0644);
MODULE_PARM_DESC(wait_readers, "before a CAPTURE buffer goes back to the hardware (QBUF), wait for other devices' fences on its dma-bufs (default: on)");
static uint wait_readers_timeout_ms = 1000;
module_param(wait_readers_timeout_ms, uint, 0644);
MODULE_PARM_DESC(wait_readers_timeout_ms, "the longest wait_readers waits before QBUF fails with -ETIMEDOUT (default 1000)");

bool vb2r_param_wait_readers(void)
{
	return READ_ONCE(wait_readers);
}

u32 vb2r_param_wait_readers_timeout_ms(void)
{
	return READ_ONCE(wait_readers_timeout_ms);
}

static bool vb2r_fence_is_ours(struct dma_fence *f);

int vb2r_dmabuf_wait_others(struct dma_buf *dmabuf, u32 timeout_ms, u64 *waited_ns)
{
	long left = msecs_to_jiffies(timeout_ms);
	u64 t0 = ktime_get_ns();
	struct dma_fence **fences;
	unsigned int n, i;
	int ret;

	*waited_ns = 0;
	ret = dma_resv_get_fences(dmabuf->resv, DMA_RESV_USAGE_BOOKKEEP, &n, &fences);
	if (ret)
		return ret;
	for (i = 0; i < n; i++) {
		if (!ret && !vb2r_fence_is_ours(fences[i]) && !dma_fence_is_signaled(fences[i])) {
			long r = dma_fence_wait_timeout(fences[i], true, left);

			if (r < 0)
				ret = r;
			else if (r == 0)
				ret = -ETIMEDOUT;
			else
				left = r;
		}
		dma_fence_put(fences[i]);
	}
	kfree(fences);
	*waited_ns = ktime_get_ns() - t0;
	return ret;
}

bool vb2r_dmabuf_others_busy(struct dma_buf *dmabuf)
{
	struct dma_resv_iter cursor;
	struct dma_fence *f;
	bool busy = false;

	dma_resv_iter_begin(&cursor, dmabuf->resv, DMA_RESV_USAGE_BOOKKEEP);
	dma_resv_for_each_fence_unlocked(&cursor, f) {
		if (!vb2r_fence_is_ours(f) && !dma_fence_is_signaled(f)) {
			busy = true;
			break;
		}
	}
	dma_resv_iter_end(&cursor);
	return busy;
}

static void vb2r_watchdog_fn(struct work_struct *w);
static DECLARE_DELAYED_WORK(vb2r_watchdog, vb2r_watchdog_fn);
static atomic_t vb2r_watchdog_on = ATOMIC_INIT(0);

static void vb2r_watchdog_fn(struct work_struct *w)
{
	vb2r_rs_watchdog();
	if (atomic_read(&vb2r_watchdog_on))
		schedule_delayed_work(&vb2r_watchdog, msecs_to_jiffies(100));
}

void vb2r_watchdog_start(void)
{
	if (atomic_cmpxchg(&vb2r_watchdog_on, 0, 1) == 0)
		schedule_delayed_work(&vb2r_watchdog, msecs_to_jiffies(100));
}

void vb2r_watchdog_stop(void)
{
	atomic_set(&vb2r_watchdog_on, 0);
	cancel_delayed_work_sync(&vb2r_watchdog);
}

struct vb2_queue *vb2r_fd_queue(int fd, u32 type, int *err)
{
	struct vb2_queue *q = NULL;
	struct fd f = fdget(fd);
	u32 m2m;

	if (!fd_file(f)) {
		*err = -EBADF;
		return NULL;
	}
	if (!vb2r_is_video_chrdev(file_inode(fd_file(f))))
		*err = -ENOTTY;
	else if (!(q = vb2r_file_queue(fd_file(f), type, &m2m)))
		*err = -EINVAL;
	fdput(f);
	return q;
}

int vb2r_sync_file_fd(struct dma_fence *fence)
{
	struct dma_fence *f = fence ? dma_fence_get(fence) : dma_fence_get_stub();
	struct sync_file *sf = sync_file_create(f);
	int fd;

	dma_fence_put(f);	/* the sync_file holds its own reference */
	if (!sf)
		return -ENOMEM;
	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		fput(sf->file);
		return fd;
	}
	fd_install(fd, sf->file);
	return fd;
}

/* ---------------------------------------------------------------------------------------------
 * dma-buf, dma_resv, dma_fence.
 */

struct dma_buf *vb2r_dmabuf_get(int fd)
{
	struct dma_buf *dmabuf = dma_buf_get(fd);

	return IS_ERR(dmabuf) ? NULL : dmabuf;
}

struct dma_buf *vb2r_dmabuf_get_export(int fd, struct vb2_queue *q, u32 index, u32 plane)
{
	struct vb2_buffer *vb = vb2_get_buffer(q, index);
	struct dma_buf *dmabuf;

	if (!vb || plane >= vb->num_planes)
		return NULL;
	dmabuf = vb2r_dmabuf_get(fd);
	if (dmabuf && dmabuf->priv != vb->planes[plane].mem_priv) {
		dma_buf_put(dmabuf);
		return NULL;
	}
	return dmabuf;
}

void vb2r_dmabuf_put(struct dma_buf *dmabuf)
{
	dma_buf_put(dmabuf);
}

struct dma_buf *vb2r_dmabuf_ref(struct dma_buf *dmabuf)
{
	get_dma_buf(dmabuf);
	return dmabuf;
}

struct vb2r_fence {
	struct dma_fence base;	/* first: the default release kfree_rcu()s the dma_fence pointer */
#if !VB2R_FENCE_INDEPENDENT
	spinlock_t lock;	/* old kernels have no inline fence lock (the fence pins the module) */
#endif
	char timeline[48];
};

static const char *vb2r_fence_driver_name(struct dma_fence *f)
{
	return "vb2_resv";
}

static const char *vb2r_fence_timeline_name(struct dma_fence *f)
{
	return container_of(f, struct vb2r_fence, base)->timeline;
}

#if !VB2R_FENCE_INDEPENDENT
/*
 * Old kernels: the last reference to one of our fences is gone. Free it as the core would
 * (kfree_rcu(); `base` is first) and drop the module reference the fence held. Returning from
 * here after module_put() is safe: an unload that this put makes possible waits in
 * vb2r_glue_exit() for RCU-tasks and RCU grace periods, which a task or an atomic context still
 * on these last instructions ends first.
 */
static void vb2r_fence_release(struct dma_fence *f)
{
	dma_fence_free(f);
	module_put(THIS_MODULE);
}
#endif

/* No .release and no .wait: on 7.2+ the core detaches these ops when the fence signals. */
static const struct dma_fence_ops vb2r_fence_ops = {
	.get_driver_name = vb2r_fence_driver_name,
	.get_timeline_name = vb2r_fence_timeline_name,
#if !VB2R_FENCE_INDEPENDENT
	.release = vb2r_fence_release,
#endif
};

/* One of ours: our ops while pending (7.2+ detaches them on signal; a signaled fence is no wait). */
static bool vb2r_fence_is_ours(struct dma_fence *f)
{
	return rcu_access_pointer(f->ops) == &vb2r_fence_ops;
}

bool vb2r_fence_pins_module(void)
{
	return !VB2R_FENCE_INDEPENDENT;
}

u64 vb2r_fence_context(void)
{
	return dma_fence_context_alloc(1);
}

struct dma_fence *vb2r_fence_create(u64 context, u64 seqno, const char *timeline)
{
	struct vb2r_fence *f;

#if !VB2R_FENCE_INDEPENDENT
	/* The fence's reference on us (see vb2r_fence_release()); refused while unloading. */
	if (!try_module_get(THIS_MODULE))
		return NULL;
#endif
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f) {
#if !VB2R_FENCE_INDEPENDENT
		module_put(THIS_MODULE);
#endif
		return NULL;
	}
	strscpy(f->timeline, timeline, sizeof(f->timeline));
#if VB2R_FENCE_INDEPENDENT
	/* NULL: the fence's inline lock, whose lockdep class belongs to the core. */
	dma_fence_init(&f->base, &vb2r_fence_ops, NULL, context, seqno);
#else
	spin_lock_init(&f->lock);
	dma_fence_init(&f->base, &vb2r_fence_ops, &f->lock, context, seqno);
#endif
	return &f->base;
}

/* Unlocks the first @n resvs of @bufs. */
static void vb2r_resv_unlock_all(struct dma_buf *const *bufs, u32 n)
{
	while (n--)
		dma_resv_unlock(bufs[n]->resv);
}

int vb2r_fence_publish(struct dma_buf *const *bufs, u32 n, struct dma_fence *fence)
{
	struct ww_acquire_ctx ctx;
	int contended = -1;
	u32 i;
	int ret;

	/* One dma-buf per export (and per imported plane): a handful, bounded for the stack. */
	if (n > 32)
		return -EINVAL;
	if (n == 1) {
		/*
		 * The common case (one export, or one imported dma-buf): a single resv is taken
		 * without an acquire context, as dma_resv_lock() allows, since there is no other
		 * lock of its class to order it against.
		 */
		ret = dma_resv_lock_interruptible(bufs[0]->resv, NULL);
		if (ret)
			return ret;
		ret = dma_resv_reserve_fences(bufs[0]->resv, 1);
		if (!ret)
			dma_resv_add_fence(bufs[0]->resv, fence, DMA_RESV_USAGE_WRITE);
		dma_resv_unlock(bufs[0]->resv);
		return ret;
	}
	ww_acquire_init(&ctx, &reservation_ww_class);
retry:
	if (contended >= 0) {
		/* Backed off: wait for the contended lock first, holding nothing. */
		ret = dma_resv_lock_slow_interruptible(bufs[contended]->resv, &ctx);
		if (ret)
			goto fini;
	}
	for (i = 0; i < n; i++) {
		if ((int)i == contended)
			continue;
		ret = dma_resv_lock_interruptible(bufs[i]->resv, &ctx);
		if (!ret)
			continue;
		if (ret == -EALREADY)	/* the same dma-buf twice: the caller's bug */
			ret = -EINVAL;
		/* Drop everything we hold (the slow-locked one as well) and back off. */
		if (contended >= 0 && contended > (int)i)
			dma_resv_unlock(bufs[contended]->resv);
		vb2r_resv_unlock_all(bufs, i);
		if (ret == -EDEADLK) {
			contended = i;
			goto retry;
		}
		goto fini;
	}
	ww_acquire_done(&ctx);
	/* Everything that can fail or allocate, on every resv, before the fence is visible. */
	for (i = 0; i < n; i++) {
		ret = dma_resv_reserve_fences(bufs[i]->resv, 1);
		if (ret)
			goto unlock;
	}
	for (i = 0; i < n; i++)
		dma_resv_add_fence(bufs[i]->resv, fence, DMA_RESV_USAGE_WRITE);
	ret = 0;
unlock:
	vb2r_resv_unlock_all(bufs, n);
fini:
	ww_acquire_fini(&ctx);
	return ret;
}

bool vb2r_dmabuf_only_ours(struct dma_buf *dmabuf)
{
	return file_count(dmabuf->file) == 1;
}

void vb2r_fence_signal(struct dma_fence *fence, int error)
{
	bool cookie = dma_fence_begin_signalling();

	if (error && !dma_fence_is_signaled(fence))
		dma_fence_set_error(fence, error);
	dma_fence_signal(fence);
	dma_fence_end_signalling(cookie);
}

struct dma_fence *vb2r_fence_get(struct dma_fence *fence)
{
	return dma_fence_get(fence);
}

void vb2r_fence_put(struct dma_fence *fence)
{
	dma_fence_put(fence);
}

bool vb2r_fence_signaled(struct dma_fence *fence)
{
	return dma_fence_is_signaled(fence);
}

u64 vb2r_ktime_ns(void)
{
	return ktime_get_ns();
}

void vb2r_sleep_ms(u32 ms)
{
	msleep(ms);
}
