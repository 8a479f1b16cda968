# arm64 (PineTab2) targets, included by the top-level Makefile. `make kernel|kmod|userspace
# ARCH=arm64` land here; `make test-arm64` runs the arm64 checks and the arm64 guest
# (scripts/arm64/test.sh; docs/ci.md, "arm64").
.PHONY: kernel-arm64 kmod-arm64 userspace-arm64 test-arm64

ARM64_KMOD_DIR := $(CURDIR)/build/arm64/kmod-arm64
# Native on an arm64 machine (the PineTab2 itself), cross everywhere else.
ARM64_CROSS := $(if $(filter aarch64 arm64,$(shell uname -m)),,CROSS_COMPILE=aarch64-linux-gnu-)

kernel-arm64: toolchain
	scripts/arm64/kernel.sh

ifeq ($(KDIR_FROM_SCRIPT),1)
# Against our arm64 kernel, in a mirror of the module's sources, so that the x86 build in the
# repository (vb2_resv.ko, kmod/*.o) is left alone.
kmod-arm64: kernel-arm64
	dir="$$(scripts/arm64/kernel.sh --print-dir)" && \
	mkdir -p $(ARM64_KMOD_DIR)/kmod && cp Kbuild $(ARM64_KMOD_DIR)/ && \
	cp kmod/*.rs kmod/*.c kmod/*.h $(ARM64_KMOD_DIR)/kmod/ && \
	$(MAKE) -C "$$dir" M=$(ARM64_KMOD_DIR) $$(cat "$$dir/.make-args") modules && \
	echo "arm64 module: $(ARM64_KMOD_DIR)/vb2_resv.ko"
else
# Against a board kernel's build tree (KDIR=...): built in place, as for x86.
kmod-arm64:
	$(MAKE) -C $(KDIR) M=$(CURDIR) ARCH=arm64 $(ARM64_CROSS) modules
endif

userspace-arm64:
	cargo build --release --workspace --target aarch64-unknown-linux-gnu
	@echo "arm64 binaries: target/aarch64-unknown-linux-gnu/release/{vb2-resv,vb2r-qtest}"

test-arm64: toolchain
	scripts/arm64/test.sh
