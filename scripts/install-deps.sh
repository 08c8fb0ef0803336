#!/usr/bin/env bash
# Installs the Debian packages libmomento-im needs, but only those that are missing
# (checked with pkg-config and command -v). Runs apt-get as root, or via sudo.
set -euo pipefail

missing=()
need_pc() { pkg-config --exists "$1" 2>/dev/null || missing+=("$2"); }
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }

need_cmd pkg-config pkg-config
need_cmd cc gcc
need_cmd make make
need_pc grpc libgrpc-dev
# The library's HTTP/2 transport (gRPC core above is for mim-local and TRANSPORT=grpc).
need_pc libnghttp2 libnghttp2-dev
need_pc libprotobuf-c libprotobuf-c-dev
need_cmd protoc-c protobuf-c-compiler
need_pc openssl libssl-dev
need_pc libcurl libcurl4-openssl-dev
need_pc libmicrohttpd libmicrohttpd-dev
need_pc jansson libjansson-dev
need_pc cmocka libcmocka-dev
# Loop mode: the libuv / libevent adapters' tests and examples.
need_pc libuv libuv1-dev
need_pc libevent libevent-dev
need_cmd openssl openssl
# examples/chat draws with ncurses and is tested in a real terminal
# (tests/scripts/chat_tmux.sh; faketime dates a message two days back).
need_pc ncursesw libncurses-dev
need_cmd tmux tmux
need_cmd faketime faketime
need_cmd curl curl # runs token-vendor --help's example
need_cmd c++ g++
# Fuzzing (make check runs each harness briefly): clang with its libFuzzer runtime.
need_cmd clang clang
need_cmd clang-tidy clang-tidy
need_cmd cppcheck cppcheck
if command -v clang >/dev/null 2>&1 && [ ! -e "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]; then
  missing+=(libclang-rt-14-dev)
fi
# Interop tests with the official Momento Node.js SDK.
need_cmd node nodejs
need_cmd npm npm
need_cmd pytest-3 python3-pytest
# make install: the HTML API reference, man pages read back and a CMake consumer (tests).
need_cmd doxygen doxygen
need_cmd man man-db
need_cmd cmake cmake
# The Python binding's test installs it into a fresh venv, offline, and type-checks it
# (python.sh).
if ! /usr/bin/python3 -c 'import ensurepip, setuptools, wheel, mypy' >/dev/null 2>&1 ||
  ! ls /usr/share/python-wheels/pip-*.whl >/dev/null 2>&1; then
  missing+=(python3-venv python3-setuptools python3-wheel python3-mypy)
fi
for extra in ${MIM_EXTRA_DEPS:-}; do
  IFS=: read -r cmd pkg <<<"$extra"
  need_cmd "$cmd" "$pkg"
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all present"
  exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
