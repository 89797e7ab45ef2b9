# descent: one Makefile. `make` builds build/descent, `make test` runs every
# test (then the unit tests again under AddressSanitizer + UBSan),
# `make bench` runs the default benchmark suite.
#
# Variables: NATIVE=1 adds -march=native; OPT (default -O2); SANITIZE=address,undefined;
# WITH_CUDA=0/1 forces the CUDA parts off/on (default: on when nvcc is found);
# WITH_CUDAEMU=0/1 the CUDA backend's tests on the host emulator (default: on
# when a C++ compiler is found on x86-64).

BUILD    ?= build
OPT      ?= -O2
NATIVE   ?= 0
SANITIZE ?=
CC       ?= gcc
ifeq ($(CC),cc)
CC := gcc
endif

# Debian packages the build and the tests need (installed when missing and root).
DEB_PACKAGES := gcc g++ libc6-dev make pkg-config libopenblas-dev libopenblas-openmp-dev liblapacke-dev libcjson-dev libcmocka-dev zlib1g-dev libinih-dev libcsv-dev gnuplot-nox openmpi-bin libopenmpi-dev libhwloc-dev python3-numpy python3-torch dataset-fashion-mnist

# OpenBLAS built on OpenMP, pinned by rpath: its GEMM threads and our
# element-wise threads are then one OpenMP pool taking turns, instead of two
# pools spinning against each other on the same cores (with Debian's default
# pthread build, 2-thread steps showed 10x spikes).
OPENBLAS_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
OPENBLAS_INC := -I/usr/include/x86_64-linux-gnu/openblas-openmp
WARN   := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
# -fno-math-errno: sqrtf and friends need not set errno, so loops that call
# them vectorize (Adam's step: 9x); values are unchanged (no -ffast-math).
CFLAGS_BASE := -std=c11 -D_DEFAULT_SOURCE $(OPT) -g -fopenmp -fno-math-errno $(WARN) $(OPENBLAS_INC)
ifeq ($(NATIVE),1)
CFLAGS_BASE += -march=native
endif
ifneq ($(SANITIZE),)
SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
CFLAGS_BASE += $(SAN_FLAGS)
LDFLAGS_SAN := -fsanitize=$(SANITIZE)
endif
GIT_REV := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
# The element-wise kernels and optimizer loops get -O3 (unless OPT asks for
# less than -O2, e.g. the sanitizer build's -O1): GCC 12's -O2 vectorises
# only loops that need no epilogue or alias check, which leaves most of these
# scalar (the MLP step: 1.14 ms at -O2, 1.03 ms at -O3).
KERNEL_OPT ?= $(if $(filter -O2 -O3,$(OPT)),-O3,)
# -fno-tree-loop-distribute-patterns: the row copies of im2col are a few
# floats long; GCC otherwise turns them into memmove calls (7% of a CNN step).
KERNEL_FLAGS := $(KERNEL_OPT) -fno-tree-loop-distribute-patterns
CFLAGS := $(CFLAGS_BASE) -DDS_GIT_REV='"$(GIT_REV)"' -DDS_BUILD_CFLAGS='"$(strip $(CFLAGS_BASE)) (kernels: $(strip $(KERNEL_FLAGS)))"'
LDLIBS := -fopenmp $(LDFLAGS_SAN) -L$(OPENBLAS_DIR) -Wl,--disable-new-dtags,-rpath,$(OPENBLAS_DIR) \
          -lopenblas -llapacke -lcjson -linih -lcsv -lhwloc -lz -lm

# Open MPI (data-parallel CPU ranks): built when mpicc is found (WITH_MPI=0/1
# forces it); only core/comm_mpi.c sees its headers (as system headers, so
# -Wpedantic judges our code, not theirs).
MPICC := $(shell command -v mpicc 2>/dev/null)
ifeq ($(origin WITH_MPI),undefined)
WITH_MPI := $(if $(MPICC),1,0)
endif
ifeq ($(WITH_MPI),1)
MPI_CFLAGS := $(patsubst -I%,-isystem %,$(shell mpicc --showme:compile 2>/dev/null))
MPI_LIBS := $(shell mpicc --showme:link 2>/dev/null)
endif
LDLIBS += $(MPI_LIBS)

# STATIC_CPU=1 (make gpu-bundle): the CPU libraries Debian ships as .a are
# linked statically, for a machine that has none of them (a GPU machine with
# CUDA and PyTorch only); cJSON and cmocka ship no .a and travel beside the
# binary in $(BUILD)/lib (rpath $ORIGIN/../lib), with libudev (hwloc's).
ifeq ($(STATIC_CPU),1)
LDLIBS := -fopenmp $(LDFLAGS_SAN) -Wl,-rpath,'$$ORIGIN/../lib:$$ORIGIN/lib' \
          -Wl,-Bstatic -L$(OPENBLAS_DIR) -llapacke -lopenblas -lgfortran -lquadmath -linih -lcsv -lhwloc -lz \
          -Wl,-Bdynamic -lcjson -l:libudev.so.1 -lm
endif

# Optional parts: reported, never silently assumed.
NVCC := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifeq ($(origin WITH_CUDA),undefined)
WITH_CUDA := $(if $(NVCC),1,0)
endif

LIB_SRC := $(wildcard core/*.c optimizers/*.c workloads/*.c) \
           $(filter-out harness/main.c,$(wildcard harness/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
# The CUDA backend (core/*.cu, nvcc): built whenever nvcc is found, for sm_80
# and sm_90 plus PTX (compute_90, which newer GPUs compile at load), so CI
# always compiles it; run time without a GPU is a clear error, and the GPU
# tests skip. cudart is linked statically, cuBLAS from the toolkit (rpath).
# No FMA contraction (--fmad=false, and on the host side): the CPU build
# rounds every product, and parity with it is tested element by element.
ifeq ($(WITH_CUDA),1)
CUDA_HOME := $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_OBJ := $(patsubst %.cu,$(BUILD)/obj/%.o,$(wildcard core/*.cu))
NVCCFLAGS := -std=c++17 -O2 -g -lineinfo -ccbin $(CC) \
             -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=[sm_90,compute_90] \
             -Xcompiler -Wall,-Wextra,-Werror,-ffp-contract=off -Werror all-warnings --fmad=false -DDS_WITH_CUDA=1
LIB_OBJ += $(CUDA_OBJ)
CUDA_LDLIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart_static -lstdc++ -ldl -lrt -lpthread
LDLIBS += $(CUDA_LDLIBS)
endif
CFLAGS += -DDS_WITH_CUDA=$(WITH_CUDA)

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# Unit tests: everything but the tests that run the binary (command line, replay).
UNIT_BIN := $(filter-out $(BUILD)/tests/test_cli $(BUILD)/tests/test_replay,$(TEST_BIN))

# The CUDA backend on the host (tests/cudaemu): the same core/*.cu kernels
# (but comm_nccl.cu) compiled by the C++ compiler against shim CUDA runtime
# and cuBLAS headers, run by an emulator, and linked with test_cuda.c as
# $(BUILD)/tests/test_cuda_emu, so every `make test` runs the GPU-vs-CPU
# parity tests: no nvcc, no GPU. The registry is compiled again with the
# cuda backend in it, comm_local without NCCL (not emulated). x86-64 only
# (the emulator switches stacks in assembly). No FMA contraction, as nvcc's
# --fmad=false; -Wno-unknown-pragmas: g++ does not know nvcc's `#pragma unroll`.
CXX_FOUND := $(shell command -v $(CXX) 2>/dev/null)
ifeq ($(origin WITH_CUDAEMU),undefined)
WITH_CUDAEMU := $(if $(and $(CXX_FOUND),$(filter x86_64-%,$(shell $(CC) -dumpmachine 2>/dev/null))),1,0)
endif
EMU := $(BUILD)/cudaemu
EMU_HDR := $(wildcard tests/cudaemu/*.h)
EMU_OBJ := $(patsubst %.cu,$(EMU)/%.o,$(filter-out core/comm_nccl.cu,$(wildcard core/*.cu))) \
           $(EMU)/tests/cudaemu/cudaemu.o $(EMU)/core/backend_registry.o $(EMU)/core/comm_local.o
EMU_LIB_OBJ := $(filter-out $(CUDA_OBJ) $(BUILD)/obj/core/backend_registry.o $(BUILD)/obj/core/comm_local.o,$(LIB_OBJ))
EMU_CXXFLAGS := -std=c++17 $(OPT) -g -Wall -Wextra -Werror -Wno-unknown-pragmas -ffp-contract=off \
                $(SAN_FLAGS) -DDS_CUDA_EMU=1 -DDS_WITH_CUDA=1 -Itests/cudaemu -Icore $(OPENBLAS_INC)
EMU_CFLAGS = $(filter-out -DDS_WITH_CUDA=%,$(CFLAGS))
EMU_LDLIBS = $(filter-out $(CUDA_LDLIBS),$(LDLIBS)) -lstdc++
ifeq ($(WITH_CUDAEMU),1)
TEST_BIN += $(BUILD)/tests/test_cudaemu $(BUILD)/tests/test_cuda_emu
UNIT_BIN += $(BUILD)/tests/test_cudaemu $(BUILD)/tests/test_cuda_emu
endif

.PHONY: gpu-bundle gpu-check all deps test test-unit test-sanitize baseline bench report-check peer-fmnist peer-ddp baselines-fmnist clean install help
all: deps $(BUILD)/descent
	@echo "built $(BUILD)/descent  [cuda: $(if $(filter 1,$(WITH_CUDA)),CUDA backend built with $(NVCC),not built: no nvcc)] [mpi: $(if $(filter 1,$(WITH_MPI)),Open MPI,not built: no mpicc)] [nccl: $(if $(filter 11,$(WITH_CUDA)$(WITH_MPI)),opened at run time (libnccl.so.2),not built: needs CUDA and MPI)] [cudaemu: $(if $(filter 1,$(WITH_CUDAEMU)),make test runs test_cuda on the host with $(CXX),not built: needs $(CXX) on x86-64)]"

# Installs what is missing when root; otherwise prints the one command to run.
deps:
	@missing=""; \
	if command -v dpkg-query >/dev/null 2>&1; then \
	  for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	  done; \
	else echo "descent: dpkg-query not found: not a Debian system, assuming dependencies are installed"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "descent: installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || exit 1; \
	  else \
	    echo "descent: missing Debian packages. Run:"; \
	    echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# Objects depend on the flags they were built with: changing OPT, NATIVE or
# SANITIZE rebuilds them instead of silently linking stale objects.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_ALL := $(CC) $(CFLAGS) $(KERNEL_FLAGS) $(LDLIBS) mpi=$(WITH_MPI) $(CXX) $(EMU_CXXFLAGS)
$(shell mkdir -p $(BUILD) && echo '$(FLAGS_ALL)' | cmp -s - $(FLAGS_STAMP) || echo '$(FLAGS_ALL)' > $(FLAGS_STAMP))


$(BUILD)/obj/core/comm_mpi.o: CFLAGS += -DDS_WITH_MPI=$(WITH_MPI) $(MPI_CFLAGS)

KERNEL_OBJ := $(BUILD)/obj/core/backend_cpu.o $(BUILD)/obj/core/conv_winograd.o $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard optimizers/*.c))
$(KERNEL_OBJ): CFLAGS += $(KERNEL_FLAGS)

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu core/cuda_common.cuh core/act.h core/backend.h core/philox.h optimizers/optim.h $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "NVCC $<"
	@$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/libdescent.a: $(LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/descent: $(BUILD)/obj/harness/main.o $(BUILD)/libdescent.a
	@echo "LD $@"
	@$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/testutil.h tests/gcutil.h $(BUILD)/libdescent.a $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libdescent.a $(LDLIBS) -lcmocka

# test_cuda on the host emulator (tests/cudaemu; see EMU above).
$(EMU)/core/%.o: core/%.cu $(EMU_HDR) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CXX $< (cudaemu)"
	@$(CXX) -x c++ $(EMU_CXXFLAGS) -MMD -MP -c $< -o $@

# The emulator itself at -O2 even in the sanitizer build (OPT=-O1): it is not
# what that build tests, and its scheduler is most of the emulated run time.
$(EMU)/tests/cudaemu/cudaemu.o: tests/cudaemu/cudaemu.cc $(EMU_HDR) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CXX $<"
	@$(CXX) $(EMU_CXXFLAGS) -O2 -MMD -MP -c $< -o $@

$(EMU)/core/backend_registry.o: core/backend_registry.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC $< (cudaemu)"
	@$(CC) $(EMU_CFLAGS) -DDS_WITH_CUDA=1 -MMD -MP -c $< -o $@

$(EMU)/core/comm_local.o: core/comm_local.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC $< (cudaemu)"
	@$(CC) $(EMU_CFLAGS) -DDS_WITH_CUDA=0 -MMD -MP -c $< -o $@

$(EMU)/libdescent.a: $(EMU_OBJ) $(EMU_LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

# The emulator's own test: correct kernels run right, buggy ones are stopped.
$(BUILD)/tests/test_cudaemu: tests/cudaemu/selftest.cc $(EMU)/tests/cudaemu/cudaemu.o $(EMU_HDR) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CXX $<"
	@$(CXX) $(EMU_CXXFLAGS) -o $@ $< $(EMU)/tests/cudaemu/cudaemu.o $(EMU_LDLIBS)

$(BUILD)/tests/test_cuda_emu: tests/test_cuda.c tests/cudaemu/cmocka_skip.c tests/testutil.h tests/gcutil.h $(EMU)/libdescent.a $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC $< (cudaemu)"
	@$(CC) $(CFLAGS) -o $@ $< tests/cudaemu/cmocka_skip.c $(EMU)/libdescent.a $(EMU_LDLIBS) -lcmocka

# Every test and the regression gate (tests/ci_gate.sh: configs/ci.ini against
# results/baselines/ci.csv); then the tests once more under ASan + UBSan (the
# command-line tests then drive the sanitized descent). The last line is the summary:
# N passed, N failed, N skipped.
test: deps $(BUILD)/descent $(TEST_BIN)
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/asan SANITIZE=address,undefined OPT=-O1 \
	    $(BUILD)/asan/descent $(patsubst $(BUILD)/%,$(BUILD)/asan/%,$(TEST_BIN)) >/dev/null
	@DESCENT_BIN=$(BUILD)/descent CI_GATE="sh tests/ci_gate.sh" sh tests/run.sh \
	    "$(TEST_BIN)" "$(patsubst $(BUILD)/%,$(BUILD)/asan/%,$(TEST_BIN))" $(BUILD)/asan/descent

# The unit tests alone (fast), and the sanitizer pass alone.
test-unit: $(UNIT_BIN)
	@sh tests/run.sh "$(UNIT_BIN)" "" ""

# The committed baseline of the CI gate (configs/ci.ini): refresh it
# deliberately, after a change that is meant to move its numbers.
baseline: all
	@rm -rf $(BUILD)/ci-baseline
	@$(BUILD)/descent sweep configs/ci.ini -j 2 --out $(BUILD)/ci-baseline
	@mkdir -p results/baselines && cp $(BUILD)/ci-baseline/runs.csv results/baselines/ci.csv
	@echo "results/baselines/ci.csv refreshed ($$(($$(wc -l < results/baselines/ci.csv) - 1)) runs): review and commit it"

# The default suite: configs/bench.ini (about 3 minutes on 2 cores), its
# figures and report; before the report, descent scale projects the suite's
# 1-rank data-parallel run (group dp-1rank, its first seed) past this
# machine into the sweep folder's projection/ (skipped, saying so, when this
# descent has no scale command); prints where the report is. Where a GPU is
# usable, also configs/gpu.ini (CPU against GPU) into the folder's gpu/, with
# its own report, and with two GPUs or more configs/gpus.ini (1 against 2
# GPUs over NCCL) into gpus/; where not, says why each was skipped.
bench: all
	@out=results/bench-$$(date +%Y%m%d-%H%M%S); \
	$(BUILD)/descent sweep configs/bench.ini -j 2 --out $$out && \
	{ if $(BUILD)/descent help 2>/dev/null | grep -q 'descent scale'; then \
	    run=$$(awk -F, -v d="$$out" '$$3 == "dp-1rank" { printf "%s/runs/%03d-%s", d, $$1, $$2; exit }' $$out/plan.csv); \
	    if [ -n "$$run" ] && [ -f "$$run/summary.csv" ]; then \
	      $(BUILD)/descent scale --model $$run --out $$out/projection || \
	        { rm -rf $$out/projection; echo "make bench: descent scale failed: the report has no projection"; }; \
	    else echo "make bench: no finished dp-1rank run in $$out: the report has no projection"; fi; \
	  else echo "make bench: this descent has no scale command: the report has no projection"; fi; } && \
	$(BUILD)/descent report $$out && \
	echo "make bench: open $$out/report.html (Markdown: $$out/report.md)" && \
	if why=$$($(BUILD)/descent bench-optim --backend cuda --n 1000 --repeat 1 2>&1 >/dev/null); then \
	  $(BUILD)/descent sweep configs/gpu.ini --out $$out/gpu && $(BUILD)/descent report $$out/gpu && \
	  echo "make bench: GPU section (CPU against GPU): $$out/gpu/report.html"; \
	  ngpu=$$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); \
	  if [ "$${ngpu:-0}" -ge 2 ]; then \
	    $(BUILD)/descent sweep configs/gpus.ini --out $$out/gpus && $(BUILD)/descent report $$out/gpus && \
	    echo "make bench: GPU count (1 against 2 GPUs, NCCL): $$out/gpus/report.html"; \
	  else echo "make bench: GPU-count section skipped: $${ngpu:-0} GPU(s) listed by nvidia-smi, it needs 2"; fi; \
	else echo "make bench: GPU section skipped: $$why"; fi

# The report looked at: the CI suite's report rendered by headless Chromium
# (Debian's chromium, installed when missing and root) to a screenshot,
# $(BUILD)/report-check/report.png, and the figures checked as PNG and SVG.
report-check: all
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "report-check: needs chromium: sudo apt-get install -y chromium"; exit 1; fi; }
	@sh tests/report_check.sh $(BUILD)/descent $(BUILD)/report-check

# descent against PyTorch on Fashion-MNIST, same model, batch, optimizer and
# threads, in one invocation (a benchmark, not a test). RUNS=, EPOCHS= override.
# descent is built with -march=native for it (in $(BUILD)/native): PyTorch
# picks its AVX2/AVX-512 kernels at run time, so both sides use the machine's
# full instruction set (the default build targets baseline x86-64).
peer-fmnist: deps
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/native NATIVE=1 $(BUILD)/native/descent
	@DESCENT_BIN=$(BUILD)/native/descent sh harness/peers/peer_fmnist.sh

# descent's data parallelism against PyTorch DDP (gloo) on the same 2 cores:
# descent 1 rank x 2 threads, descent 2 ranks x 1 thread (Open MPI), PyTorch
# 1 process x 2 threads, DDP 2 ranks x 1 thread; same model, initial
# parameters, global batch, Adam, steps (a benchmark, not a test). RUNS=,
# MODELS=, BATCHES=, STEPS=, CNN_STEPS= override; -march=native as peer-fmnist.
peer-ddp: deps
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/native NATIVE=1 $(BUILD)/native/descent
	@DESCENT_BIN=$(BUILD)/native/descent sh harness/peers/peer_ddp.sh

# The GPU check. `make gpu-bundle` (here) builds $(GPU_BUILD): descent and the
# GPU tests with the CPU libraries static (STATIC_CPU=1) and without MPI, plus
# the Fashion-MNIST IDX files, packed as $(GPU_BUILD)-bundle/bundle.tar.xz:
# all a GPU machine without our Debian packages needs (carry that folder).
# `make gpu-check` (there, or `sh harness/gpu_check.sh` where make is
# missing) unpacks it, runs the GPU tests, then the benchmark, into OUT
# (default results/gpu-check), the table last; under 6 minutes.
GPU_BUILD ?= build-gpu
gpu-bundle:
	@$(MAKE) --no-print-directory BUILD=$(GPU_BUILD) WITH_MPI=0 STATIC_CPU=1 $(GPU_BUILD)/descent $(GPU_BUILD)/tests/test_cuda
	@sh harness/gpu_bundle.sh $(GPU_BUILD)

gpu-check:
	@sh harness/gpu_check.sh

# The Fashion-MNIST recipes whose results are results/baselines/fmnist/ (about
# 25 minutes on 2 cores).
baselines-fmnist: all
	@DESCENT_BIN=$(BUILD)/descent sh harness/baselines_fmnist.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/descent $(DESTDIR)$(PREFIX)/bin/descent
PREFIX ?= /usr/local

clean:
	rm -rf $(BUILD)

help:
	@sed -n '1,10p' Makefile

-include $(LIB_OBJ:.o=.d) $(BUILD)/obj/harness/main.d $(EMU_OBJ:.o=.d)
