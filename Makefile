# libmomento-im build. `make` builds the libraries and tools into build/,
# `make check` runs every test, `make deps` installs missing Debian packages.

# One source of truth for the version and the soname: include/momento/common.h
# (docs/ABI.md says when each changes).
version_field = $(shell sed -n 's/^\#define $(1) \([0-9][0-9]*\)$$/\1/p' include/momento/common.h)
VERSION_MAJOR := $(call version_field,MIM_VERSION_MAJOR)
VERSION_MINOR := $(call version_field,MIM_VERSION_MINOR)
VERSION_PATCH := $(call version_field,MIM_VERSION_PATCH)
ABI_VERSION := $(call version_field,MIM_ABI_VERSION)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/libmomento-im
CMAKEDIR ?= $(LIBDIR)/cmake/momento-im

CC ?= cc
PKG_CONFIG ?= pkg-config
PROTOC_C ?= protoc-c

comma := ,
# TRANSPORT=h2 (default): the library's own gRPC client on libnghttp2 + OpenSSL.
# TRANSPORT=grpc: the gRPC core transport (build/transport-grpc/), kept as
# the reference (bench compares both).
DEFAULT_TRANSPORT := h2
TRANSPORT ?= $(DEFAULT_TRANSPORT)
ifneq ($(filter-out h2 grpc,$(TRANSPORT)),)
$(error TRANSPORT must be h2 or grpc, not '$(TRANSPORT)')
endif
# Instrumented builds and the reference transport live beside the normal build so
# switching never mixes objects.
BASE_B := $(if $(SANITIZE),build/sanitize-$(subst $(comma),-,$(SANITIZE)),build)
B ?= $(if $(filter-out $(DEFAULT_TRANSPORT),$(TRANSPORT)),$(BASE_B)/transport-$(TRANSPORT),$(BASE_B))
GEN := $(B)/gen
OBJ := $(B)/obj

# Libraries the library itself links against.
TRANSPORT_PKGS := $(if $(filter grpc,$(TRANSPORT)),grpc,libnghttp2)
LIB_PKGS := $(TRANSPORT_PKGS) libprotobuf-c openssl jansson
# libcurl serves token URLs only: lib/curl_dl.c dlopen()s it on the first token fetch, so
# the library needs its headers but does not link it (nor does the .pc require it).
CURL_PKG := libcurl
# mim-local needs no HTTP client and no JSON: its own objects, the common floor and the
# generated protobuf code link against these only.
SERVER_PKGS := grpc libprotobuf-c openssl
# Test helpers (tests/support) drive gRPC core directly, whatever the transport.
TEST_PKGS := cmocka grpc
# Loop-mode tests (tests/unit/test_h2_loop_*.c) drive clients from libuv and libevent.
TEST_PKGS += $(if $(filter h2,$(TRANSPORT)),libuv libevent,)

# SANITIZE=address,undefined or SANITIZE=thread builds everything instrumented.
SANITIZE ?=
SAN_FLAGS := $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer,)
# A UBSan report must fail the test that hit it, not scroll past: make every check fatal.
SAN_FLAGS += $(if $(findstring undefined,$(SANITIZE)),-fno-sanitize-recover=all,)

# `make V=1` shows every command line; by default one short line per step.
V ?=
Q := $(if $(V),,@)

OPT ?= -O2
WARN := -Wall -Wextra -Werror
CFLAGS ?= $(OPT) -g
ALL_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARN) -fPIC \
  -Iinclude -Ilib -Icommon -isystem $(GEN) $(SAN_FLAGS) $(CFLAGS) \
  $(if $(filter grpc,$(TRANSPORT)),-DMIM_TRANSPORT_GRPC,) \
  $(shell $(PKG_CONFIG) --cflags $(LIB_PKGS) $(CURL_PKG) 2>/dev/null)
LIB_LDLIBS := $(shell $(PKG_CONFIG) --libs $(LIB_PKGS) 2>/dev/null) -lpthread -ldl
SERVER_LDLIBS := $(shell $(PKG_CONFIG) --libs $(SERVER_PKGS) 2>/dev/null) -lpthread
TEST_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LDLIBS := $(shell $(PKG_CONFIG) --libs $(TEST_PKGS) 2>/dev/null)
LDFLAGS_ALL := $(SAN_FLAGS) $(LDFLAGS)

PROTOS := $(wildcard lib/proto/*.proto)
PROTO_C := $(patsubst lib/proto/%.proto,$(GEN)/%.pb-c.c,$(PROTOS))
PROTO_H := $(PROTO_C:.c=.h)
PROTO_OBJ := $(patsubst $(GEN)/%.c,$(OBJ)/gen/%.o,$(PROTO_C))
# The generated code on its own, for mim-local (the library carries the objects itself).
PROTO_LIB := $(B)/lib/libmim-proto.a

# The floor shared by the library and mim-local (common/): clocks, UTF-8, base64,
# backoff. No library or server state, so both can link it.
COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(patsubst common/%.c,$(OBJ)/common/%.o,$(COMMON_SRC))
COMMON_LIB := $(B)/lib/libmim-common.a

# lib/loop: the event loop (own thread or the application's); lib/h2: gRPC over HTTP/2 on
# libnghttp2 + OpenSSL; lib/transport/: the one implementation of lib/transport.h chosen.
TRANSPORT_SRC := lib/transport/sync_result.c $(if $(filter grpc,$(TRANSPORT)),lib/transport/grpc.c,\
  $(wildcard lib/transport/h2.c lib/h2/*.c lib/loop/*.c))
LIB_SRC := $(wildcard lib/*.c) $(TRANSPORT_SRC)
LIB_OWN_OBJ := $(patsubst lib/%.c,$(OBJ)/lib/%.o,$(LIB_SRC))
# Both libmomento-im.so and libmomento-im.a are self contained: a user links one file,
# so they take the common and generated objects in, not the two archives.
LIB_OBJ := $(LIB_OWN_OBJ) $(COMMON_OBJ) $(PROTO_OBJ)

SONAME := libmomento-im.so.$(ABI_VERSION)
SHARED := $(B)/lib/libmomento-im.so.$(VERSION)
STATIC := $(B)/lib/libmomento-im.a

SERVER_SRC := $(wildcard server/*.c)
SERVER_OBJ := $(patsubst server/%.c,$(OBJ)/server/%.o,$(SERVER_SRC))
SERVER_BIN := $(B)/bin/mim-local

# Each tests/unit/test_*.c is one cmocka program linked against the static library
# (so internal functions are reachable).
# tests/unit/test_h2_*.c test the HTTP/2 transport's own parts (lib/h2, lib/loop, loop
# mode) and exist only in TRANSPORT=h2 builds.
UNIT_SRC := $(filter-out $(if $(filter grpc,$(TRANSPORT)),tests/unit/test_h2_%.c,),\
  $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
# Shared helpers for tests (starting mim-local on a free port, etc.).
TESTLIB_SRC := $(wildcard tests/support/*.c)
TESTLIB_OBJ := $(patsubst tests/support/%.c,$(OBJ)/tests/support/%.o,$(TESTLIB_SRC))

# Each examples/*.c is one program linked against the static library.
# examples/loop_*.c drive a client from libuv / libevent: loop mode needs TRANSPORT=h2.
EXAMPLE_SRC := $(filter-out $(if $(filter grpc,$(TRANSPORT)),examples/loop_%.c,),\
  $(wildcard examples/*.c))
EXAMPLE_BIN := $(patsubst examples/%.c,$(B)/examples/%,$(EXAMPLE_SRC))
# Extra packages examples may use (token-vendor serves HTTP with libmicrohttpd).
EXAMPLE_LDLIBS := $(shell $(PKG_CONFIG) --libs libmicrohttpd 2>/dev/null)
# The loop-mode examples link the loop library the application would bring.
$(B)/examples/loop_uv: EXAMPLE_LDLIBS += $(shell $(PKG_CONFIG) --libs libuv 2>/dev/null)
$(B)/examples/loop_event: EXAMPLE_LDLIBS += $(shell $(PKG_CONFIG) --libs libevent 2>/dev/null)
# The terminal chat draws its screen with ncurses (wide-character build, for UTF-8).
$(B)/examples/chat: EXAMPLE_LDLIBS += $(shell $(PKG_CONFIG) --libs ncursesw 2>/dev/null)

.PHONY: all lib server tests examples check deps demo install uninstall clean format lint docs man
all: lib server examples
examples: $(EXAMPLE_BIN)

lib: $(SHARED) $(STATIC) $(B)/lib/libmomento-im.pc $(COMMON_LIB) $(PROTO_LIB)
server: $(SERVER_BIN)
tests: $(UNIT_BIN)

$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: lib/proto/%.proto $(PROTOS)
	@mkdir -p $(GEN)
	@$(if $(V),:,echo "  PROTOC $<")
	$(Q)$(PROTOC_C) --c_out=$(GEN) -Ilib/proto $<

# Generated headers must exist before anything includes them.
$(LIB_OBJ) $(SERVER_OBJ) $(TESTLIB_OBJ) $(UNIT_BIN): | $(PROTO_H)

$(OBJ)/gen/%.o: $(GEN)/%.c $(PROTO_H)
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC     $<")
	$(Q)$(CC) $(ALL_CFLAGS) -fvisibility=hidden -w -c -o $@ $<

$(OBJ)/lib/%.o: lib/%.c
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC     $<")
	$(Q)$(CC) $(ALL_CFLAGS) -DMIM_BUILDING_LIBRARY -fvisibility=hidden -MMD -MP -c -o $@ $<

# Hidden like the library's own objects: libmomento-im.so exports only the mim_ API.
$(OBJ)/common/%.o: common/%.c
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC     $<")
	$(Q)$(CC) $(ALL_CFLAGS) -fvisibility=hidden -MMD -MP -c -o $@ $<

# Without -Ilib: mim-local includes only its own headers, common/ and the generated code.
$(OBJ)/server/%.o: server/%.c
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC     $<")
	$(Q)$(CC) $(filter-out -Ilib,$(ALL_CFLAGS)) -Iserver -MMD -MP -c -o $@ $<

$(OBJ)/tests/support/%.o: tests/support/%.c
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC     $<")
	$(Q)$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) -Itests/support -MMD -MP -c -o $@ $<

$(SHARED): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  LD     $@")
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(LDFLAGS_ALL) -o $@ $^ $(LIB_LDLIBS)
	$(Q)ln -sf libmomento-im.so.$(VERSION) $(B)/lib/$(SONAME)
	$(Q)ln -sf $(SONAME) $(B)/lib/libmomento-im.so

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@
	@$(if $(V),:,echo "  AR     $@")
	$(Q)ar rcs $@ $^

$(COMMON_LIB): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@
	@$(if $(V),:,echo "  AR     $@")
	$(Q)ar rcs $@ $^

$(PROTO_LIB): $(PROTO_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@
	@$(if $(V),:,echo "  AR     $@")
	$(Q)ar rcs $@ $^

# The .pc names install paths, so `make install` writes it for the PREFIX it is given;
# the copy in build/ is for the default PREFIX.
PC_SED = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@REQUIRES@|$(LIB_PKGS)|g' pkgconfig/libmomento-im.pc.in

$(B)/lib/libmomento-im.pc: pkgconfig/libmomento-im.pc.in Makefile
	@mkdir -p $(dir $@)
	$(Q)$(PC_SED) > $@

$(SERVER_BIN): $(SERVER_OBJ) $(COMMON_LIB) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  LD     $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $(SERVER_OBJ) $(COMMON_LIB) $(PROTO_LIB) $(SERVER_LDLIBS)

$(B)/tests/%: tests/unit/%.c $(TESTLIB_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  LD     $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) -Itests/support -o $@ $< $(TESTLIB_OBJ) $(STATIC) \
	  $(LDFLAGS_ALL) $(LIB_LDLIBS) $(TEST_LDLIBS) $(TEST_EXTRA_LDLIBS)
# test_token_provider calls the token vendor with libcurl itself; every other test runs
# without libcurl linked, as applications do (test_curl_dl checks when it gets loaded).
$(B)/tests/test_token_provider: TEST_EXTRA_LDLIBS := $(shell $(PKG_CONFIG) --libs $(CURL_PKG) 2>/dev/null)

$(B)/examples/%: examples/%.c $(STATIC)
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  LD     $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(STATIC) $(LDFLAGS_ALL) $(LIB_LDLIBS) $(EXAMPLE_LDLIBS)

# The demo: installs missing packages, builds, starts mim-local on a free port and runs
# a scripted chat.
demo:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@MIM_BUILD=$(B) scripts/demo.sh

# Installs missing packages, builds, runs every test; the last line is "N passed, N failed".
# The build runs in a sub-make so pkg-config flags are read after the packages exist.
check:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory all tests
	@MIM_BUILD=$(B) SANITIZE=$(SANITIZE) tests/run-all.sh

# Every C test program under valgrind memcheck, and every mim-local those tests start
# (tests/run-all.sh with MIM_VALGRIND=1: memcheck errors and definite leaks fail a test).
.PHONY: check-valgrind
check-valgrind:
	@scripts/install-deps.sh
	@command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)"; exit 1; }
	@$(MAKE) --no-print-directory all tests
	@MIM_BUILD=$(B) MIM_VALGRIND=1 tests/run-all.sh

# The issue-15 "done when" at full size: 5 senders x 200 messages through mim-local at
# hosted Momento's rates (about 60 s; make check runs the same test with 40 each).
.PHONY: check-rate-chat
check-rate-chat:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory all tests
	@MIM_BUILD=$(B) MIM_RUN_ONLY=test_rate_chat MIM_RATE_CHAT_MESSAGES=200 tests/run-all.sh

deps:
	@scripts/install-deps.sh

# ---- install (docs/man, cmake/, scripts/apidoc.py). The example tools are installed
# under names that cannot clash with other packages' (chat -> mim-chat); tour and the
# loop_* examples stay examples.
TOOLS := chat token-vendor mint-token moderator
MAN1 := $(wildcard docs/man/*.1)
HEADERS := $(wildcard include/momento/*.h)
# Section 3 pages: one per MIM_API function, from the comments above the declarations.
MAN3_STAMP := $(B)/docs/man3/.stamp
# `make install INSTALL_HTML=0` skips the Doxygen reference (and needs no doxygen).
INSTALL_HTML ?= 1
CMAKE_SED = sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@VERSION_MAJOR@|$(VERSION_MAJOR)|g' \
	    -e 's|@VERSION_MINOR@|$(VERSION_MINOR)|g' -e 's|@SONAME@|$(SONAME)|g' \
	    -e 's|@SHARED_NAME@|$(notdir $(SHARED))|g' \
	    -e "s|@LIBDIR_FROM_CMAKEDIR@|$$(realpath -m --relative-to=$(CMAKEDIR) $(LIBDIR))|g" \
	    -e "s|@INCLUDEDIR_FROM_CMAKEDIR@|$$(realpath -m --relative-to=$(CMAKEDIR) $(INCLUDEDIR))|g" \
	    -e "s|@SIZEOF_VOID_P@|$$(echo | $(CC) -dM -E - | sed -n 's/^\#define __SIZEOF_POINTER__ //p')|g"

man: $(MAN3_STAMP)
$(MAN3_STAMP): scripts/apidoc.py docs/man/libmomento-im.3.in $(HEADERS) Makefile
	@rm -rf $(dir $@) && mkdir -p $(dir $@)
	@$(if $(V),:,echo "  APIDOC $(dir $@)")
	$(Q)python3 scripts/apidoc.py man $(dir $@) $(VERSION) docs/man/libmomento-im.3.in $(HEADERS)
	$(Q)touch $@

# The HTML API reference: Doxygen reads the headers through scripts/apidoc.py, which turns
# their /* */ comments into doc comments.
docs: $(B)/docs/html/index.html
$(B)/docs/html/index.html: docs/Doxyfile.in scripts/apidoc.py $(HEADERS) Makefile
	@command -v doxygen >/dev/null || { echo "make docs needs doxygen: apt-get install doxygen (or make deps)"; exit 1; }
	@rm -rf $(B)/docs/html && mkdir -p $(B)/docs
	@$(if $(V),:,echo "  DOXYGEN $(B)/docs/html")
	$(Q)sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@OUT@|$(B)/docs|g' -e 's|@INPUT@|$(HEADERS)|g' \
	  docs/Doxyfile.in > $(B)/docs/Doxyfile
	$(Q)doxygen $(B)/docs/Doxyfile > $(B)/docs/doxygen.log 2>&1 || { cat $(B)/docs/doxygen.log; exit 1; }

install: all $(MAN3_STAMP) $(if $(filter 1,$(INSTALL_HTML)),docs)
	install -d $(DESTDIR)$(INCLUDEDIR)/momento $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(BINDIR) \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(CMAKEDIR)
	install -m 644 $(HEADERS) $(DESTDIR)$(INCLUDEDIR)/momento/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf libmomento-im.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libmomento-im.so
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	$(PC_SED) > $(DESTDIR)$(LIBDIR)/pkgconfig/libmomento-im.pc
	chmod 644 $(DESTDIR)$(LIBDIR)/pkgconfig/libmomento-im.pc
	$(CMAKE_SED) cmake/momento-imConfig.cmake.in > $(DESTDIR)$(CMAKEDIR)/momento-imConfig.cmake
	$(CMAKE_SED) cmake/momento-imConfigVersion.cmake.in > $(DESTDIR)$(CMAKEDIR)/momento-imConfigVersion.cmake
	chmod 644 $(DESTDIR)$(CMAKEDIR)/*.cmake
	install -m 755 $(SERVER_BIN) $(DESTDIR)$(BINDIR)/mim-local
	for t in $(TOOLS); do install -m 755 $(B)/examples/$$t $(DESTDIR)$(BINDIR)/mim-$$t || exit 1; done
	install -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(dir $(MAN3_STAMP))*.3 $(DESTDIR)$(MANDIR)/man3/
	$(if $(filter 1,$(INSTALL_HTML)),install -d $(DESTDIR)$(DOCDIR)/html && \
	  cp -R $(B)/docs/html/. $(DESTDIR)$(DOCDIR)/html/ && chmod -R u=rwX$(comma)go=rX $(DESTDIR)$(DOCDIR))

# Removes what install added, whichever INSTALL_HTML it ran with, also without a build/.
uninstall:
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/momento/,$(notdir $(HEADERS)))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/momento 2>/dev/null
	rm -f $(DESTDIR)$(LIBDIR)/libmomento-im.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	  $(DESTDIR)$(LIBDIR)/libmomento-im.so $(DESTDIR)$(LIBDIR)/libmomento-im.a \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/libmomento-im.pc
	rm -f $(DESTDIR)$(CMAKEDIR)/momento-imConfig.cmake $(DESTDIR)$(CMAKEDIR)/momento-imConfigVersion.cmake
	-rmdir $(DESTDIR)$(CMAKEDIR) 2>/dev/null
	rm -f $(DESTDIR)$(BINDIR)/mim-local $(addprefix $(DESTDIR)$(BINDIR)/mim-,$(TOOLS))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(MAN1))) $(DESTDIR)$(MANDIR)/man3/libmomento-im.3
	rm -f $$(python3 scripts/apidoc.py names $(HEADERS) | sed 's|.*|$(DESTDIR)$(MANDIR)/man3/&.3|')
	rm -rf $(DESTDIR)$(DOCDIR)/html
	-rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null

lint: $(PROTO_H)
	scripts/lint.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(B)

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)

# ---- fuzzing: libFuzzer harnesses fuzz/fuzz_*.c built with clang into $(B)/fuzz/;
# `make fuzz FUZZ_SECONDS=N` runs each N seconds (tests/scripts/fuzz.sh; crashes are
# kept in $(B)/fuzz/crashes/). The server is linked without main.c and rpc.c:
# fuzz/fake_rpc.c stands in for the gRPC call layer.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FZ := $(B)/fuzz
FUZZ_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARN) -g -O1 \
  -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
  -fno-omit-frame-pointer -Iinclude -Ilib -Icommon -Iserver -isystem $(GEN) \
  $(shell $(PKG_CONFIG) --cflags $(LIB_PKGS) $(CURL_PKG) 2>/dev/null)
FUZZ_LIBA := $(FZ)/libmim-fuzz.a
# lib/h2 and lib/loop are always in the fuzz library (once), whatever the TRANSPORT, so
# fuzz_grpc_wire and fuzz_h2_client run in every build; lib/transport/h2.c is not (it
# would clash with the gRPC core transport).
FUZZ_LIB_SRC := $(sort $(LIB_SRC) $(wildcard lib/h2/*.c) $(wildcard lib/loop/*.c))
# The server harnesses need gRPC core's slices, the client ones nghttp2: both, whatever
# the transport.
FUZZ_LDLIBS := $(LIB_LDLIBS) $(shell $(PKG_CONFIG) --libs grpc libnghttp2 2>/dev/null)
FUZZ_LIBA_OBJ := $(patsubst lib/%.c,$(FZ)/obj/lib/%.o,$(FUZZ_LIB_SRC)) \
  $(patsubst server/%.c,$(FZ)/obj/server/%.o,$(filter-out server/main.c server/rpc.c,$(SERVER_SRC))) \
  $(FZ)/obj/fake_rpc.o
# The same two archives as the normal build, instrumented: linked after FUZZ_LIBA.
FUZZ_COMMON_LIB := $(FZ)/libmim-common.a
FUZZ_COMMON_OBJ := $(patsubst common/%.c,$(FZ)/obj/common/%.o,$(COMMON_SRC))
FUZZ_PROTO_LIB := $(FZ)/libmim-proto.a
FUZZ_PROTO_OBJ := $(patsubst $(GEN)/%.c,$(FZ)/obj/gen/%.o,$(PROTO_C))
FUZZ_BIN := $(patsubst fuzz/%.c,$(FZ)/%,$(wildcard fuzz/fuzz_*.c))

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BIN)
fuzz:
	@MIM_BUILD=$(B) MIM_FUZZ_SECONDS=$(FUZZ_SECONDS) tests/scripts/fuzz.sh

$(FUZZ_LIBA_OBJ) $(FUZZ_PROTO_OBJ): | $(PROTO_H)
$(FZ)/obj/gen/%.o: $(GEN)/%.c $(PROTO_H)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -w -c -o $@ $<
$(FZ)/obj/lib/%.o: lib/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DMIM_BUILDING_LIBRARY -MMD -MP -c -o $@ $<
$(FZ)/obj/server/%.o: server/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<
$(FZ)/obj/common/%.o: common/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<
$(FZ)/obj/fake_rpc.o: fuzz/fake_rpc.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<
$(FUZZ_LIBA): $(FUZZ_LIBA_OBJ)
	$(Q)rm -f $@
	ar rcs $@ $^
$(FUZZ_COMMON_LIB): $(FUZZ_COMMON_OBJ)
	$(Q)rm -f $@
	ar rcs $@ $^
$(FUZZ_PROTO_LIB): $(FUZZ_PROTO_OBJ)
	$(Q)rm -f $@
	ar rcs $@ $^
$(FZ)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_LIBA) $(FUZZ_COMMON_LIB) $(FUZZ_PROTO_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIBA) $(FUZZ_COMMON_LIB) \
	  $(FUZZ_PROTO_LIB) $(FUZZ_LDLIBS)
-include $(shell find $(FZ)/obj -name '*.d' 2>/dev/null)

# ---- bench/ (issue 7): `make bench` runs every system and writes bench/results/latest.*;
# `make bench-smoke` runs our stack only with tiny counts (part of `make check` via
# tests/scripts/bench_smoke.sh). bench/run.sh installs the peers' Debian packages when
# missing and then builds the peer programs through `bench-peers` (pkg-config is read then).
BENCH_B := $(B)/bench
BENCH_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARN) -O2 -g -Iinclude -Ilib -Icommon -Ibench \
  $(SAN_FLAGS)
.PHONY: bench bench-smoke bench-build bench-peers bench-footprint
# Shared libraries, RSS, threads and RSS per idle session of this build (bench/footprint.sh).
bench-footprint: lib server
	bench/footprint.sh $(B)
# The build dir of this TRANSPORT (bench/run.sh builds the other transport's row there).
.PHONY: print-build-dir
print-build-dir:
	@echo $(B)
bench-build: $(BENCH_B)/bench_mim
bench-peers: $(BENCH_B)/bench_redis $(BENCH_B)/bench_nats
bench: lib server
	MAKE="$(MAKE)" MIM_BUILD=$(B) bench/run.sh full
bench-smoke: lib server
	MAKE="$(MAKE)" MIM_BUILD=$(B) bench/run.sh smoke
$(BENCH_B)/bench_mim: bench/bench_mim.c bench/bench_common.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(STATIC) $(LIB_LDLIBS) -lm
# bench_common.h uses the common floor's clock (timed waits): the peers link it too.
$(BENCH_B)/bench_redis: bench/bench_redis.c bench/bench_common.h $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(shell $(PKG_CONFIG) --cflags hiredis 2>/dev/null) -o $@ $< \
	  $(COMMON_LIB) $(shell $(PKG_CONFIG) --libs hiredis 2>/dev/null) -lpthread
$(BENCH_B)/bench_nats: bench/bench_nats.c bench/bench_common.h $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(shell $(PKG_CONFIG) --cflags libnats 2>/dev/null) -o $@ $< \
	  $(COMMON_LIB) $(shell $(PKG_CONFIG) --libs libnats 2>/dev/null) -lpthread
