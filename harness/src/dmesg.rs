//! What counts as the kernel complaining: the `dmesg-clean` test and the guest tests that check
//! "nothing left in dmesg" both use this one list.

/// Substrings that start a kernel report we never accept: warnings, BUGs, oopses, lockdep,
/// sleep-in-atomic, RCU, KASAN/UBSAN, refcount and list corruption, hung tasks, kmemleak.
const REPORTS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "Oops:",
    "Oops ",
    "general protection fault",
    "Kernel panic",
    "possible circular locking dependency",
    "possible recursive locking",
    "inconsistent lock state",
    "possible irq lock inversion",
    "suspicious RCU usage",
    "sleeping function called from invalid context",
    "KASAN:",
    "UBSAN:",
    "refcount_t:",
    "list_add corruption",
    "list_del corruption",
    "workqueue lockup",
    "new suspected memory leaks",
];
// Not "Call Trace:" by itself: every report above prints its own header line before its trace,
// and bare dump_stack()s exist that are no such report (vivid's kthread falling behind under
// TCG logs "schedule_timeout: wrong timeout value" with a trace).

/// `INFO: task foo:123 blocked for more than N seconds`.
fn is_hung_task(line: &str) -> bool {
    line.contains("INFO: task ") && line.contains(" blocked for more than ")
}

/// The lines of a kernel log that are complaints, without their `[  12.345678]` stamps.
pub fn complaints(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| REPORTS.iter().any(|p| l.contains(p)) || is_hung_task(l))
        .map(|l| strip_stamp(l).to_string())
        .collect()
}

/// One line per object in a `/sys/kernel/debug/kmemleak` report.
pub fn kmemleak_reports(report: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = report.lines().peekable();
    while let Some(l) = lines.next() {
        if l.starts_with("unreferenced object") {
            // The first symbolic backtrace entry says where it was allocated.
            let mut site = String::new();
            while let Some(next) = lines.peek() {
                if next.starts_with("unreferenced object") {
                    break;
                }
                let n = lines.next().unwrap_or_default().trim();
                if site.is_empty() && n.starts_with('[') && !n.contains("kmemleak") {
                    site = n.to_string();
                }
            }
            out.push(format!("kmemleak: {} {}", l.trim(), site));
        }
    }
    out
}

fn strip_stamp(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with('[') {
        if let Some(end) = t.find(']') {
            return t[end + 1..].trim_start();
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_boot_log_has_no_complaints() {
        let log = "[    0.000000] Linux version 7.3.4\n\
                   [    0.100000] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar\n\
                   [    0.100001] ... MAX_LOCKDEP_SUBCLASSES:  8\n\
                   [    0.200000] kmemleak: Kernel memory leak detector initialized (mem pool available: 15683)\n\
                   [    2.000000] vb2_resv: invalid value 'bogus' for parameter 'mode'\n";
        assert!(complaints(log).is_empty(), "{:?}", complaints(log));
    }

    #[test]
    fn a_bare_stack_dump_is_not_a_complaint() {
        let log = "[  141.1] schedule_timeout: wrong timeout value ffffffffffffffff\n\
                   [  141.1] Call Trace:\n\
                   [  141.1]  <TASK>\n";
        assert!(complaints(log).is_empty(), "{:?}", complaints(log));
    }

    #[test]
    fn warnings_lockdep_and_sleep_in_atomic_are_complaints() {
        let log = "[    5.1] WARNING: CPU: 0 PID: 1 at drivers/dma-buf/dma-resv.c:319 dma_resv_add_fence\n\
                   [    5.2] ok line\n\
                   [    6.0] WARNING: possible circular locking dependency detected\n\
                   [    7.0] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580\n\
                   [    8.0] INFO: task kworker/0:1:42 blocked for more than 120 seconds.\n\
                   [    9.0] kmemleak: 3 new suspected memory leaks (see /sys/kernel/debug/kmemleak)\n";
        let c = complaints(log);
        assert_eq!(c.len(), 5, "{c:?}");
        assert!(c[0].starts_with("WARNING: CPU: 0"));
        assert!(c[2].contains("sleeping function"));
    }

    #[test]
    fn kmemleak_objects_are_named_with_their_allocation_site() {
        let rep = "unreferenced object 0xffff888003c5a000 (size 64):\n  comm \"insmod\", pid 90, jiffies 4294\n  backtrace (crc 0):\n    [<ffffffff811>] kmemleak_alloc+0x4a/0x80\n    [<ffffffffa000>] vb2r_attach+0x10/0x40 [vb2_resv]\nunreferenced object 0xffff888003c5b000 (size 32):\n    [<ffffffffa001>] other+0x1/0x2\n";
        let r = kmemleak_reports(rep);
        assert_eq!(r.len(), 2);
        assert!(r[0].contains("vb2r_attach"), "{r:?}");
        assert!(kmemleak_reports("").is_empty());
    }
}
