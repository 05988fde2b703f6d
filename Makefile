# cpeft — build, test, install.
#   make                 build/cpeft, build/libcpeft.a, build/libcpeft.so, build/examples/* (portable x86-64;
#                        NATIVE=1: this CPU only)
#   make demo            the main job on the built-in default (see README)
#   make demo-classify   LoRA SST-2 and WNUT-17 on the default encoder, metrics before and after
#   make demo-prompt     prompt tuning (TEXT init) and prefix tuning beside LoRA on the default decoder
#   make demo-seq2seq    E2E NLG on a tiny T5 pre-trained by cpeft, LoRA, BLEU / ROUGE-L before and after
#   make test            unit + parity tests, then the same suite under ASan + UBSan
#   make install PREFIX=/opt/cpeft   (lib/libcpeft.so.ABI with its libcpeft.so link)
#   make reference       regenerate tests/fixtures with the pinned Python stack (needs PyPI)
#   make fuzz            build the libFuzzer targets (clang) and fuzz each for FUZZ_SECONDS; fails on any report
#   make bench           side-by-side benchmarks against PyTorch (needs `make reference-venv`)
#   make sweep           PEFT's LoRA test matrix, both directions, against PEFT (needs `make reference-venv`)

PREFIX  ?= /usr/local
CC      ?= cc
# Portable by default: the binary runs on any CPU of the target architecture, and the kernels that
# need wide vectors (ISA_SRC below) are built per instruction set and chosen at run time.
# NATIVE=1 compiles everything for the build machine's CPU (-march=native) instead.
ifeq ($(NATIVE),1)
OPT     ?= -O3 -march=native
else
OPT     ?= -O3
endif
VERSION := 0.1.0
# The ABI version (include/cpeft.h explains what bumps it) is the shared library's soname major:
# libcpeft.so.$(ABI).
ABI := $(shell sed -n 's/^\#define CPEFT_ABI_VERSION \([0-9][0-9]*\).*/\1/p' include/cpeft.h)

DEPS_STAMP := build/.deps-ok
PKGS    := libcjson libpcre2-8 libutf8proc zlib libzstd
# cairo draws the loss curve (src/train/plot.c); its headers at build time, the library opened with
# dlopen on the first plot (so that processes that never draw one do not load its ~20 libraries).
# Tests that read the images back link it directly.
# OpenBLAS built for OpenMP, so that BLAS and cpeft's own parallel loops share one thread pool
# (the default pthread build spins its own threads against OpenMP's and loses ~20%). The rpath
# pins that build at run time whichever variant Debian's alternatives point at.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BLAS_DIR ?= /usr/lib/$(MULTIARCH)/openblas-openmp
BLAS_INC ?= /usr/include/$(MULTIARCH)/openblas-openmp
BLAS_CFLAGS = -I$(BLAS_INC)
BLAS_LIBS   = -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas
# Recursive (=) so pkg-config runs after the dependency check has installed what was missing.
PKG_CFLAGS = $(BLAS_CFLAGS) $(shell pkg-config --cflags $(PKGS) cairo 2>/dev/null)
PKG_LIBS   = $(BLAS_LIBS) $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lcjson -lpcre2-8 -lutf8proc -lz -lzstd)
CAIRO_LIBS = $(shell pkg-config --libs cairo 2>/dev/null || echo -lcairo)
TEST_LIBS_test_plot = $(CAIRO_LIBS)

WARN    := -Wall -Wextra -Wno-unused-parameter
OMPFLAGS ?= -fopenmp
# -fvisibility=hidden: libcpeft.so exports only what include/cpeft.h marks CP_API (tests/unit/test_exports.c).
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(OMPFLAGS) -fno-trapping-math -fno-math-errno $(WARN) $(OPT) -Iinclude -Isrc $(PKG_CFLAGS) $(CFLAGS)
LIBS_ALL   = $(PKG_LIBS) $(MPI_LIBS) $(OMPFLAGS) -lm -lpthread $(LDLIBS)

# Open MPI (docs/distributed.md): detected through pkg-config's ompi-c (Debian's libopenmpi-dev), else
# mpicc --showme; MPI=0 builds the plain single-process library and program. Only src/train/dist*.c
# see mpi.h and CP_WITH_MPI (their target-specific flags below); every program links libmpi when found.
# Recursive (=) so that a build whose dependency step has just installed Open MPI finds it.
MPI ?= auto
MPI_PC     = $(if $(filter 0,$(MPI)),,$(shell pkg-config --exists ompi-c 2>/dev/null && echo ompi-c))
MPI_CFLAGS = $(if $(filter 0,$(MPI)),,$(if $(MPI_PC),-DCP_WITH_MPI=1 $(shell pkg-config --cflags ompi-c),\
             $(if $(shell command -v mpicc 2>/dev/null),-DCP_WITH_MPI=1 $(shell mpicc --showme:compile 2>/dev/null))))
MPI_LIBS   = $(if $(filter 0,$(MPI)),,$(if $(MPI_PC),$(shell pkg-config --libs ompi-c),\
             $(if $(shell command -v mpicc 2>/dev/null),$(shell mpicc --showme:link 2>/dev/null))))

# Kernels compiled once per instruction set (-DCP_ISA=NAME plus its -m flags; kernels/dispatch.c
# picks one per process). Only x86-64 has variants besides the compiler's default target.
ISA_SRC := src/kernels/skinny.c src/kernels/vector.c src/kernels/gemm_cpu.c src/kernels/gemm_skinny16.c src/kernels/gemm_quant.c \
           src/kernels/quant_dot.c
ISAS    := base $(if $(filter x86_64-%,$(shell $(CC) -dumpmachine)),avx2 avx512)
ISA_FLAGS_avx2   := -mavx2 -mfma
ISA_FLAGS_avx512 := -mavx2 -mfma -mavx512f -mavx512bw -mavx512vl -mavx512dq
# The 16-bit weight kernels widen F16 with F16C (every AVX2 CPU has it; kernels/gemm.c checks before
# choosing them). A flag here rather than `#pragma GCC target`, which clang (make fuzz) ignores.
ISA_EXTRA_src/kernels/gemm_skinny16.c := -mf16c
# The 8-bit-activation dot products (kernels/quant_dot.c): F16C for the block scales; the avx512 copy
# also VNNI (vpdpbusd), which it checks at run time before using (else it runs the avx2 copy).
ISA_EXTRA_src/kernels/quant_dot.c := -mf16c
ISA512_EXTRA_src/kernels/quant_dot.c := -mavx512vnni
# kernels/gemm_bf16.c: the AVX-512 BF16 product (vdpbf16ps), compiled once with these flags on
# x86-64 and run only after kernels/gemm.c checked the CPU (gemm_bf16.h).
BF16_FLAGS := $(if $(filter x86_64-%,$(shell $(CC) -dumpmachine)),$(ISA_FLAGS_avx512) -mavx512bf16)
# `cpeft serve`'s HTTP side (libmicrohttpd) goes into the program only; the library never links it.
SERVE_HTTP_SRC := src/serve/http.c
LIB_SRC := $(filter-out $(ISA_SRC) $(SERVE_HTTP_SRC),$(wildcard src/core/*.c src/kernels/*.c src/io/*.c src/nn/*.c src/models/*.c \
                      src/peft/*.c src/tokenizer/*.c src/chat/*.c src/train/*.c src/generate/*.c src/convert/*.c \
                      src/serve/*.c))
CLI_SRC := $(wildcard src/cli/*.c) $(SERVE_HTTP_SRC)
TEST_SRC := $(wildcard tests/unit/test_*.c tests/parity/test_*.c)
BENCH_SRC := $(wildcard bench/*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
EXAMPLE_SRC := $(wildcard examples/*.c)

BUILD ?= build
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(foreach i,$(ISAS),$(ISA_SRC:%.c=$(BUILD)/obj/%.$(i).o))
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(patsubst %.c,$(BUILD)/%,$(TEST_SRC))
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
FUZZ_BIN := $(patsubst %.c,$(BUILD)/%,$(FUZZ_SRC))
EXAMPLE_BIN := $(patsubst %.c,$(BUILD)/%,$(EXAMPLE_SRC))

.PHONY: all deps demo demo-classify demo-prompt demo-seq2seq test test-fast test-asan test-slurm install clean reference reference-venv fuzz bench sweep FORCE
all: $(BUILD)/cpeft $(BUILD)/libcpeft.a $(BUILD)/libcpeft.so $(BUILD)/cpeft.pc $(EXAMPLE_BIN)

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/install-deps.sh
	@MPI=$(MPI) scripts/install-deps.sh
	@mkdir -p $(dir $@) && touch $@

# The compiler and flags of the last build: when they change (NATIVE=1, another OPT or CC), every
# object is rebuilt rather than mixed with objects built for another target.
FLAGS_STAMP := $(BUILD)/.flags
$(FLAGS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(CC) $(CFLAGS_ALL)' | cmp -s - $@ || echo '$(CC) $(CFLAGS_ALL)' > $@
FORCE:

# Which MPI the distributed module was built for (rebuilt when it changes: MPI=0, Open MPI installed).
MPI_STAMP := $(BUILD)/.mpi
$(MPI_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(MPI_CFLAGS) $(MPI_LIBS)' | cmp -s - $@ || echo '$(MPI_CFLAGS) $(MPI_LIBS)' > $@
$(BUILD)/obj/src/train/dist.o $(BUILD)/obj/src/train/dist_mpi.o: CFLAGS_ALL += $(MPI_CFLAGS)
$(BUILD)/obj/src/train/dist.o $(BUILD)/obj/src/train/dist_mpi.o: $(MPI_STAMP)

# libmicrohttpd (Debian's libmicrohttpd-dev) for `cpeft serve`: its header found through pkg-config; without
# it the rest builds and `cpeft serve` says how to get it. Only src/serve/http.c sees microhttpd.h, and it
# opens the library with dlopen when serve starts (linking it would put GnuTLS in every command's memory).
MHD_PC     = $(shell pkg-config --exists libmicrohttpd 2>/dev/null && echo libmicrohttpd)
MHD_CFLAGS = $(if $(MHD_PC),-DCP_WITH_MHD=1 $(shell pkg-config --cflags libmicrohttpd))
MHD_LIBS   = $(if $(MHD_PC),-ldl)
MHD_STAMP := $(BUILD)/.mhd
$(MHD_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(MHD_CFLAGS) $(MHD_LIBS)' | cmp -s - $@ || echo '$(MHD_CFLAGS) $(MHD_LIBS)' > $@
$(BUILD)/obj/src/serve/http.o: CFLAGS_ALL += $(MHD_CFLAGS)
$(BUILD)/obj/src/serve/http.o: $(MHD_STAMP)
$(BUILD)/cpeft: $(MHD_STAMP)

$(BUILD)/obj/%.o: %.c $(DEPS_STAMP) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/obj/src/kernels/gemm_bf16.o: src/kernels/gemm_bf16.c $(DEPS_STAMP) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(BF16_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.base.o: %.c $(DEPS_STAMP) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DCP_ISA=base -MMD -MP -c $< -o $@

$(BUILD)/obj/%.avx2.o: %.c $(DEPS_STAMP) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(ISA_FLAGS_avx2) $(ISA_EXTRA_$<) -DCP_ISA=avx2 -MMD -MP -c $< -o $@

$(BUILD)/obj/%.avx512.o: %.c $(DEPS_STAMP) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(ISA_FLAGS_avx512) $(ISA_EXTRA_$<) $(ISA512_EXTRA_$<) -DCP_ISA=avx512 -MMD -MP -c $< -o $@

$(BUILD)/libcpeft.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The soname names the ABI; build/libcpeft.so.$(ABI) is the link a program loads at run time.
$(BUILD)/libcpeft.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libcpeft.so.$(ABI) -o $@ $^ $(LIBS_ALL)
	ln -sf libcpeft.so $(BUILD)/libcpeft.so.$(ABI)

$(BUILD)/cpeft: $(CLI_OBJ) $(BUILD)/libcpeft.a
	$(CC) -o $@ $(CLI_OBJ) $(BUILD)/libcpeft.a $(LIBS_ALL) $(MHD_LIBS)

$(BUILD)/cpeft.pc: cpeft.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@BLAS_LIBS@|$(BLAS_LIBS) $(MPI_LIBS)|' $< > $@

$(BUILD)/tests/%: tests/%.c tests/test.h $(wildcard tests/parity/*.h) $(BUILD)/libcpeft.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests -o $@ $< $(BUILD)/libcpeft.a $(TEST_LIBS_$(notdir $@)) $(LIBS_ALL)

# Each fuzz target as a test program that replays its committed corpus and seeds (tests/fuzz/replay.c).
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c tests/fuzz/replay.c $(BUILD)/libcpeft.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DCP_FUZZ_TARGET='"$*"' -o $@ $< tests/fuzz/replay.c $(BUILD)/libcpeft.a $(LIBS_ALL)

# The examples are programs a user could write: include/cpeft.h alone on the include path (no src/),
# strict C11, linked against the shared library (found at run time through $ORIGIN/..).
$(BUILD)/examples/%: examples/%.c include/cpeft.h $(BUILD)/libcpeft.so
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -pedantic $(WARN) $(OPT) -Iinclude -o $@ $< -L$(BUILD) -lcpeft -Wl,-rpath,'$$ORIGIN/..' -lm $(LDLIBS)

$(BUILD)/bench/%: bench/%.c bench/machine.h $(BUILD)/libcpeft.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libcpeft.a $(LIBS_ALL)

# The main job the README gives.
demo: all
	@scripts/demo.sh

demo-classify: all
	@scripts/demo-classify.sh

demo-prompt: all
	@scripts/demo-prompt.sh

demo-seq2seq: all
	@scripts/demo-seq2seq.sh

# The test command the README gives: the suite on the optimised build, then under ASan + UBSan.
test: test-fast test-asan

test-fast: all $(TEST_BIN) $(FUZZ_BIN) $(BENCH_BIN) $(EXAMPLE_BIN)
	@tests/run.sh $(BUILD)

# Opt-in: a one-node Slurm (slurmctld + slurmd as root, auth/none) and `srun --mpi=pmix -n 2 cpeft train`
# (docs/distributed.md); it starts daemons, so it is not in `make test`. Skips without root or Slurm.
test-slurm: all
	@tests/slurm/run.sh $(BUILD)

test-asan: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=undefined,float-cast-overflow" \
	    LDLIBS="-fsanitize=address,undefined,float-cast-overflow" test-fast

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/cpeft $(DESTDIR)$(PREFIX)/bin/cpeft
	install -m 644 $(BUILD)/libcpeft.a $(DESTDIR)$(PREFIX)/lib/libcpeft.a
	install -m 755 $(BUILD)/libcpeft.so $(DESTDIR)$(PREFIX)/lib/libcpeft.so.$(ABI)
	ln -sf libcpeft.so.$(ABI) $(DESTDIR)$(PREFIX)/lib/libcpeft.so
	install -m 644 include/cpeft.h $(DESTDIR)$(PREFIX)/include/cpeft.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@BLAS_LIBS@|$(BLAS_LIBS) $(MPI_LIBS)|' cpeft.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/cpeft.pc

# ---- the reference oracle (Python; never needed to build or test) --------------------------------
VENV := tests/reference/.venv
reference-venv: $(VENV)/.ok
$(VENV)/.ok: tests/reference/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/reference/requirements.txt
	touch $@

# Every fixture: models, forward, info, configs, eval, LoRA (both directions: the cpeft -> PEFT step
# runs $(BUILD)/cpeft), tokenizers and safetensors files. Deterministic: a rerun changes no byte.
reference: reference-venv all
	$(VENV)/bin/python tests/reference/generate.py --out tests/fixtures --cpeft $(BUILD)/cpeft
	$(VENV)/bin/python tests/reference/tokenizer_fixtures.py --out tests/fixtures/tokenizers
	$(VENV)/bin/python tests/reference/make_safetensors_fixtures.py
	$(VENV)/bin/python tests/reference/make_generate_fixtures.py --out tests/fixtures
	$(VENV)/bin/python tests/reference/make_beam_fixtures.py --out tests/fixtures
	$(VENV)/bin/python tests/reference/make_attention_fixtures.py
	$(VENV)/bin/python tests/reference/make_head_fixtures.py
	$(VENV)/bin/python tests/reference/make_prompt_fixtures.py
	$(VENV)/bin/python tests/reference/make_prompt_method_fixtures.py --cpeft $(BUILD)/cpeft
	$(VENV)/bin/python tests/reference/make_gguf_fixtures.py
	$(VENV)/bin/python tests/reference/make_encoder_fixtures.py
	$(VENV)/bin/python tests/reference/make_deberta_fixtures.py
	$(VENV)/bin/python tests/reference/make_deberta_model_fixtures.py
	$(VENV)/bin/python tests/reference/make_t5_fixtures.py --cpeft $(BUILD)/cpeft
	$(VENV)/bin/python tests/reference/make_bart_fixtures.py --cpeft $(BUILD)/cpeft
	$(VENV)/bin/python tests/reference/make_s2s_generate_fixtures.py
	$(VENV)/bin/python tests/reference/make_embed_fixtures.py
	$(VENV)/bin/python tests/reference/make_class_fixtures.py
	$(VENV)/bin/python tests/reference/make_class_train_fixtures.py
	$(VENV)/bin/python tests/reference/make_text_metric_fixtures.py
	$(VENV)/bin/python tests/reference/make_s2s_data_fixtures.py
	$(VENV)/bin/python tests/reference/make_s2s_train_fixtures.py
	$(VENV)/bin/python tests/reference/make_chat_fixtures.py
	$(VENV)/bin/python tests/reference/make_sft_fixtures.py

# PEFT's LoRA test matrix on the tiny models, both directions (PEFT-saved adapters read by cpeft,
# cpeft-written adapters and merged checkpoints read by PEFT / transformers): one line per case and a
# summary; exits 1 on a failure. Not part of `make test` (needs the venv). SWEEP_ARGS="--only 'llama_*'".
SWEEP_ARGS ?=
sweep: all $(BUILD)/sweep/sweep_logits
	@test -x $(VENV)/bin/python || { echo "make sweep needs the reference venv (make reference-venv)"; exit 1; }
	$(VENV)/bin/python tests/reference/sweep_peft_matrix.py --cpeft $(BUILD)/cpeft --driver $(BUILD)/sweep/sweep_logits $(SWEEP_ARGS)

$(BUILD)/sweep/sweep_logits: tests/reference/sweep_logits.c $(BUILD)/libcpeft.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libcpeft.a $(LIBS_ALL)

# ---- fuzzing (clang + libFuzzer) --------------------------------------------------------------------
# The library is built once with clang, coverage instrumentation and ASan + UBSan that stop at the first
# report; scripts/fuzz.sh runs each target for FUZZ_SECONDS (new inputs go to build-fuzz/corpus/NAME,
# the committed corpora are only read), prints its coverage and fails on any crash, report or leak.
# OpenMP pragmas are off there (clang with libgomp): the fuzzed code runs on one thread.
FUZZ_SECONDS ?= 60
FUZZ_NAMES := $(patsubst tests/fuzz/%.c,%,$(FUZZ_SRC))
FUZZ_OPT := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
fuzz:
	@scripts/install-deps.sh --with-fuzz
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang OMPFLAGS=-fopenmp=libgomp \
	    OPT="$(FUZZ_OPT) -fsanitize=fuzzer-no-link" $(FUZZ_NAMES:%=build-fuzz/libfuzzer/%)
	@scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_NAMES)

$(BUILD)/libfuzzer/%: tests/fuzz/%.c $(BUILD)/libcpeft.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer -o $@ $< $(BUILD)/libcpeft.a $(LIBS_ALL)

bench: all $(BENCH_BIN) reference-venv
	bench/run.sh

clean:
	rm -rf build build-asan build-fuzz build-nompi

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
