// SPDX-License-Identifier: GPL-2.0
/*
 * vb2_resv C glue: registration: the vb2_buf_done probe (and its hard-IRQ test aid), module
 * init and exit.
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

/* ---------------------------------------------------------------------------------------------
 * Registration.
 */

/*
 * test_hardirq_signal: hantro returns buffers from its interrupt handler, the virtual drivers
 * from a kthread or a workqueue, so without help the suite never runs the signalling path in
 * hard IRQ. With the parameter set, each vb2_buf_done event is copied (queue address as a key,
 * index, state, time) into a slot and handed to an irq_work, which runs the same
 * vb2r_rs_buf_done() there, under lockdep. A plain irq_work runs in hard IRQ (a self-IPI on x86
 * and arm64) and lockdep treats it as a threadable interrupt handler, as hantro's is (a kthread
 * on PREEMPT_RT, like a forced-threaded handler). Not IRQ_WORK_HARD_IRQ: that is a raw hard-IRQ
 * context, in which the spinlock_t of a dma_fence (and ours) is invalid on PREEMPT_RT, and
 * lockdep says so ("Invalid wait context"); drivers that signal from IRQF_NO_THREAD handlers
 * have the same limit with every dma_fence. Test aid only: it delays the signal by an interrupt.
 */
static bool test_hardirq_signal;
module_param(test_hardirq_signal, bool, 0644);
MODULE_PARM_DESC(test_hardirq_signal, "test aid: signal fences from an irq_work (hard IRQ), as with a driver that returns buffers in its interrupt handler (default: off)");

#define VB2R_IRQ_SLOTS 64
struct vb2r_irq_event {
	struct irq_work work;
	struct vb2_queue *q;
	u32 index;
	u32 state;
	u64 event_ns;
};
static struct vb2r_irq_event vb2r_irq_events[VB2R_IRQ_SLOTS];
static DECLARE_BITMAP(vb2r_irq_busy, VB2R_IRQ_SLOTS);
static atomic_t vb2r_irq_hard = ATOMIC_INIT(0);
static atomic_t vb2r_irq_not_hard = ATOMIC_INIT(0);
static atomic_t vb2r_irq_in_place = ATOMIC_INIT(0);

static void vb2r_irq_event_run(struct irq_work *w)
{
	struct vb2r_irq_event *e = container_of(w, struct vb2r_irq_event, work);

	atomic_inc(in_hardirq() ? &vb2r_irq_hard : &vb2r_irq_not_hard);
	vb2r_rs_buf_done(e->q, NULL, e->index, e->state, e->event_ns);
	/* The slot's fields are not read after this. */
	clear_bit_unlock(e - vb2r_irq_events, vb2r_irq_busy);
}

/* Hands the event to a free slot's irq_work; false when every slot is busy. */
static bool vb2r_irq_defer(struct vb2_queue *q, u32 index, u32 state, u64 event_ns)
{
	unsigned int i;

	for (i = 0; i < VB2R_IRQ_SLOTS; i++) {
		struct vb2r_irq_event *e = &vb2r_irq_events[i];

		if (test_and_set_bit_lock(i, vb2r_irq_busy))
			continue;
		e->q = q;
		e->index = index;
		e->state = state;
		e->event_ns = event_ns;
		irq_work_queue(&e->work);
		return true;
	}
	return false;
}

/*
 * Test aid for fence.requeue-race: spin this long in the probe before handling the event, which
 * widens the window in which the buffer is already on the done list (and can be dequeued and
 * queued again on another CPU) while its event is not handled yet. 0 (default): off.
 */
static uint test_buf_done_delay_us;
module_param(test_buf_done_delay_us, uint, 0644);
MODULE_PARM_DESC(test_buf_done_delay_us, "test aid: busy-wait this many microseconds (at most 10000) in the vb2_buf_done probe before handling the event (default: 0)");

/*
 * Test aid for kmod.detach-streamoff: sleep this long in the kill of a queue's state (detach,
 * unload, the close of an unregistered node) after it is taken and before its fences are
 * cancelled: the window in which the node's hooks are gone and its driver may still return
 * buffers (a STREAMOFF that no longer goes through us). 0 (default): off.
 */
static uint test_kill_delay_ms;
module_param(test_kill_delay_ms, uint, 0644);
MODULE_PARM_DESC(test_kill_delay_ms, "test aid: sleep this many milliseconds (at most 5000) in the kill of a queue's state, between taking it and cancelling its fences (default: 0)");

u32 vb2r_param_test_kill_delay_ms(void)
{
	return min(READ_ONCE(test_kill_delay_ms), 5000U);
}

static void vb2r_probe_buf_done(void *data, struct vb2_queue *q, struct vb2_buffer *vb)
{
	uint delay = READ_ONCE(test_buf_done_delay_us);

	if (delay)
		udelay(min(delay, 10000U));
	if (READ_ONCE(test_hardirq_signal) && !in_hardirq()) {
		if (vb2r_irq_defer(q, vb->index, vb2r_vb_state(vb), ktime_get_ns()))
			return;
		atomic_inc(&vb2r_irq_in_place);
	}
	/* In place: Rust reads the buffer's current state under its fence lock. */
	vb2r_rs_buf_done(q, vb, vb->index, vb2r_vb_state(vb), U64_MAX);
}

static DEFINE_MUTEX(vb2r_probe_mutex);
static bool vb2r_probe_registered;

void vb2r_glue_init(void)
{
	unsigned int i;

	for (i = 0; i < VB2R_IRQ_SLOTS; i++)
		init_irq_work(&vb2r_irq_events[i].work, vb2r_irq_event_run);
}

int vb2r_probe_register(void)
{
	int ret = 0;

	mutex_lock(&vb2r_probe_mutex);
	if (!vb2r_probe_registered) {
		ret = register_trace_vb2_buf_done(vb2r_probe_buf_done, NULL);
		vb2r_probe_registered = !ret;
	}
	mutex_unlock(&vb2r_probe_mutex);
	return ret;
}

void vb2r_probe_unregister(void)
{
	mutex_lock(&vb2r_probe_mutex);
	if (vb2r_probe_registered) {
		unregister_trace_vb2_buf_done(vb2r_probe_buf_done, NULL);
		tracepoint_synchronize_unregister();
		vb2r_probe_registered = false;
	}
	mutex_unlock(&vb2r_probe_mutex);
}

void vb2r_glue_exit(void)
{
	unsigned int i;

	/* Every node is detached: remove_dev finds nothing to do from here on. */
	vb2r_class_unwatch();
	vb2r_probe_unregister();
	/* No probe runs any more: wait for the events it handed to irq_works. */
	for (i = 0; i < VB2R_IRQ_SLOTS; i++)
		irq_work_sync(&vb2r_irq_events[i].work);
	if (atomic_read(&vb2r_irq_hard) || atomic_read(&vb2r_irq_not_hard) ||
	    atomic_read(&vb2r_irq_in_place))
		pr_info("vb2_resv: test_hardirq_signal: %d buffer-done events handled in hard IRQ, %d in an irq_work outside it, %d in place (no free slot)\n",
			atomic_read(&vb2r_irq_hard), atomic_read(&vb2r_irq_not_hard),
			atomic_read(&vb2r_irq_in_place));
	vb2r_wait_wrappers();
	vb2r_hooks_leak_all();
	vb2r_mdev_leak_all();
	/* Let call_rcu callbacks and RCU readers of our fences' ops finish before the text goes. */
	synchronize_rcu();
}
