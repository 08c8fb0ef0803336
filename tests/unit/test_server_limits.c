/* mim-local under attacks on the transport rather than the API: a gzip bomb, a rapid
 * reset flood (HEADERS + RST_STREAM pairs) and file-descriptor exhaustion. Each test
 * starts its own server on loopback, keeps a Ping going on a connection of its own
 * during the attack, and checks that the server answers it in time and that its memory
 * (VmRSS) comes back afterwards. Counts and times are bounded; under valgrind the
 * floods are smaller, the checks the same. */
#define _GNU_SOURCE /* prlimit */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "raw_client.h"
#include "time_scale.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#define PING_BOUND_MS 100 /* the bound, scaled by test_time_scale() */
#define M_FETCH "/cache_client.Scs/ListFetch"
#define M_PING "/cache_client.Ping/Ping" /* registered by the server: the path that leaked */

/* ---- a Ping loop on its own connection ---- */

typedef struct pinger {
  pthread_t thread;
  mim_transport *t;
  atomic_bool stop;
  atomic_long max_ms; /* slowest answer */
  atomic_long pings, failures;
  atomic_long slow; /* answers slower than the bound */
} pinger;

static void *ping_loop(void *arg) {
  pinger *p = arg;
  while (!atomic_load(&p->stop)) {
    int64_t t0 = cmn_mono_ms();
    mim_status st = raw_ping(p->t);
    long ms = (long)(cmn_mono_ms() - t0);
    atomic_fetch_add(st == MIM_OK ? &p->pings : &p->failures, 1);
    if (ms > atomic_load(&p->max_ms)) {
      atomic_store(&p->max_ms, ms);
    }
    if (ms > (long)PING_BOUND_MS * test_time_scale()) {
      atomic_fetch_add(&p->slow, 1);
    }
    usleep(5000);
  }
  return NULL;
}

static void pinger_start(pinger *p, const mim_local *srv) {
  memset(p, 0, sizeof *p);
  p->t = raw_connect_own(srv, NULL);
  assert_non_null(p->t);
  assert_int_equal(raw_ping(p->t), MIM_OK); /* connected before the attack starts */
  assert_int_equal(pthread_create(&p->thread, NULL, ping_loop, p), 0);
}

/* False under sanitizers and valgrind. There the allocator is not glibc's (nothing is
 * trimmed, and RSS holds shadow memory), so the memory checks are left out; and the
 * server runs several times slower, see pinger_check. */
static bool plain_build(void) {
  const char *san = getenv("SANITIZE");
  return !getenv("MIM_VALGRIND") && !getenv("MIM_TEST_SLOW") && !(san && *san);
}

/* True while more threads wait to run than the machine has cores (1-minute load
 * average): then a thread of the server can be kept off the CPU for seconds whatever
 * it does, and a latency bound says nothing about the server. */
static bool machine_oversubscribed(double *load) {
  FILE *f = fopen("/proc/loadavg", "r");
  *load = 0;
  if (!f) {
    return false;
  }
  bool got = fscanf(f, "%lf", load) == 1;
  fclose(f);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  return got && cores > 0 && *load > (double)cores;
}

/* Whether Ping times say something about the server, else why not (printed): not while
 * the machine is oversubscribed, not under valgrind, and not after a cpu_bound attack (one whose
 * per-frame CPU gRPC core 1.51 cannot shed: the rapid reset) on an instrumented server (sanitizers,
 * valgrind spend 5-50x that CPU and work through the backlog for seconds). The plain build checks
 * them. */
static bool latency_checked(const char *what, bool cpu_bound) {
  double load = 0;
  if (machine_oversubscribed(&load)) {
    printf("%s: load average %.1f exceeds the cores: latency not checked\n", what, load);
    return false;
  }
  if (cpu_bound && !plain_build()) {
    printf("%s: instrumented server: latency not checked\n", what);
    return false;
  }
  if (getenv("MIM_VALGRIND")) {
    /* Under memcheck the server's own work (tearing down 300 connections after the fd
     * attack) takes 0.3-1 s however it is written: the bound would time valgrind. The
     * sanitizer builds (3x) and the plain build still check it. */
    printf("%s: valgrind server: latency not checked\n", what);
    return false;
  }
  return true;
}

/* Stops the loop and checks every Ping during the attack was answered, and in time
 * where latency_checked says so. */
static void pinger_check(pinger *p, const char *what, bool cpu_bound) {
  int64_t deadline = cmn_mono_ms() + 10000L * test_time_scale();
  while (atomic_load(&p->pings) + atomic_load(&p->failures) < 3 && cmn_mono_ms() < deadline) {
    usleep(5000); /* a short attack: still see a few answers */
  }
  atomic_store(&p->stop, true);
  pthread_join(p->thread, NULL);
  mim_transport_free(p->t);
  long bound = (long)PING_BOUND_MS * test_time_scale();
  printf("%s: %ld pings, %ld failed, %ld slower than %ld ms, slowest %ld ms\n", what,
         atomic_load(&p->pings), atomic_load(&p->failures), atomic_load(&p->slow), bound,
         atomic_load(&p->max_ms));
  assert_true(atomic_load(&p->pings) > 0);
  assert_int_equal(atomic_load(&p->failures), 0);
  if (latency_checked(what, cpu_bound)) {
    if (cpu_bound) {
      /* gRPC core 1.51 cannot shed a flood's per-frame CPU (server/README.md, "Rapid
       * reset"): on this 2-core machine one Ping of a run is occasionally held for
       * seconds behind the backlog (seen with both client transports). The rest must
       * stay fast; before the fix every Ping was held and one missed its deadline. */
      assert_true(atomic_load(&p->slow) <= 1);
    } else {
      assert_true(atomic_load(&p->max_ms) <= bound);
    }
  }
}

/* A Ping on a fresh connection, answered (and within the bound where latency_checked
 * says so: cpu_bound as for pinger_check). */
static void assert_fresh_ping(const mim_local *srv, bool cpu_bound) {
  mim_transport *t = raw_connect_own(srv, NULL);
  assert_non_null(t);
  int64_t t0 = cmn_mono_ms();
  mim_status st = raw_ping(t);
  long ms = (long)(cmn_mono_ms() - t0);
  mim_transport_free(t);
  printf("fresh ping: status %d in %ld ms\n", (int)st, ms);
  assert_int_equal(st, MIM_OK);
  if (latency_checked("fresh ping", cpu_bound)) {
    assert_true(ms <= (long)PING_BOUND_MS * test_time_scale());
  }
}

/* Waits (bounded) until the server's RSS is back within 10 % of base; returns it. */
static long rss_settle(const mim_local *srv, long base_kib) {
  long rss = raw_proc_kib(srv->pid, "VmRSS");
  int64_t deadline = cmn_mono_ms() + 5000L * test_time_scale();
  while (rss > base_kib + base_kib / 10 && cmn_mono_ms() < deadline) {
    usleep(100000);
    rss = raw_proc_kib(srv->pid, "VmRSS");
  }
  return rss;
}

static void assert_rss_back(const mim_local *srv, long base_kib, const char *what) {
  long peak = raw_proc_kib(srv->pid, "VmHWM");
  long rss = rss_settle(srv, base_kib);
  printf("%s: RSS %ld KiB before, peak %ld KiB, %ld KiB after\n", what, base_kib, peak, rss);
  assert_true(rss > 0);
  if (plain_build()) {
    assert_true(rss <= base_kib + base_kib / 10);
  }
}

/* The server's RSS once it served a few calls (so first-use allocations are in). */
static long warm_rss(const mim_local *srv) {
  mim_transport *t = raw_connect_own(srv, NULL);
  assert_non_null(t);
  for (int i = 0; i < 20; i++) {
    assert_int_equal(raw_ping(t), MIM_OK);
  }
  mim_transport_free(t);
  usleep(200000);
  return raw_proc_kib(srv->pid, "VmRSS");
}

static mim_local *start_server(void) {
  const char *caches[] = {"limits", NULL};
  mim_local_opts o = {.caches = caches, .log_level = "warn"};
  mim_local *srv = NULL;
  assert_int_equal(mim_local_start(&o, &srv), 0);
  return srv;
}

/* ---- gzip bomb ---- */

#define BOMB_CHUNK (1u << 20)
#define BOMB_CHUNKS 1024u /* 1 GiB inflated */

/* A gzip stream of BOMB_CHUNKS x BOMB_CHUNK zero bytes without deflating all of it:
 * after a full flush deflate starts afresh on a byte boundary, so the compressed form of
 * one flushed chunk can be repeated. The trailer's CRC is combined, not computed. */
static uint8_t *gzip_bomb(size_t *len) {
  uint8_t *zeros = calloc(1, BOMB_CHUNK);
  uint8_t *one = malloc(BOMB_CHUNK);
  assert_non_null(zeros);
  assert_non_null(one);
  z_stream z;
  memset(&z, 0, sizeof z);
  assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
  z.next_in = zeros;
  z.avail_in = BOMB_CHUNK;
  z.next_out = one;
  z.avail_out = BOMB_CHUNK;
  assert_int_equal(deflate(&z, Z_FULL_FLUSH), Z_OK);
  assert_int_equal(z.avail_in, 0);
  size_t one_len = BOMB_CHUNK - z.avail_out;
  deflateEnd(&z);
  uint32_t crc1 = (uint32_t)crc32(0, zeros, BOMB_CHUNK);
  free(zeros);

  size_t cap = 10 + one_len * BOMB_CHUNKS + 2 + 8;
  uint8_t *out = malloc(cap);
  assert_non_null(out);
  static const uint8_t header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
  memcpy(out, header, sizeof header);
  size_t at = sizeof header;
  uLong crc = 0;
  for (unsigned i = 0; i < BOMB_CHUNKS; i++) {
    memcpy(out + at, one, one_len);
    at += one_len;
    crc = crc32_combine(crc, crc1, BOMB_CHUNK);
  }
  out[at++] = 0x03; /* a final, empty fixed-Huffman block */
  out[at++] = 0x00;
  uint32_t size = (uint32_t)((uint64_t)BOMB_CHUNK * BOMB_CHUNKS);
  for (int i = 0; i < 4; i++) {
    out[at++] = (uint8_t)(crc >> (8 * i));
  }
  for (int i = 0; i < 4; i++) {
    out[at++] = (uint8_t)(size >> (8 * i));
  }
  free(one);
  *len = at;
  return out;
}

/* A unary call with an already gzip-compressed request, through gRPC core: the buffer is
 * marked compressed, so the channel (default algorithm gzip) sends it as it is, with
 * grpc-encoding: gzip and the compressed flag. Returns the status; detail gets the text. */
static grpc_status_code send_compressed(const char *endpoint, const uint8_t *gz, size_t len,
                                        char *detail, size_t n) {
  grpc_arg arg;
  memset(&arg, 0, sizeof arg);
  arg.type = GRPC_ARG_INTEGER;
  arg.key = (char *)GRPC_COMPRESSION_CHANNEL_DEFAULT_ALGORITHM;
  arg.value.integer = GRPC_COMPRESS_GZIP;
  grpc_channel_args args = {1, &arg};
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  grpc_channel *ch = grpc_channel_create(endpoint, creds, &args);
  grpc_channel_credentials_release(creds);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_slice method = grpc_slice_from_static_string(M_FETCH);
  gpr_timespec deadline = gpr_time_add(
      gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(30L * test_time_scale(), GPR_TIMESPAN));
  grpc_call *call =
      grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL, deadline, NULL);
  grpc_slice payload = grpc_slice_from_copied_buffer((const char *)gz, len);
  grpc_byte_buffer *bb = grpc_raw_compressed_byte_buffer_create(&payload, 1, GRPC_COMPRESS_GZIP);
  grpc_slice_unref(payload);
  grpc_metadata_array md, trailing;
  grpc_metadata_array_init(&md);
  grpc_metadata_array_init(&trailing);
  grpc_byte_buffer *resp = NULL;
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = bb;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &resp;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
  ops[5].data.recv_status_on_client.status = &status;
  ops[5].data.recv_status_on_client.status_details = &details;
  int tag = 1;
  assert_int_equal(grpc_call_start_batch(call, ops, 6, &tag, NULL), GRPC_CALL_OK);
  grpc_event ev = grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  assert_int_equal(ev.type, GRPC_OP_COMPLETE);
  snprintf(detail, n, "%.*s", (int)GRPC_SLICE_LENGTH(details),
           (const char *)GRPC_SLICE_START_PTR(details));
  grpc_slice_unref(details);
  grpc_byte_buffer_destroy(bb);
  if (resp) {
    grpc_byte_buffer_destroy(resp);
  }
  grpc_metadata_array_destroy(&md);
  grpc_metadata_array_destroy(&trailing);
  grpc_call_unref(call);
  grpc_channel_destroy(ch);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  return status;
}

/* A 1 MB request that inflates to 1 GiB is refused as it arrives, unauthenticated and
 * before anything decompresses it: the server's memory stays flat. */
static void test_gzip_bomb_refused(void **state) {
  (void)state;
  size_t len = 0;
  uint8_t *gz = gzip_bomb(&len);
  printf("gzip bomb: %zu bytes inflating to %u MiB\n", len, BOMB_CHUNKS * (BOMB_CHUNK >> 20));
  assert_true(len < (1u << 20) + 65536); /* under --max-message-bytes + 64 KiB */
  mim_local *srv = start_server();
  long base = warm_rss(srv);
  pinger p;
  pinger_start(&p, srv);
  char detail[256];
  grpc_status_code st = GRPC_STATUS_OK;
  for (int i = 0; i < 4; i++) { /* four in a row: one that slipped through would show */
    st = send_compressed(srv->endpoint, gz, len, detail, sizeof detail);
    printf("gzip bomb %d: status %d \"%s\"\n", i, (int)st, detail);
    if (st != GRPC_STATUS_UNIMPLEMENTED) {
      break;
    }
  }
  pinger_check(&p, "during the gzip bomb", false);
  long peak = raw_proc_kib(srv->pid, "VmHWM");
  printf("gzip bomb: RSS %ld KiB at the start, peak %ld KiB\n", base, peak);
  assert_int_equal(st, GRPC_STATUS_UNIMPLEMENTED);
  assert_non_null(strstr(detail, "gzip"));
  if (plain_build()) {
    assert_true(peak < base + 65536L); /* never inflated: the peak stays near the start */
  }
  assert_rss_back(srv, base, "gzip bomb");
  assert_fresh_ping(srv, false);
  assert_int_equal(mim_local_stop(srv), 0);
  free(gz);
}

/* ---- rapid reset ---- */

/* One HTTP/2 frame header (RFC 9113 4.1) at p. */
static uint8_t *h2_frame(uint8_t *p, uint32_t len, uint8_t type, uint8_t flags, uint32_t stream) {
  p[0] = (uint8_t)(len >> 16);
  p[1] = (uint8_t)(len >> 8);
  p[2] = (uint8_t)len;
  p[3] = type;
  p[4] = flags;
  p[5] = (uint8_t)(stream >> 24);
  p[6] = (uint8_t)(stream >> 16);
  p[7] = (uint8_t)(stream >> 8);
  p[8] = (uint8_t)stream;
  return p + 9;
}

/* HPACK literal without indexing, new name (RFC 7541 6.2.2); both strings < 127 bytes. */
static size_t hpack_literal(uint8_t *p, const char *name, const char *value) {
  size_t n = strlen(name), v = strlen(value);
  p[0] = 0x00;
  p[1] = (uint8_t)n;
  memcpy(p + 2, name, n);
  p[2 + n] = (uint8_t)v;
  memcpy(p + 3 + n, value, v);
  return 3 + n + v;
}

/* A gRPC request's header block: POST, http (static table entries), the rest literal. */
static size_t request_headers(uint8_t *p) {
  size_t n = 0;
  p[n++] = 0x83; /* :method POST */
  p[n++] = 0x86; /* :scheme http */
  n += hpack_literal(p + n, ":path", M_PING);
  n += hpack_literal(p + n, ":authority", "localhost");
  n += hpack_literal(p + n, "content-type", "application/grpc");
  n += hpack_literal(p + n, "te", "trailers");
  n += hpack_literal(p + n, "cache", "limits");
  return n;
}

static int tcp_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

typedef struct drain {
  pthread_t thread;
  int fd;
  atomic_size_t bytes;
  uint8_t first[512]; /* the start of what the server sent: its SETTINGS frame */
  size_t first_len;
} drain;

/* SETTINGS_MAX_CONCURRENT_STREAMS (id 3) from the server's first frame; -1 if absent. */
static long advertised_max_streams(const drain *d) {
  const uint8_t *f = d->first;
  if (d->first_len < 9 || f[3] != 4) {
    return -1;
  }
  size_t len = ((size_t)f[0] << 16) | ((size_t)f[1] << 8) | f[2];
  for (size_t at = 9; at + 6 <= 9 + len && at + 6 <= d->first_len; at += 6) {
    if (f[at] == 0 && f[at + 1] == 3) {
      return (long)(((uint32_t)f[at + 2] << 24) | ((uint32_t)f[at + 3] << 16) |
                    ((uint32_t)f[at + 4] << 8) | f[at + 5]);
    }
  }
  return -1;
}

/* Reads and drops whatever the server sends, so its writes never stall the flood. */
static void *drain_loop(void *arg) {
  drain *d = arg;
  uint8_t buf[16384];
  ssize_t r;
  while ((r = read(d->fd, buf, sizeof buf)) > 0) {
    size_t keep = sizeof d->first - d->first_len;
    keep = keep < (size_t)r ? keep : (size_t)r;
    memcpy(d->first + d->first_len, buf, keep);
    d->first_len += keep;
    atomic_fetch_add(&d->bytes, (size_t)r);
  }
  return NULL;
}

/* Waits (bounded) until the server's first frame has arrived whole: an instrumented
 * server busy with the flood can send its SETTINGS after the flood has been written,
 * and the shutdown below would otherwise cut it off. The drain thread writes `first`
 * before it counts the bytes, so what the count covers is safe to read. */
static void await_settings(drain *d) {
  int64_t deadline = cmn_mono_ms() + 10000L * test_time_scale();
  size_t need = 0; /* the first frame's whole length, once its header is in */
  while (cmn_mono_ms() < deadline) {
    size_t got = atomic_load(&d->bytes);
    if (got >= 9 && need == 0) {
      need = 9 + (((size_t)d->first[0] << 16) | ((size_t)d->first[1] << 8) | d->first[2]);
    }
    if (need && got >= need) {
      return;
    }
    usleep(2000); /* the server's own pace: nothing to be woken by */
  }
}

static bool write_all_fd(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      return false;
    }
    p += w;
    n -= (size_t)w;
  }
  return true;
}

#define RESET_BATCH 500

/* Sends pairs HEADERS + RST_STREAM(CANCEL) on one connection: the "rapid reset" pattern.
 * Returns how many pairs went out before the server closed the connection. */
static long rapid_reset(int port, long pairs, long *max_streams) {
  int fd = tcp_connect(port);
  assert_true(fd >= 0);
  drain d = {.fd = fd};
  assert_int_equal(pthread_create(&d.thread, NULL, drain_loop, &d), 0);
  uint8_t hdr[256];
  size_t hlen = request_headers(hdr);
  size_t pair = 9 + hlen + 9 + 4;
  uint8_t *buf = malloc(24 + 9 + 9 + pair * RESET_BATCH);
  assert_non_null(buf);
  uint8_t *p = buf;
  memcpy(p, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
  p = h2_frame(p + 24, 0, 4, 0, 0); /* SETTINGS, empty */
  p = h2_frame(p, 0, 4, 1, 0);      /* SETTINGS ACK for the server's */
  bool ok = write_all_fd(fd, buf, (size_t)(p - buf));
  long sent = 0;
  uint32_t stream = 1;
  while (ok && sent < pairs) {
    p = buf;
    for (int i = 0; i < RESET_BATCH && sent + i < pairs; i++, stream += 2) {
      p = h2_frame(p, (uint32_t)hlen, 1, 0x4, stream); /* HEADERS, END_HEADERS */
      memcpy(p, hdr, hlen);
      p = h2_frame(p + hlen, 4, 3, 0, stream); /* RST_STREAM */
      static const uint8_t cancel[4] = {0, 0, 0, 8};
      memcpy(p, cancel, 4);
      p += 4;
    }
    ok = write_all_fd(fd, buf, (size_t)(p - buf));
    sent += ok ? (long)((size_t)(p - buf) / pair) : 0;
  }
  free(buf);
  await_settings(&d);
  shutdown(fd, SHUT_RDWR);
  pthread_join(d.thread, NULL);
  close(fd);
  *max_streams = advertised_max_streams(&d);
  return sent;
}

/* 100,000 HEADERS + RST_STREAM pairs (divided by the time scale) on one connection: the
 * server keeps answering Ping on another, gives the memory back (the peak stays far
 * below the 1.2 GB it took when reset streams leaked), and advertises a stream limit. */
static void test_rapid_reset_flood(void **state) {
  (void)state;
  /* A slower (instrumented) server meets a flood of the same speed: keep the attack in
   * proportion, as README's Transport limits explains. */
  long pairs = 100000 / test_time_scale();
  /* valgrind runs the server 20-50x slower: 10,000 pairs kept a Ping waiting past its
   * 10 s deadline in one run of two; 1,000 still means 20,000-50,000 at full speed. */
  pairs = getenv("MIM_VALGRIND") && pairs > 1000 ? 1000 : pairs;
  mim_local *srv = start_server();
  long base = warm_rss(srv);
  pinger p;
  pinger_start(&p, srv);
  int64_t t0 = cmn_mono_ms();
  long max_streams = 0;
  long sent = rapid_reset(srv->port, pairs, &max_streams);
  printf("rapid reset: %ld of %ld pairs sent in %ld ms; RSS %ld KiB before, %ld KiB now, peak %ld "
         "KiB\n",
         sent, pairs, (long)(cmn_mono_ms() - t0), base, raw_proc_kib(srv->pid, "VmRSS"),
         raw_proc_kib(srv->pid, "VmHWM"));
  long peak = raw_proc_kib(srv->pid, "VmHWM");
  pinger_check(&p, "during the rapid reset", true);
  if (plain_build()) {
    assert_true(peak < base + 128L * 1024);
  }
  printf("rapid reset: the server advertised MAX_CONCURRENT_STREAMS %ld\n", max_streams);
  assert_int_equal(max_streams, 2048);
  assert_rss_back(srv, base, "rapid reset");
  assert_fresh_ping(srv, true);
  assert_int_equal(mim_local_stop(srv), 0);
}

/* ---- file descriptors ---- */

#define FD_LIMIT 160     /* the server's RLIMIT_NOFILE for the attack */
#define FD_ATTACKERS 300 /* idle connections opened against it */

/* "Max open files" soft and hard limits of pid, from /proc/PID/limits. */
static void proc_nofile(pid_t pid, long *soft, long *hard) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%ld/limits", (long)pid);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  *soft = *hard = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "Max open files", 14) == 0) {
      assert_int_equal(sscanf(line + 14, "%ld %ld", soft, hard), 2);
    }
  }
  fclose(f);
}

/* Started with a low soft limit on file descriptors, the server raises it to the hard
 * one. Then, held to FD_LIMIT, FD_ATTACKERS idle connections must neither stop it
 * from serving the connection it has nor, once they are gone, from accepting new ones. */
static void test_fd_exhaustion_recovers(void **state) {
  (void)state;
  struct rlimit old, low;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
  low = (struct rlimit){old.rlim_cur < 200 ? old.rlim_cur : 200, old.rlim_max};
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  mim_local *srv = start_server();
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0); /* only the server starts low */
  long soft = 0, hard = 0;
  proc_nofile(srv->pid, &soft, &hard);
  printf("fd limit: started at %ld, the server runs with %ld (hard %ld)\n", (long)low.rlim_cur,
         soft, hard);
  assert_int_equal(soft, hard);

  struct rlimit cap = {FD_LIMIT, FD_LIMIT};
  assert_int_equal(prlimit(srv->pid, RLIMIT_NOFILE, &cap, NULL), 0);
  int base_sockets = raw_proc_sockets(srv->pid);
  pinger p;
  pinger_start(&p, srv);
  int fds[FD_ATTACKERS];
  int opened = 0;
  for (int i = 0; i < FD_ATTACKERS; i++) {
    fds[i] = tcp_connect(srv->port);
    opened += fds[i] >= 0;
  }
  usleep(1000000 * test_time_scale()); /* the server accepts what it will */
  int held = raw_proc_sockets(srv->pid);
  printf("fd exhaustion: %d of %d connections opened, server holds %d sockets (limit %d)\n", opened,
         FD_ATTACKERS, held, FD_LIMIT);
  for (int i = 0; i < FD_ATTACKERS; i++) {
    if (fds[i] >= 0) {
      close(fds[i]);
    }
  }
  int left = raw_wait_sockets_at_most(srv->pid, base_sockets + 1, 10000 * test_time_scale());
  printf("fd exhaustion: %d sockets after the close (%d before)\n", left, base_sockets);
  pinger_check(&p, "during fd exhaustion", false);
  assert_true(held < FD_LIMIT);
  assert_fresh_ping(srv, false);
  assert_int_equal(mim_local_stop(srv), 0);
}

int main(void) {
  grpc_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gzip_bomb_refused),
      cmocka_unit_test(test_rapid_reset_flood),
      cmocka_unit_test(test_fd_exhaustion_recovers),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  grpc_shutdown();
  return rc;
}
