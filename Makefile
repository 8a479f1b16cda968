# vb2-resv: top-level entry points. `make test` is what CI runs; `make demo` is the main job.
#
#   make toolchain                 install what a fresh Debian bookworm machine lacks (idempotent;
#                                  demo, test, bench and kernel run it first, a no-op when all is there)
#   make kernel [KERNEL=7.3|6.12] [KASAN=0|1]  build (or reuse) our Rust-enabled test kernel
#   make kmod [KDIR=...] [ARCH=..] build vb2_resv.ko the Kbuild way against KDIR
#   make userspace                 cargo build --release of the workspace
#   make test [KASAN=1]            cargo tests, kernel, module, QEMU suite; TAP + build/results.json
#   make demo                      boot the kernel in QEMU and run the main job on the stand-in drivers
#   make bench                     what vb2_resv adds to the ioctls it wraps, per mode, against the
#                                  module absent (QEMU, bench kernel; docs/performance.md)
#   make stress                    the stress and unload tests on the clang + KASAN kernel
#                                  (nightly-style: the KASAN kernel build and run are over CI's budget)
#   make kernel|kmod|userspace ARCH=arm64   the PineTab2's arm64 builds (scripts/arm64/arm64.mk)
#   make test-arm64                the arm64 checks and the arm64 QEMU guest (scripts/arm64/test.sh)
#   make clean

KERNEL ?= 7.3
ARCH ?= x86_64
export LIBCLANG_PATH ?= /usr/lib/llvm-19/lib

# With no KDIR, build against our own kernel (built on demand by scripts/kernel.sh).
ifeq ($(origin KDIR), undefined)
KDIR_FROM_SCRIPT := 1
endif

.PHONY: toolchain kernel kmod userspace test demo bench stress clean fmt clippy

toolchain:
	@scripts/toolchain.sh
	@scripts/toolchain-arm64.sh

include scripts/arm64/arm64.mk
ifeq ($(ARCH),arm64)
kernel: kernel-arm64
kmod: kmod-arm64
userspace: userspace-arm64
else
kernel: toolchain
	scripts/kernel.sh $(KERNEL)

# scripts/kmod.sh is `make -C KDIR M=$(CURDIR) modules`, except in a directory whose path make
# cannot take (spaces): then it builds in a mirror and copies the .ko back.
ifeq ($(KDIR_FROM_SCRIPT),1)
kmod: kernel
	scripts/kmod.sh "$$(scripts/kernel.sh --print-dir $(KERNEL))"
else
kmod:
	scripts/kmod.sh "$(KDIR)" ARCH=$(ARCH)
endif

userspace:
	cargo build --release --workspace
endif

test:
	@scripts/test.sh

demo:
	@scripts/demo.sh

bench:
	@scripts/bench.sh

STRESS_TESTS := stress.random-ops stress.rmmod-cycles kmod.unload-blocked-clients \
	kmod.unbind-while-streaming fence.requeue-race kmod.unload-while-streaming kmod.hardirq-signal \
	kmod.detach-streamoff
stress:
	@KASAN=1 VB2R_TESTS='$(STRESS_TESTS)' scripts/test.sh

fmt:
	cargo fmt --all

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf build
	cargo clean
	rm -f kmod/*.o kmod/.*.cmd kmod/*.rmeta .*.cmd *.o *.ko *.mod *.mod.c *.mod.o Module.symvers modules.order
