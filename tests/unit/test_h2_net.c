/* Byte streams of the HTTP/2 transport (lib/h2/net.c): dialing plain TCP over IPv4,
 * IPv6 and the resolver thread, failures (refused, DNS, timeouts), TLS against an
 * in-test OpenSSL server with good and bad certificates, large transfers, cancels. */
#include "h2/net.h"

#include "clock.h"
#include "mim_local.h"
#include "test_ca.h"
#include "time_scale.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_MS 10000 /* bound for anything that should happen "soon" */

static test_ca g_ca;

static int64_t wait_ms(void) {
  return (int64_t)WAIT_MS * test_time_scale();
}

/* ---- dials on the loop thread, outcomes for the test thread ---- */

typedef struct dial_ctx {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  mim_reactor *r;
  mim_net *net;
  const char *addr;
  int64_t timeout_ms;
  int64_t cancel_after_ms; /* < 0: never; 0: right after starting; > 0: by a timer */
  mim_net_dial *dial;
  mim_status start_st;
  bool started;
  bool cancelled;
  int calls;
  mim_status st;
  char detail[512];
  mim_net_conn *conn;
  int64_t t0, elapsed_ms;
} dial_ctx;

static void ctx_init(dial_ctx *c, mim_reactor *r, mim_net *net, const char *addr,
                     int64_t timeout_ms) {
  memset(c, 0, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
  cmn_cond_init_monotonic(&c->cv);
  c->r = r;
  c->net = net;
  c->addr = addr;
  c->timeout_ms = timeout_ms;
  c->cancel_after_ms = -1;
}

static void ctx_destroy(dial_ctx *c) {
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
}

static void on_dial(void *user, mim_status st, const char *detail, mim_net_conn *conn) {
  dial_ctx *c = user;
  pthread_mutex_lock(&c->mu);
  c->calls++;
  c->st = st;
  snprintf(c->detail, sizeof c->detail, "%s", detail != NULL ? detail : "");
  c->conn = conn;
  c->elapsed_ms = cmn_mono_ms() - c->t0;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static void signal_started(dial_ctx *c) {
  pthread_mutex_lock(&c->mu);
  c->started = true;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static void cancel_task(void *arg) {
  dial_ctx *c = arg;
  pthread_mutex_lock(&c->mu);
  bool pending = c->calls == 0;
  pthread_mutex_unlock(&c->mu);
  if (pending) {
    mim_net_dial_cancel(c->dial);
    c->cancelled = true;
  }
  signal_started(c);
}

static void start_task(void *arg) {
  dial_ctx *c = arg;
  c->t0 = cmn_mono_ms();
  c->start_st = mim_net_dial_start(c->net, c->addr, c->timeout_ms, on_dial, c, &c->dial);
  if (c->start_st == MIM_OK && c->cancel_after_ms == 0) {
    cancel_task(c);
  } else if (c->start_st == MIM_OK && c->cancel_after_ms > 0) {
    assert_int_equal(mim_reactor_timer(c->r, c->cancel_after_ms, cancel_task, c, NULL), MIM_OK);
  } else {
    signal_started(c);
  }
}

/* Waits until pred holds (under c->mu) or WAIT_MS passes. */
static bool ctx_wait(dial_ctx *c, bool want_call) {
  struct timespec until = cmn_deadline_after_ms(wait_ms());
  pthread_mutex_lock(&c->mu);
  while (!(want_call ? c->calls > 0 : c->started)) {
    if (pthread_cond_timedwait(&c->cv, &c->mu, &until) != 0) {
      break;
    }
  }
  bool ok = want_call ? c->calls > 0 : c->started;
  pthread_mutex_unlock(&c->mu);
  return ok;
}

/* Starts c's dial on the loop; with want_call, waits for its callback too. */
static void run_dial(dial_ctx *c, bool want_call) {
  assert_int_equal(mim_reactor_post(c->r, start_task, c), MIM_OK);
  assert_true(ctx_wait(c, false));
  assert_int_equal(c->start_st, MIM_OK);
  if (want_call) {
    assert_true(ctx_wait(c, true));
    assert_int_equal(c->calls, 1);
  }
}

/* Dials addr and returns the status; *conn gets the stream on MIM_OK. */
static mim_status dial_once(mim_reactor *r, mim_net *net, const char *addr, int64_t timeout_ms,
                            char *detail, size_t cap, mim_net_conn **conn) {
  dial_ctx c;
  ctx_init(&c, r, net, addr, timeout_ms);
  run_dial(&c, true);
  snprintf(detail, cap, "%s", c.detail);
  *conn = c.conn;
  ctx_destroy(&c);
  return c.st;
}

static void close_task(void *arg) {
  mim_net_conn_close(arg);
}

/* Closes a conn on the loop thread (where it lives) and waits for that. */
static void sync_task(void *arg) {
  signal_started(arg);
}
static void loop_barrier(mim_reactor *r) {
  dial_ctx b;
  ctx_init(&b, r, NULL, NULL, 0);
  assert_int_equal(mim_reactor_post(r, sync_task, &b), MIM_OK);
  assert_true(ctx_wait(&b, false));
  ctx_destroy(&b);
}

static void close_conn(mim_reactor *r, mim_net_conn *conn) {
  assert_int_equal(mim_reactor_post(r, close_task, conn), MIM_OK);
  loop_barrier(r);
}

/* ---- sockets on the test side ---- */

/* A listening (or, with backlog < 0, only bound) TCP socket on ip; *port gets its port. */
static int listen_on(const char *ip, int backlog, int *port) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  int family = strchr(ip, ':') != NULL ? AF_INET6 : AF_INET;
  if (family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    len = sizeof *a;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
  if (backlog >= 0) {
    assert_int_equal(listen(fd, backlog), 0);
  }
  assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
  *port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                   : ((struct sockaddr_in *)&ss)->sin_port);
  return fd;
}

/* Waits until fd is ready for events, within WAIT_MS. */
static bool wait_fd(int fd, short events) {
  struct pollfd p = {.fd = fd, .events = events};
  return poll(&p, 1, (int)wait_ms()) == 1;
}

static short poll_events(unsigned wants) {
  return (short)(((wants & MIM_LOOP_READ) ? POLLIN : 0) | ((wants & MIM_LOOP_WRITE) ? POLLOUT : 0));
}

/* Reads exactly len bytes from conn (waiting on what it wants). */
static bool conn_read_all(mim_net_conn *conn, char *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = mim_net_conn_read(conn, buf + got, len - got);
    if (n == MIM_NET_AGAIN) {
      if (!wait_fd(mim_net_conn_fd(conn), poll_events(mim_net_conn_wants(conn)))) {
        return false;
      }
    } else if (n <= 0) {
      return false;
    } else {
      got += (size_t)n;
    }
  }
  return true;
}

/* ---- fixtures ---- */

typedef struct fixture {
  mim_reactor *r;
  mim_net *net;
} fixture;

static int setup_with(void **state, bool tls) {
  fixture *f = calloc(1, sizeof *f);
  if (f == NULL || mim_reactor_create(NULL, "test-net", &f->r) != MIM_OK) {
    free(f);
    return -1;
  }
  mim_net_config cfg = {.tls = tls, .ca_file = tls ? g_ca.ca_file : NULL};
  if (mim_net_create(f->r, &cfg, &f->net) != MIM_OK) {
    mim_reactor_free(f->r);
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

static int setup_plain(void **state) {
  return setup_with(state, false);
}
static int setup_tls(void **state) {
  return setup_with(state, true);
}

static void free_net_task(void *arg) {
  fixture *f = arg;
  mim_net_free(f->net);
  f->net = NULL;
}

static int teardown(void **state) {
  fixture *f = *state;
  /* The net is freed on the loop thread, as net.h asks. */
  if (mim_reactor_post(f->r, free_net_task, f) == MIM_OK) {
    loop_barrier(f->r);
  }
  mim_reactor_free(f->r);
  free(f);
  return 0;
}

/* ---- plaintext ---- */

/* Dials ip's listener, checks a round trip both ways and the end of stream. */
static void plain_round_trip(fixture *f, const char *listen_ip, const char *dial_fmt) {
  int port = 0;
  int lfd = listen_on(listen_ip, 8, &port);
  char addr[128], detail[512];
  snprintf(addr, sizeof addr, dial_fmt, port);
  mim_net_conn *conn = NULL;
  assert_int_equal(dial_once(f->r, f->net, addr, wait_ms(), detail, sizeof detail, &conn), MIM_OK);
  assert_non_null(conn);
  assert_string_equal(mim_net_conn_peer(conn), addr);
  int sfd = accept(lfd, NULL, NULL);
  assert_true(sfd >= 0);
  char buf[8];
  assert_int_equal(mim_net_conn_read(conn, buf, sizeof buf), MIM_NET_AGAIN);
  assert_int_equal(mim_net_conn_wants(conn), MIM_LOOP_READ);
  assert_int_equal(mim_net_conn_write(conn, "ping", 4), 4);
  assert_int_equal(recv(sfd, buf, 4, MSG_WAITALL), 4);
  assert_memory_equal(buf, "ping", 4);
  assert_int_equal(send(sfd, "pong", 4, 0), 4);
  assert_true(conn_read_all(conn, buf, 4));
  assert_memory_equal(buf, "pong", 4);
  close(sfd);
  assert_true(wait_fd(mim_net_conn_fd(conn), POLLIN));
  assert_int_equal(mim_net_conn_read(conn, buf, sizeof buf), 0);
  close_conn(f->r, conn);
  close(lfd);
}

static void test_plain_ipv4(void **state) {
  plain_round_trip(*state, "127.0.0.1", "127.0.0.1:%d");
}

static void test_plain_ipv6(void **state) {
  plain_round_trip(*state, "::1", "[::1]:%d");
}

static void test_plain_localhost_resolves(void **state) {
  plain_round_trip(*state, "127.0.0.1", "localhost:%d");
}

static void test_refused(void **state) {
  fixture *f = *state;
  int port = 0;
  int bound = listen_on("127.0.0.1", -1, &port); /* bound, never listening: refused */
  char addr[64], detail[512];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  mim_net_conn *conn = NULL;
  assert_int_equal(dial_once(f->r, f->net, addr, wait_ms(), detail, sizeof detail, &conn),
                   MIM_ERR_UNAVAILABLE);
  assert_null(conn);
  assert_non_null(strstr(detail, addr));
  assert_non_null(strstr(detail, "refused"));
  close(bound);
}

static void test_unresolvable(void **state) {
  fixture *f = *state;
  char detail[512];
  mim_net_conn *conn = NULL;
  assert_int_equal(
      dial_once(f->r, f->net, "nothing.invalid:443", wait_ms(), detail, sizeof detail, &conn),
      MIM_ERR_UNAVAILABLE);
  assert_null(conn);
  assert_non_null(strstr(detail, "cannot resolve nothing.invalid:443 (DNS)"));
}

static void test_bad_addresses(void **state) {
  fixture *f = *state;
  const char *bad[] = {"localhost", "::1:80", "[::1]80", ":80", "host:0", "host:70000", "host:8x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    dial_ctx c;
    ctx_init(&c, f->r, f->net, bad[i], 1000);
    assert_int_equal(mim_reactor_post(f->r, start_task, &c), MIM_OK);
    assert_true(ctx_wait(&c, false));
    assert_int_equal(c.start_st, MIM_ERR_INVALID_ARGUMENT);
    ctx_destroy(&c);
  }
}

/* wants() keeps a blocked write's WRITE beside a read's READ until a write goes through. */
static void test_wants_union(void **state) {
  fixture *f = *state;
  int port = 0;
  int lfd = listen_on("127.0.0.1", 8, &port);
  char addr[64], detail[512];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  mim_net_conn *conn = NULL;
  assert_int_equal(dial_once(f->r, f->net, addr, wait_ms(), detail, sizeof detail, &conn), MIM_OK);
  assert_int_equal(mim_net_conn_wants(conn), MIM_LOOP_READ);
  int sfd = accept(lfd, NULL, NULL);
  assert_true(sfd >= 0);
  static char chunk[65536];
  ssize_t n = 0;
  size_t queued = 0;
  for (int i = 0; i < 1000 && n != MIM_NET_AGAIN; i++) { /* fill both socket buffers */
    n = mim_net_conn_write(conn, chunk, sizeof chunk);
    assert_true(n > 0 || n == MIM_NET_AGAIN);
    queued += n > 0 ? (size_t)n : 0;
  }
  assert_int_equal(n, MIM_NET_AGAIN);
  assert_int_equal(mim_net_conn_wants(conn), MIM_LOOP_WRITE | MIM_LOOP_READ);
  char buf[8];
  assert_int_equal(mim_net_conn_read(conn, buf, sizeof buf), MIM_NET_AGAIN);
  assert_int_equal(mim_net_conn_wants(conn), MIM_LOOP_WRITE | MIM_LOOP_READ);
  for (size_t drained = 0; drained < queued;) { /* the peer takes everything */
    ssize_t r = recv(sfd, chunk, sizeof chunk, 0);
    assert_true(r > 0);
    drained += (size_t)r;
  }
  assert_true(wait_fd(mim_net_conn_fd(conn), POLLOUT));
  assert_true(mim_net_conn_write(conn, "x", 1) == 1);
  assert_int_equal(mim_net_conn_wants(conn), MIM_LOOP_READ);
  close(sfd);
  close_conn(f->r, conn);
  close(lfd);
}

/* A peer that closed: writing fails with an error, and no SIGPIPE kills the process. */
static void test_write_after_peer_closed(void **state) {
  fixture *f = *state;
  int port = 0;
  int lfd = listen_on("127.0.0.1", 8, &port);
  char addr[64], detail[512];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  mim_net_conn *conn = NULL;
  assert_int_equal(dial_once(f->r, f->net, addr, wait_ms(), detail, sizeof detail, &conn), MIM_OK);
  int sfd = accept(lfd, NULL, NULL);
  assert_true(sfd >= 0);
  close(sfd);
  ssize_t n = 0;
  for (int i = 0; i < 100 && n != MIM_NET_ERROR; i++) {
    n = mim_net_conn_write(conn, "x", 1);
    if (n != MIM_NET_ERROR) {
      assert_true(wait_fd(mim_net_conn_fd(conn), POLLIN)); /* the RST */
    }
  }
  assert_int_equal(n, MIM_NET_ERROR);
  assert_non_null(strstr(mim_net_conn_error(conn), addr));
  close_conn(f->r, conn);
  close(lfd);
}

/* ---- several addresses ---- */

/* "two.test" resolves to 127.0.0.1 on g_ports[0] then on g_ports[1] (two real lookups
 * chained: glibc frees a list node by node). */
static int g_ports[2];

/* "slow.test" blocks its lookup until the test opens g_slow (bounded). */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool entered;
  bool open;
} g_slow = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};

static int slow_lookup(void) {
  struct timespec until = cmn_deadline_after_ms(wait_ms());
  pthread_mutex_lock(&g_slow.mu);
  g_slow.entered = true;
  pthread_cond_broadcast(&g_slow.cv);
  while (!g_slow.open) {
    if (pthread_cond_timedwait(&g_slow.cv, &g_slow.mu, &until) != 0) {
      break;
    }
  }
  pthread_mutex_unlock(&g_slow.mu);
  return EAI_AGAIN;
}

/* One numeric lookup per (ip, port), chained into one list. */
static int chain_lookups(const char *const *ips, const int *ports, size_t n,
                         struct addrinfo **res) {
  struct addrinfo h = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
  struct addrinfo *head = NULL, **tail = &head;
  for (size_t i = 0; i < n; i++) {
    char port[8];
    snprintf(port, sizeof port, "%d", ports[i]);
    int rc = getaddrinfo(ips[i], port, &h, tail);
    if (rc != 0) {
      if (head != NULL) {
        freeaddrinfo(head);
      }
      return rc;
    }
    while (*tail != NULL) {
      tail = &(*tail)->ai_next;
    }
  }
  *res = head;
  return 0;
}

/* "mixed.test": [::1]:g_mixed[0], [::1]:g_mixed[1], 127.0.0.1:g_mixed[2]. */
static int g_mixed[3];

static int two_addresses(const char *host, const char *port, const struct addrinfo *hints,
                         struct addrinfo **res) {
  if (strcmp(host, "slow.test") == 0) {
    return slow_lookup();
  }
  if (strcmp(host, "two.test") == 0) {
    const char *ips[] = {"127.0.0.1", "127.0.0.1"};
    return chain_lookups(ips, g_ports, 2, res);
  }
  if (strcmp(host, "mixed.test") == 0) {
    const char *ips[] = {"::1", "::1", "127.0.0.1"};
    return chain_lookups(ips, g_mixed, 3, res);
  }
  return getaddrinfo(host, port, hints, res);
}

/* Fills the accept queue of a backlog-0 listener, so later connects stay in progress. */
static int stall(const char *ip, int *port, int *filler) {
  int lfd = listen_on(ip, 0, port);
  bool v6 = strchr(ip, ':') != NULL;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  if (v6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)*port);
    a->sin6_addr = in6addr_loopback;
    len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)*port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *a;
  }
  *filler = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_int_equal(connect(*filler, (struct sockaddr *)&ss, len), 0);
  return lfd;
}

/* IPv6 stalls: the IPv4 address is tried second (families interleaved), not the second
 * IPv6 one. */
static void test_families_interleaved(void **state) {
  fixture *f = *state;
  int filler = -1;
  int stuck = stall("::1", &g_mixed[0], &filler);
  int v6 = listen_on("::1", 8, &g_mixed[1]);
  int v4 = listen_on("127.0.0.1", 8, &g_mixed[2]);
  dial_ctx c;
  ctx_init(&c, f->r, f->net, "mixed.test:1", wait_ms());
  run_dial(&c, true);
  assert_int_equal(c.st, MIM_OK);
  struct pollfd p = {.fd = v4, .events = POLLIN};
  assert_int_equal(poll(&p, 1, 0), 1); /* the IPv4 listener has the connection */
  p.fd = v6;
  assert_int_equal(poll(&p, 1, 0), 0);
  close_conn(f->r, c.conn);
  ctx_destroy(&c);
  close(filler);
  close(stuck);
  close(v6);
  close(v4);
}

/* The first address never answers: the second is tried after 250 ms and wins. */
static void test_stalled_address_staggered(void **state) {
  fixture *f = *state;
  int filler = -1;
  int stuck = stall("127.0.0.1", &g_ports[0], &filler);
  int lfd = listen_on("127.0.0.1", 8, &g_ports[1]);
  dial_ctx c;
  ctx_init(&c, f->r, f->net, "two.test:1", wait_ms());
  run_dial(&c, true);
  assert_int_equal(c.st, MIM_OK);
  assert_true(c.elapsed_ms >= 250);
  int sfd = accept(lfd, NULL, NULL); /* connected to the second address */
  assert_true(sfd >= 0);
  close(sfd);
  close_conn(f->r, c.conn);
  ctx_destroy(&c);
  close(filler);
  close(stuck);
  close(lfd);
}

/* The first address refuses: the second is tried at once, not after the stagger. */
static void test_refused_address_falls_through(void **state) {
  fixture *f = *state;
  int refusing = listen_on("127.0.0.1", -1, &g_ports[0]);
  int lfd = listen_on("127.0.0.1", 8, &g_ports[1]);
  dial_ctx c;
  ctx_init(&c, f->r, f->net, "two.test:1", wait_ms());
  run_dial(&c, true);
  assert_int_equal(c.st, MIM_OK);
  if (test_time_scale() == 1) {
    assert_true(c.elapsed_ms < 250);
  }
  close_conn(f->r, c.conn);
  ctx_destroy(&c);
  close(refusing);
  close(lfd);
}

/* Both refuse: the failure names the last address tried. */
static void test_all_addresses_refuse(void **state) {
  fixture *f = *state;
  int r0 = listen_on("127.0.0.1", -1, &g_ports[0]);
  int r1 = listen_on("127.0.0.1", -1, &g_ports[1]);
  dial_ctx c;
  ctx_init(&c, f->r, f->net, "two.test:1", wait_ms());
  run_dial(&c, true);
  assert_int_equal(c.st, MIM_ERR_UNAVAILABLE);
  char last[32];
  snprintf(last, sizeof last, "127.0.0.1:%d", g_ports[1]);
  assert_non_null(strstr(c.detail, "two.test:1"));
  assert_non_null(strstr(c.detail, last));
  assert_non_null(strstr(c.detail, "refused"));
  ctx_destroy(&c);
  close(r0);
  close(r1);
}

/* ---- cancels ---- */

/* A cancelled dial never calls back; a later dial on the same net still works. */
static void check_cancelled(fixture *f, dial_ctx *c) {
  assert_true(c->cancelled);
  loop_barrier(f->r);
  assert_int_equal(c->calls, 0);
}

static void test_cancel_mid_resolution(void **state) {
  fixture *f = *state;
  int port = 0;
  int lfd = listen_on("127.0.0.1", 8, &port);
  char addr[64], detail[512];
  snprintf(addr, sizeof addr, "localhost:%d", port);
  dial_ctx c;
  ctx_init(&c, f->r, f->net, addr, wait_ms());
  c.cancel_after_ms = 0;
  run_dial(&c, false);
  /* The resolver serves lookups in order: this dial's result comes after the cancelled
   * one's, which has then been dropped. */
  mim_net_conn *conn = NULL;
  assert_int_equal(dial_once(f->r, f->net, addr, wait_ms(), detail, sizeof detail, &conn), MIM_OK);
  check_cancelled(f, &c);
  close_conn(f->r, conn);
  ctx_destroy(&c);
  close(lfd);
}

/* mim_net_free does not wait for a lookup stuck in DNS: the resolver thread is left to
 * finish alone. */
static void test_free_during_slow_lookup(void **state) {
  fixture *f = *state;
  cmn_cond_init_monotonic(&g_slow.cv);
  dial_ctx c;
  ctx_init(&c, f->r, f->net, "slow.test:443", wait_ms());
  c.cancel_after_ms = 0;
  run_dial(&c, false);
  struct timespec until = cmn_deadline_after_ms(wait_ms());
  pthread_mutex_lock(&g_slow.mu);
  while (!g_slow.entered && pthread_cond_timedwait(&g_slow.cv, &g_slow.mu, &until) == 0) {
  }
  bool entered = g_slow.entered;
  pthread_mutex_unlock(&g_slow.mu);
  assert_true(entered);
  int64_t t0 = cmn_mono_ms();
  assert_int_equal(mim_reactor_post(f->r, free_net_task, f), MIM_OK);
  loop_barrier(f->r); /* would time out if mim_net_free waited for the lookup */
  assert_null(f->net);
  pthread_mutex_lock(&g_slow.mu);
  bool still_blocked = !g_slow.open;
  g_slow.open = true;
  pthread_cond_broadcast(&g_slow.cv);
  pthread_mutex_unlock(&g_slow.mu);
  assert_true(still_blocked);
  assert_true(cmn_mono_ms() - t0 < wait_ms());
  assert_int_equal(c.calls, 0);
  ctx_destroy(&c);
}

static void test_cancel_mid_connect(void **state) {
  fixture *f = *state;
  int port = 0;
  int filler = -1;
  int lfd = stall("127.0.0.1", &port, &filler); /* the dial's connect stays in progress */
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  dial_ctx c;
  ctx_init(&c, f->r, f->net, addr, wait_ms());
  c.cancel_after_ms = 100LL * test_time_scale();
  run_dial(&c, false);
  check_cancelled(f, &c);
  ctx_destroy(&c);
  close(filler);
  close(lfd);
}

static void test_cancel_at_once_numeric(void **state) {
  fixture *f = *state;
  dial_ctx c;
  ctx_init(&c, f->r, f->net, "127.0.0.1:1", wait_ms());
  c.cancel_after_ms = 0;
  run_dial(&c, false);
  check_cancelled(f, &c);
  ctx_destroy(&c);
}

/* ---- TLS: an in-test OpenSSL server ---- */

typedef struct tls_server {
  int lfd;
  int port;
  int stop[2];
  pthread_t thread;
  SSL_CTX *ctx;
  bool alpn_h2;
  bool close_after_handshake;
} tls_server;

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
  (void)ssl;
  static const unsigned char h2[] = {2, 'h', '2'};
  const tls_server *s = arg;
  unsigned char *sel = NULL;
  if (!s->alpn_h2 ||
      SSL_select_next_proto(&sel, outlen, h2, sizeof h2, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static void echo(SSL *ssl) {
  char buf[16384];
  for (;;) {
    int n = SSL_read(ssl, buf, sizeof buf);
    if (n <= 0) {
      return;
    }
    for (int off = 0; off < n;) {
      int w = SSL_write(ssl, buf + off, n - off);
      if (w <= 0) {
        return;
      }
      off += w;
    }
  }
}

static void serve_one(tls_server *s, int fd) {
  struct timeval tv = {.tv_sec = (time_t)(wait_ms() / 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  SSL *ssl = SSL_new(s->ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) == 1 && !s->close_after_handshake) {
    echo(ssl);
  }
  SSL_free(ssl);
  ERR_clear_error();
  close(fd);
}

static void *tls_server_main(void *arg) {
  tls_server *s = arg;
  /* OpenSSL's server side writes with write(): keep SIGPIPE away from this thread only,
   * so the library's own writes (on other threads) are still checked for it. */
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
  for (;;) {
    struct pollfd p[2] = {{.fd = s->lfd, .events = POLLIN}, {.fd = s->stop[0], .events = POLLIN}};
    if (poll(p, 2, -1) < 0 || (p[1].revents & POLLIN)) {
      break;
    }
    int fd = accept(s->lfd, NULL, NULL);
    if (fd >= 0) {
      serve_one(s, fd);
    }
  }
  ERR_clear_error();
  return NULL;
}

static void tls_server_start(tls_server *s, const test_cert_files *files, bool alpn_h2) {
  memset(s, 0, sizeof *s);
  s->alpn_h2 = alpn_h2;
  s->ctx = SSL_CTX_new(TLS_server_method());
  assert_non_null(s->ctx);
  assert_int_equal(SSL_CTX_use_certificate_file(s->ctx, files->cert, SSL_FILETYPE_PEM), 1);
  assert_int_equal(SSL_CTX_use_PrivateKey_file(s->ctx, files->key, SSL_FILETYPE_PEM), 1);
  SSL_CTX_set_alpn_select_cb(s->ctx, select_alpn, s);
  s->lfd = listen_on("127.0.0.1", 8, &s->port);
  assert_int_equal(pipe(s->stop), 0);
  assert_int_equal(pthread_create(&s->thread, NULL, tls_server_main, s), 0);
}

static void tls_server_stop(tls_server *s) {
  assert_int_equal(write(s->stop[1], "x", 1), 1);
  pthread_join(s->thread, NULL);
  close(s->stop[0]);
  close(s->stop[1]);
  close(s->lfd);
  SSL_CTX_free(s->ctx);
}

/* Dials the server as host ("127.0.0.1", "localhost") and returns the outcome. */
static mim_status tls_dial(fixture *f, const tls_server *s, const char *host, char *detail,
                           size_t cap, mim_net_conn **conn) {
  char addr[128];
  snprintf(addr, sizeof addr, "%s:%d", host, s->port);
  return dial_once(f->r, f->net, addr, wait_ms(), detail, cap, conn);
}

/* Writes total bytes through conn to the echo server while reading them back. */
static void echo_through(mim_net_conn *conn, size_t total) {
  unsigned char *out = malloc(total);
  unsigned char *in = malloc(total);
  assert_non_null(out);
  assert_non_null(in);
  for (size_t i = 0; i < total; i++) {
    out[i] = (unsigned char)(i * 7 + (i >> 12));
  }
  size_t sent = 0, got = 0;
  int64_t deadline = cmn_mono_ms() + wait_ms();
  while (got < total) {
    assert_true(cmn_mono_ms() < deadline);
    if (sent < total) {
      size_t chunk = total - sent < 65536 ? total - sent : 65536;
      ssize_t n = mim_net_conn_write(conn, out + sent, chunk);
      assert_true(n > 0 || n == MIM_NET_AGAIN);
      sent += n > 0 ? (size_t)n : 0;
    }
    ssize_t n;
    /* Read until AGAIN: TLS may hold decrypted bytes that poll cannot see. */
    while ((n = mim_net_conn_read(conn, in + got, total - got)) > 0) {
      got += (size_t)n;
    }
    assert_true(n == MIM_NET_AGAIN || got == total);
    short ev = (short)(poll_events(mim_net_conn_wants(conn)) | (sent < total ? POLLOUT : 0));
    struct pollfd p = {.fd = mim_net_conn_fd(conn), .events = ev};
    if (got < total) {
      assert_true(poll(&p, 1, (int)(deadline - cmn_mono_ms())) >= 0);
    }
  }
  assert_memory_equal(in, out, total);
  free(out);
  free(in);
}

static void test_tls_valid_and_large_echo(void **state) {
  fixture *f = *state;
  tls_server s;
  tls_server_start(&s, &g_ca.good, true);
  const char *hosts[] = {"127.0.0.1", "localhost"};
  for (size_t i = 0; i < 2; i++) {
    char detail[512];
    mim_net_conn *conn = NULL;
    mim_status st = tls_dial(f, &s, hosts[i], detail, sizeof detail, &conn);
    if (st != MIM_OK) {
      fail_msg("%s: %s", hosts[i], detail);
    }
    echo_through(conn, i == 0 ? (test_time_scale() > 3 ? 1u << 20 : 4u << 20) : 1000);
    close_conn(f->r, conn);
  }
  tls_server_stop(&s);
}

/* The handshake against files fails with UNAVAILABLE and a detail containing want. */
static void expect_tls_failure(fixture *f, const test_cert_files *files, bool alpn_h2,
                               const char *host, const char *want) {
  tls_server s;
  tls_server_start(&s, files, alpn_h2);
  char detail[512];
  mim_net_conn *conn = NULL;
  assert_int_equal(tls_dial(f, &s, host, detail, sizeof detail, &conn), MIM_ERR_UNAVAILABLE);
  assert_null(conn);
  if (strstr(detail, want) == NULL) {
    fail_msg("detail '%s' lacks '%s'", detail, want);
  }
  char port[16];
  snprintf(port, sizeof port, ":%d", s.port);
  assert_non_null(strstr(detail, port));
  tls_server_stop(&s);
}

static void test_tls_wrong_host(void **state) {
  expect_tls_failure(*state, &g_ca.wrong, true, "localhost", "hostname mismatch");
}

static void test_tls_wrong_ip(void **state) {
  expect_tls_failure(*state, &g_ca.wrong, true, "127.0.0.1", "IP address mismatch");
}

static void test_tls_expired(void **state) {
  expect_tls_failure(*state, &g_ca.expired, true, "localhost", "certificate has expired");
}

static void test_tls_untrusted(void **state) {
  expect_tls_failure(*state, &g_ca.untrusted, true, "localhost", "unable to get local issuer");
}

static void test_tls_without_alpn_h2(void **state) {
  expect_tls_failure(*state, &g_ca.good, false, "localhost", "ALPN h2");
}

/* A listener that accepts TCP but never answers the ClientHello. */
static void test_tls_handshake_timeout(void **state) {
  fixture *f = *state;
  int port = 0;
  int lfd = listen_on("127.0.0.1", 8, &port);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  dial_ctx c;
  int64_t timeout_ms = 200LL * test_time_scale();
  ctx_init(&c, f->r, f->net, addr, timeout_ms);
  run_dial(&c, true);
  assert_int_equal(c.st, MIM_ERR_DEADLINE_EXCEEDED);
  assert_non_null(strstr(c.detail, "TLS handshake"));
  assert_non_null(strstr(c.detail, addr));
  assert_true(c.elapsed_ms >= timeout_ms);
  ctx_destroy(&c);
  close(lfd);
}

static void test_tls_cancel_mid_handshake(void **state) {
  fixture *f = *state;
  int port = 0;
  int lfd = listen_on("127.0.0.1", 8, &port);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  dial_ctx c;
  ctx_init(&c, f->r, f->net, addr, wait_ms());
  c.cancel_after_ms = 100LL * test_time_scale();
  run_dial(&c, false);
  check_cancelled(f, &c);
  ctx_destroy(&c);
  close(lfd);
}

static void test_tls_write_after_peer_closed(void **state) {
  fixture *f = *state;
  tls_server s;
  tls_server_start(&s, &g_ca.good, true);
  s.close_after_handshake = true;
  char detail[512];
  mim_net_conn *conn = NULL;
  assert_int_equal(tls_dial(f, &s, "localhost", detail, sizeof detail, &conn), MIM_OK);
  ssize_t n = 0;
  char buf[64];
  for (int i = 0; i < 100 && n != MIM_NET_ERROR; i++) {
    n = mim_net_conn_write(conn, "hello", 5);
    if (n != MIM_NET_ERROR) {
      assert_true(wait_fd(mim_net_conn_fd(conn), POLLIN));
      while (mim_net_conn_read(conn, buf, sizeof buf) > 0) {
      }
    }
  }
  assert_int_equal(n, MIM_NET_ERROR);
  close_conn(f->r, conn);
  tls_server_stop(&s);
}

/* mim-local serves TLS with the test CA's certificate (gRPC core agrees to ALPN h2): the
 * pairing the conformance tests rely on. */
static void test_tls_against_mim_local(void **state) {
  fixture *f = *state;
  const char *args[] = {"--tls-cert", g_ca.good.cert, "--tls-key", g_ca.good.key, NULL};
  mim_local_opts o = {.no_auth = 1, .extra_args = args};
  mim_local *srv = NULL;
  assert_int_equal(mim_local_start(&o, &srv), 0);
  char addr[64], detail[512];
  snprintf(addr, sizeof addr, "localhost:%d", srv->port);
  mim_net_conn *conn = NULL;
  mim_status st = dial_once(f->r, f->net, addr, wait_ms(), detail, sizeof detail, &conn);
  if (st == MIM_OK) {
    close_conn(f->r, conn);
  }
  assert_int_equal(mim_local_stop(srv), 0);
  if (st != MIM_OK) {
    fail_msg("%s", detail);
  }
}

/* ---- the TLS context ---- */

static void expect_bad_ca_file(mim_reactor *r, const char *path) {
  mim_net_config cfg = {.tls = true, .ca_file = path};
  mim_net *net = NULL;
  assert_int_equal(mim_net_create(r, &cfg, &net), MIM_ERR_INVALID_ARGUMENT);
  assert_null(net);
  assert_non_null(strstr(mim_last_error_detail(), path));
}

static void test_bad_ca_files(void **state) {
  fixture *f = *state;
  char empty[TEST_CA_PATH_MAX + 16];
  snprintf(empty, sizeof empty, "%s/empty.pem", g_ca.dir);
  FILE *fp = fopen(empty, "w");
  assert_non_null(fp);
  fclose(fp);
  expect_bad_ca_file(f->r, empty);
  expect_bad_ca_file(f->r, "/nonexistent/ca.pem");
  unlink(empty);
}

/* Dials a server holding the good certificate with "system" roots from dir / file. */
static mim_status dial_with_system_roots(fixture *f, const char *dir, const char *file) {
  mim_net_system_ca_dir = dir;
  mim_net_system_ca_file = file;
  fixture sys = {.r = f->r};
  mim_net_config cfg = {.tls = true};
  assert_int_equal(mim_net_create(f->r, &cfg, &sys.net), MIM_OK);
  tls_server s;
  tls_server_start(&s, &g_ca.good, true);
  char addr[64], detail[512];
  snprintf(addr, sizeof addr, "localhost:%d", s.port);
  mim_net_conn *conn = NULL;
  mim_status st = dial_once(f->r, sys.net, addr, wait_ms(), detail, sizeof detail, &conn);
  if (st == MIM_OK) {
    close_conn(f->r, conn);
  } else {
    assert_non_null(strstr(detail, "unable to get local issuer"));
  }
  tls_server_stop(&s);
  assert_int_equal(mim_reactor_post(f->r, free_net_task, &sys), MIM_OK);
  loop_barrier(f->r);
  return st;
}

/* The system store: a hashed directory first, else the bundle file, else OpenSSL's
 * defaults (which do not hold the test CA). */
static void test_system_roots_order(void **state) {
  fixture *f = *state;
  const char *saved_dir = mim_net_system_ca_dir, *saved_file = mim_net_system_ca_file;
  char hashed[TEST_CA_PATH_MAX + 16], empty[TEST_CA_PATH_MAX + 16], link[TEST_CA_PATH_MAX + 32];
  snprintf(hashed, sizeof hashed, "%s/hashed", g_ca.dir);
  snprintf(empty, sizeof empty, "%s/empty", g_ca.dir);
  assert_int_equal(mkdir(hashed, 0700), 0);
  assert_int_equal(mkdir(empty, 0700), 0);
  FILE *fp = fopen(g_ca.ca_file, "r");
  assert_non_null(fp);
  X509 *ca = PEM_read_X509(fp, NULL, NULL, NULL);
  fclose(fp);
  assert_non_null(ca);
  snprintf(link, sizeof link, "%s/%08lx.0", hashed, X509_subject_name_hash(ca));
  X509_free(ca);
  assert_int_equal(symlink(g_ca.ca_file, link), 0);

  assert_int_equal(dial_with_system_roots(f, hashed, "/nonexistent/ca.crt"), MIM_OK);
  /* The directory wins over a bundle that lacks the CA. */
  assert_int_equal(dial_with_system_roots(f, hashed, g_ca.wrong.cert), MIM_OK);
  assert_int_equal(dial_with_system_roots(f, empty, g_ca.ca_file), MIM_OK);
  assert_int_equal(dial_with_system_roots(f, empty, "/nonexistent/ca.crt"), MIM_ERR_UNAVAILABLE);

  mim_net_system_ca_dir = saved_dir;
  mim_net_system_ca_file = saved_file;
  unlink(link);
  rmdir(hashed);
  rmdir(empty);
}

static void test_system_roots_load(void **state) {
  fixture *f = *state;
  mim_net_config cfg = {.tls = true};
  mim_net *net = NULL;
  assert_int_equal(mim_net_create(f->r, &cfg, &net), MIM_OK);
  mim_net_free(net);
}

int main(void) {
  mim_net_lookup_fn = two_addresses;
  if (test_ca_create(&g_ca) != 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_plain_ipv4, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_plain_ipv6, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_plain_localhost_resolves, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_refused, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_unresolvable, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_bad_addresses, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_wants_union, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_write_after_peer_closed, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_stalled_address_staggered, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_refused_address_falls_through, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_all_addresses_refuse, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_families_interleaved, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_mid_resolution, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_mid_connect, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_free_during_slow_lookup, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_at_once_numeric, setup_plain, teardown),
      cmocka_unit_test_setup_teardown(test_tls_valid_and_large_echo, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_wrong_host, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_wrong_ip, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_expired, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_untrusted, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_without_alpn_h2, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_handshake_timeout, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_cancel_mid_handshake, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_write_after_peer_closed, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_tls_against_mim_local, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_bad_ca_files, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_system_roots_load, setup_tls, teardown),
      cmocka_unit_test_setup_teardown(test_system_roots_order, setup_tls, teardown),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  test_ca_remove(&g_ca);
  return failed;
}
