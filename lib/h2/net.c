/*
 * Byte streams for the HTTP/2 transport: host:port parsing, name resolution off the loop
 * thread, non-blocking connects to every resolved address, and TLS on OpenSSL 3.
 */
#include "h2/net.h"

#include "error.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A later address is tried when an earlier one has not connected within this long (the
 * spirit of Happy Eyeballs: one dead address must not cost the whole timeout). */
#define STAGGER_MS 250
#define DETAIL_MAX 480
#define HOST_MAX 256

/* One name lookup handed to the resolver thread. `dial` is guarded by the resolver's mu:
 * the loop thread clears it when the dial ends first, so a late result is dropped. */
typedef struct lookup {
  struct lookup *next;
  char host[HOST_MAX];
  char port[8];
  mim_net_dial *dial;
  struct addrinfo *res;
  int gai_err;
  int sys_errno;
} lookup;

/* The resolver thread and its queue. Apart from mim_net: getaddrinfo cannot be
 * interrupted, so when mim_net_free finds a lookup running it leaves this behind for the
 * thread, which frees it once the lookup returns (nobody waits for a slow DNS server). */
typedef struct resolver {
  mim_reactor *r;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  bool started;
  bool busy;     /* inside a lookup */
  bool stopping; /* mim_net_free has begun: post nothing more */
  bool detached; /* the thread owns this struct now */
  lookup *queue_head, *queue_tail;
  lookup *orphans; /* results that could not be posted (reactor shutting down) */
} resolver;

struct mim_net {
  mim_reactor *r;
  SSL_CTX *ctx; /* NULL for plaintext */
  BIO_METHOD *bio_method;
  resolver *res;
};

struct mim_net_conn {
  int fd;
  SSL *ssl;
  unsigned read_wants;  /* what the last MIM_NET_AGAIN of a read waits for */
  unsigned write_wants; /* same for a write; 0 once a write took bytes */
  bool broken;          /* a fatal TLS or socket error: no close_notify then */
  char peer[HOST_MAX + 8];
  char err[DETAIL_MAX];
};

typedef struct attempt {
  mim_net_dial *dial;
  int fd; /* -1 when not in flight */
  mim_watch *watch;
  char addr[64];
} attempt;

struct mim_net_dial {
  mim_net *net;
  char host[HOST_MAX];
  char port[8];
  char host_port[HOST_MAX + 8];
  bool ip_literal;
  int64_t timeout_ms;
  mim_net_dial_cb cb;
  void *user;
  lookup *lookup;
  struct addrinfo *addrs;
  const struct addrinfo **order; /* d->addrs, families interleaved */
  size_t n_addrs;
  size_t next_index; /* next address of order to try */
  attempt *attempts;
  size_t n_attempts;
  size_t in_flight;
  mim_timer *deadline;
  mim_timer *stagger;
  mim_timer *kick;
  mim_net_conn *conn;   /* the winner, during the TLS handshake */
  mim_watch *tls_watch; /* on conn->fd during the handshake */
  char last_err[DETAIL_MAX];
};

/* snprintf for details: cutting a long message short is fine (the caller's buffer is the
 * bound), so this one wrapper keeps gcc's truncation warnings off every call. */
static void textf(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void textf(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
}

static void sys_text(int err, char *buf, size_t cap) {
  if (strerror_r(err, buf, cap) != 0) {
    textf(buf, cap, "error %d", err);
  }
}

/* ---- parsing ---- */

static bool valid_port(const char *p) {
  if (*p == '\0' || strlen(p) > 5) {
    return false;
  }
  long v = 0;
  for (const char *c = p; *c; c++) {
    if (*c < '0' || *c > '9') {
      return false;
    }
    v = v * 10 + (*c - '0');
  }
  return v >= 1 && v <= 65535;
}

/* "host:port" or "[v6]:port" into host and port; false when malformed. */
static bool split_host_port(const char *hp, char *host, size_t host_cap, char *port,
                            size_t port_cap) {
  const char *colon;
  const char *h = hp;
  size_t hlen;
  if (hp[0] == '[') {
    const char *close = strchr(hp, ']');
    if (close == NULL || close[1] != ':') {
      return false;
    }
    h = hp + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(hp, ':');
    if (colon == NULL || memchr(hp, ':', (size_t)(colon - hp)) != NULL) {
      return false; /* no port, or an IPv6 literal without brackets */
    }
    hlen = (size_t)(colon - hp);
  }
  if (hlen == 0 || hlen >= host_cap || strlen(colon + 1) >= port_cap) {
    return false;
  }
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  strcpy(port, colon + 1); /* NOLINT: length checked above */
  return valid_port(port);
}

/* ---- the TLS context ---- */

/* Socket BIO that writes with MSG_NOSIGNAL: OpenSSL's own socket BIO uses write(), which
 * raises SIGPIPE in the application when the peer has gone. */
static int bio_fd(BIO *b) {
  return (int)(intptr_t)BIO_get_data(b);
}

static int bio_write(BIO *b, const char *buf, int len) {
  BIO_clear_retry_flags(b);
  ssize_t n;
  do {
    n = send(bio_fd(b), buf, (size_t)len, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    BIO_set_retry_write(b);
  }
  return (int)n;
}

static int bio_read(BIO *b, char *buf, int len) {
  BIO_clear_retry_flags(b);
  ssize_t n;
  do {
    n = recv(bio_fd(b), buf, (size_t)len, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    BIO_set_retry_read(b);
  }
  return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b;
  (void)num;
  (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static mim_status load_ca_file(SSL_CTX *ctx, const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    char why[128];
    sys_text(errno, why, sizeof why);
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "ca_file %s: cannot read it: %s", path, why);
  }
  X509_STORE *store = SSL_CTX_get_cert_store(ctx);
  int count = 0;
  X509 *cert;
  while ((cert = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
    if (X509_STORE_add_cert(store, cert) == 1) {
      count++;
    }
    X509_free(cert);
  }
  fclose(f);
  ERR_clear_error(); /* the read loop ends on a "no start line" error */
  if (count == 0) {
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "ca_file %s: no PEM certificate in it", path);
  }
  return MIM_OK;
}

const char *mim_net_system_ca_dir = "/etc/ssl/certs";
const char *mim_net_system_ca_file = "/etc/ssl/certs/ca-certificates.crt";

/* True when dir holds OpenSSL's subject-hash links ("1a2b3c4d.0"), which let a lookup
 * read only the roots a handshake needs. */
static bool has_hash_links(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) {
    return false;
  }
  bool found = false;
  const struct dirent *e;
  while (!found && (e = readdir(d)) != NULL) {
    const char *n = e->d_name;
    found = strlen(n) == 10 && strspn(n, "0123456789abcdef") == 8 && n[8] == '.' && n[9] >= '0' &&
            n[9] <= '9';
  }
  closedir(d);
  return found;
}

/* System roots: the hashed directory when there is one (read lazily: parsing Debian's
 * whole bundle up front costs about 1.4 MiB of RSS per process), else the bundle file,
 * else OpenSSL's defaults. */
static int load_system_roots(SSL_CTX *ctx) {
  if (has_hash_links(mim_net_system_ca_dir)) {
    return SSL_CTX_load_verify_dir(ctx, mim_net_system_ca_dir);
  }
  if (access(mim_net_system_ca_file, R_OK) == 0) {
    return SSL_CTX_load_verify_file(ctx, mim_net_system_ca_file);
  }
  return SSL_CTX_set_default_verify_paths(ctx);
}

static mim_status load_roots(SSL_CTX *ctx, const char *ca_file) {
  if (ca_file != NULL) {
    return load_ca_file(ctx, ca_file);
  }
  int ok = load_system_roots(ctx);
  ERR_clear_error();
  if (ok != 1) {
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "TLS: cannot load the system CA certificates");
  }
  return MIM_OK;
}

static mim_status make_ssl_ctx(mim_net *net, const char *ca_file) {
  static const unsigned char alpn[] = {2, 'h', '2'};
  net->ctx = SSL_CTX_new(TLS_client_method());
  if (net->ctx == NULL) {
    return mim_fail(MIM_ERR_NO_MEMORY, "TLS: cannot create the OpenSSL context");
  }
  SSL_CTX_set_min_proto_version(net->ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(net->ctx, SSL_VERIFY_PEER, NULL);
  /* A peer that closes without close_notify reads as end of stream: HTTP/2 frames its
   * own data, so truncation is noticed above us. */
  SSL_CTX_set_options(net->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(net->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_alpn_protos(net->ctx, alpn, sizeof alpn) != 0) {
    return mim_fail(MIM_ERR_NO_MEMORY, "TLS: cannot set ALPN");
  }
  mim_status st = load_roots(net->ctx, ca_file);
  if (st != MIM_OK) {
    return st;
  }
  net->bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mim socket");
  if (net->bio_method == NULL || !BIO_meth_set_write(net->bio_method, bio_write) ||
      !BIO_meth_set_read(net->bio_method, bio_read) ||
      !BIO_meth_set_ctrl(net->bio_method, bio_ctrl)) {
    return mim_fail(MIM_ERR_NO_MEMORY, "TLS: cannot create the socket BIO");
  }
  return MIM_OK;
}

mim_status mim_net_create(mim_reactor *r, const mim_net_config *config, mim_net **out) {
  *out = NULL;
  if (r == NULL || config == NULL) {
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_net_create: reactor and config required");
  }
  mim_net *net = calloc(1, sizeof *net);
  if (net == NULL) {
    return mim_fail(MIM_ERR_NO_MEMORY, "mim_net_create: out of memory");
  }
  net->r = r;
  net->res = calloc(1, sizeof *net->res);
  if (net->res == NULL) {
    free(net);
    return mim_fail(MIM_ERR_NO_MEMORY, "mim_net_create: out of memory");
  }
  net->res->r = r;
  pthread_mutex_init(&net->res->mu, NULL);
  pthread_cond_init(&net->res->cv, NULL);
  if (config->tls) {
    mim_status st = make_ssl_ctx(net, config->ca_file);
    if (st != MIM_OK) {
      mim_net_free(net);
      return st;
    }
  }
  *out = net;
  return MIM_OK;
}

static void free_lookup(lookup *lk) {
  if (lk->res != NULL) {
    freeaddrinfo(lk->res);
  }
  free(lk);
}

static void free_lookup_list(lookup *lk) {
  while (lk != NULL) {
    lookup *next = lk->next;
    free_lookup(lk);
    lk = next;
  }
}

static void resolver_destroy(resolver *rs) {
  free_lookup_list(rs->queue_head);
  free_lookup_list(rs->orphans);
  pthread_cond_destroy(&rs->cv);
  pthread_mutex_destroy(&rs->mu);
  free(rs);
}

/* Stops the resolver: joins an idle thread; one inside getaddrinfo is detached and
 * frees the resolver itself when the lookup returns. */
static void resolver_stop(resolver *rs) {
  pthread_mutex_lock(&rs->mu);
  rs->stopping = true;
  pthread_cond_broadcast(&rs->cv);
  bool join = rs->started && !rs->busy;
  if (rs->started && rs->busy) {
    rs->detached = true;
    pthread_detach(rs->thread);
  }
  bool handed_over = rs->detached;
  pthread_mutex_unlock(&rs->mu);
  if (join) {
    pthread_join(rs->thread, NULL);
  }
  if (!handed_over) {
    resolver_destroy(rs);
  }
}

void mim_net_free(mim_net *net) {
  if (net == NULL) {
    return;
  }
  if (net->res != NULL) {
    resolver_stop(net->res);
  }
  SSL_CTX_free(net->ctx);
  BIO_meth_free(net->bio_method);
  free(net);
}

/* ---- the resolver thread ---- */

int (*mim_net_lookup_fn)(const char *host, const char *port, const struct addrinfo *hints,
                         struct addrinfo **res) = getaddrinfo;

static void lookup_done(void *arg);

static void run_lookup(lookup *lk) {
  struct addrinfo hints = {0};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  errno = 0;
  lk->gai_err = mim_net_lookup_fn(lk->host, lk->port, &hints, &lk->res);
  lk->sys_errno = errno;
}

/* Hands lk's result to the loop; rs->mu held, so mim_net_free (and after it the
 * reactor's end) cannot come in between. */
static void deliver_locked(resolver *rs, lookup *lk) {
  if (rs->stopping) {
    free_lookup(lk); /* every dial has ended (mim_net_free's contract) */
    return;
  }
  if (mim_reactor_post(rs->r, lookup_done, lk) == MIM_OK) {
    return;
  }
  /* The loop is going away: nobody will run lookup_done. A dial still waiting ends by
   * its own deadline and unlinks itself; the resolver's end frees what is parked here. */
  if (lk->dial == NULL) {
    free_lookup(lk);
  } else {
    lk->next = rs->orphans;
    rs->orphans = lk;
  }
}

static void *resolver_main(void *arg) {
  resolver *rs = arg;
  pthread_mutex_lock(&rs->mu);
  for (;;) {
    while (!rs->stopping && rs->queue_head == NULL) {
      pthread_cond_wait(&rs->cv, &rs->mu);
    }
    if (rs->stopping) {
      break;
    }
    lookup *lk = rs->queue_head;
    rs->queue_head = lk->next;
    if (rs->queue_head == NULL) {
      rs->queue_tail = NULL;
    }
    lk->next = NULL;
    rs->busy = true;
    pthread_mutex_unlock(&rs->mu);
    run_lookup(lk);
    pthread_mutex_lock(&rs->mu);
    rs->busy = false;
    deliver_locked(rs, lk);
  }
  bool owner = rs->detached;
  pthread_mutex_unlock(&rs->mu);
  if (owner) {
    resolver_destroy(rs);
  }
  return NULL;
}

/* Queues a lookup for d, starting the resolver thread on first need. */
static mim_status enqueue_lookup(mim_net_dial *d) {
  resolver *rs = d->net->res;
  lookup *lk = calloc(1, sizeof *lk);
  if (lk == NULL) {
    return mim_fail(MIM_ERR_NO_MEMORY, "resolving %s: out of memory", d->host_port);
  }
  textf(lk->host, sizeof lk->host, "%s", d->host);
  textf(lk->port, sizeof lk->port, "%s", d->port);
  lk->dial = d;
  pthread_mutex_lock(&rs->mu);
  if (!rs->started) {
    if (pthread_create(&rs->thread, NULL, resolver_main, rs) != 0) {
      pthread_mutex_unlock(&rs->mu);
      free(lk);
      return mim_fail(MIM_ERR_RESOURCE_EXHAUSTED, "resolving %s: cannot start a thread",
                      d->host_port);
    }
    rs->started = true;
  }
  if (rs->queue_tail != NULL) {
    rs->queue_tail->next = lk;
  } else {
    rs->queue_head = lk;
  }
  rs->queue_tail = lk;
  pthread_cond_signal(&rs->cv);
  pthread_mutex_unlock(&rs->mu);
  d->lookup = lk;
  return MIM_OK;
}

/* Loop thread: unlinks d from its lookup so the result, whenever it comes, is dropped. */
static void detach_lookup(mim_net_dial *d) {
  if (d->lookup == NULL) {
    return;
  }
  pthread_mutex_lock(&d->net->res->mu);
  d->lookup->dial = NULL;
  pthread_mutex_unlock(&d->net->res->mu);
  d->lookup = NULL;
}

/* ---- dial bookkeeping ---- */

static void cancel_timer(mim_timer **t) {
  if (*t != NULL) {
    mim_timer_cancel(*t);
    *t = NULL;
  }
}

static void close_attempt(attempt *a) {
  if (a->fd < 0) {
    return;
  }
  mim_reactor_unwatch(a->watch);
  a->watch = NULL;
  close(a->fd);
  a->fd = -1;
  a->dial->in_flight--;
}

/* Releases everything d holds (not the conn it hands out) and frees d. */
static void dial_release(mim_net_dial *d) {
  cancel_timer(&d->deadline);
  cancel_timer(&d->stagger);
  cancel_timer(&d->kick);
  detach_lookup(d);
  for (size_t i = 0; i < d->n_attempts; i++) {
    close_attempt(&d->attempts[i]);
  }
  free(d->attempts);
  free(d->order);
  if (d->addrs != NULL) {
    freeaddrinfo(d->addrs);
  }
  mim_reactor_unwatch(d->tls_watch);
  mim_net_conn_close(d->conn);
  free(d);
}

/* Ends d: runs the callback exactly once, after d is gone (the callback may free what
 * owns d). */
static void dial_finish(mim_net_dial *d, mim_status st, const char *detail) {
  mim_net_dial_cb cb = d->cb;
  void *user = d->user;
  mim_net_conn *conn = NULL;
  char text[DETAIL_MAX];
  textf(text, sizeof text, "%s", detail != NULL ? detail : "");
  if (st == MIM_OK) {
    conn = d->conn;
    d->conn = NULL;
    mim_reactor_unwatch(d->tls_watch);
    d->tls_watch = NULL;
  }
  dial_release(d);
  cb(user, st, st == MIM_OK ? NULL : text, conn);
}

static void dial_fail_last(mim_net_dial *d) {
  dial_finish(d, MIM_ERR_UNAVAILABLE, d->last_err);
}

static void on_deadline(void *user) {
  mim_net_dial *d = user;
  d->deadline = NULL;
  char text[DETAIL_MAX];
  if (d->conn != NULL) {
    textf(text, sizeof text,
          "no answer from %s within %lld ms to the TLS handshake: does it speak TLS on this "
          "port? (TLS handshake with %s: timed out)",
          d->host_port, (long long)d->timeout_ms, d->host_port);
  } else if (d->lookup != NULL) {
    textf(text, sizeof text,
          "cannot resolve %s (DNS) within %lld ms: check the endpoint and the network "
          "(resolving %s: timed out)",
          d->host_port, (long long)d->timeout_ms, d->host_port);
  } else {
    textf(text, sizeof text,
          "no answer from %s within %lld ms while connecting: is a firewall dropping "
          "packets? (connecting to %s: timed out%s%s)",
          d->host_port, (long long)d->timeout_ms, d->host_port, d->last_err[0] ? "; " : "",
          d->last_err);
  }
  dial_finish(d, MIM_ERR_DEADLINE_EXCEEDED, text);
}

/* ---- connecting ---- */

static void start_tls(mim_net_dial *d);

static void addr_text(const struct addrinfo *ai, char *buf, size_t cap) {
  char host[INET6_ADDRSTRLEN] = "?";
  char serv[8] = "";
  getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof host, serv, sizeof serv,
              NI_NUMERICHOST | NI_NUMERICSERV);
  textf(buf, cap, ai->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
}

/* The hint goes first: it survives the prefixes outer layers add and the truncation of
 * long details; the system's own words follow in parentheses. */
static void note_error(mim_net_dial *d, const attempt *a, int err) {
  char sys[96];
  sys_text(err, sys, sizeof sys);
  if (err == ECONNREFUSED) {
    textf(d->last_err, sizeof d->last_err,
          "nothing listens on %s: is the server running, and is the port right? (connecting "
          "to %s: connection refused)",
          d->host_port, a->addr);
  } else if (err == ENETUNREACH || err == EHOSTUNREACH || err == EADDRNOTAVAIL) {
    textf(d->last_err, sizeof d->last_err,
          "cannot reach %s: check the network and the endpoint (connecting to %s: "
          "unreachable (%s))",
          d->host_port, a->addr, sys);
  } else {
    textf(d->last_err, sizeof d->last_err, "cannot connect to %s (connecting to %s: %s)",
          d->host_port, a->addr, sys);
  }
}

static mim_net_conn *conn_new(const char *peer, int fd) {
  mim_net_conn *c = calloc(1, sizeof *c);
  if (c != NULL) {
    c->fd = fd;
    c->read_wants = MIM_LOOP_READ;
    textf(c->peer, sizeof c->peer, "%s", peer);
  }
  return c;
}

/* a connected: it wins, every other attempt is closed. */
static void attempt_won(mim_net_dial *d, attempt *a) {
  int fd = a->fd;
  mim_reactor_unwatch(a->watch);
  a->watch = NULL;
  a->fd = -1;
  d->in_flight--;
  cancel_timer(&d->stagger);
  for (size_t i = 0; i < d->n_attempts; i++) {
    close_attempt(&d->attempts[i]);
  }
  d->conn = conn_new(d->host_port, fd);
  if (d->conn == NULL) {
    close(fd);
    dial_finish(d, MIM_ERR_NO_MEMORY, "connected, but out of memory");
    return;
  }
  if (d->net->ctx == NULL) {
    dial_finish(d, MIM_OK, NULL);
    return;
  }
  start_tls(d);
}

static void start_next(mim_net_dial *d);

static bool has_next(const mim_net_dial *d) {
  return d->next_index < d->n_addrs;
}

/* a failed with err: the next address gets its turn now rather than after the stagger. */
static void attempt_failed(mim_net_dial *d, attempt *a, int err) {
  note_error(d, a, err);
  close_attempt(a);
  if (has_next(d)) {
    cancel_timer(&d->stagger);
    start_next(d);
  } else if (d->in_flight == 0) {
    dial_fail_last(d);
  }
}

static void on_connect_ready(void *user, unsigned events) {
  attempt *a = user;
  (void)events;
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
    err = errno;
  }
  if (err == 0) {
    attempt_won(a->dial, a);
  } else {
    attempt_failed(a->dial, a, err);
  }
}

static void on_stagger(void *user) {
  mim_net_dial *d = user;
  d->stagger = NULL;
  start_next(d);
}

/* Opens a socket and starts connecting to ai; returns 0, or the errno of a failure. */
static int open_attempt(mim_net_dial *d, attempt *a, const struct addrinfo *ai) {
  a->dial = d;
  addr_text(ai, a->addr, sizeof a->addr);
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) {
    return errno;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  a->fd = fd;
  d->in_flight++;
  int rc;
  do {
    rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EINPROGRESS) {
    return errno;
  }
  /* Writable means connected or failed (SO_ERROR tells), also when connect returned 0. */
  mim_status st = mim_reactor_watch(d->net->r, fd, MIM_LOOP_WRITE, on_connect_ready, a, &a->watch);
  return st == MIM_OK ? 0 : ENOMEM;
}

/* Starts the next untried address; fails the dial when none is left and none is in
 * flight. */
static void start_next(mim_net_dial *d) {
  while (has_next(d)) {
    const struct addrinfo *ai = d->order[d->next_index++];
    attempt *a = &d->attempts[d->n_attempts++];
    a->fd = -1;
    int err = open_attempt(d, a, ai);
    if (err == 0) {
      if (has_next(d) &&
          mim_reactor_timer(d->net->r, STAGGER_MS, on_stagger, d, &d->stagger) != MIM_OK) {
        d->stagger = NULL; /* no timer: the next address waits for this one to fail */
      }
      return;
    }
    note_error(d, a, err);
    close_attempt(a);
  }
  if (d->in_flight == 0) {
    dial_fail_last(d);
  }
}

/* Fills d->order from d->addrs (n entries) alternating address families, starting with
 * the first one's (RFC 8305 section 4): when one family is broken, the other gets its
 * turn after one stagger, not after all of the broken family's addresses. */
static void interleave_families(mim_net_dial *d, size_t n) {
  int first = d->addrs->ai_family;
  const struct addrinfo *same = d->addrs;
  const struct addrinfo *other = d->addrs;
  size_t k = 0;
  bool take_same = true;
  while (k < n) {
    const struct addrinfo **from = take_same ? &same : &other;
    while (*from != NULL && ((*from)->ai_family == first) != take_same) {
      *from = (*from)->ai_next;
    }
    if (*from != NULL) {
      d->order[k++] = *from;
      *from = (*from)->ai_next;
    }
    take_same = !take_same;
  }
}

/* Begins connecting to the resolved list d->addrs. */
static void start_connecting(mim_net_dial *d) {
  size_t n = 0;
  for (const struct addrinfo *ai = d->addrs; ai != NULL; ai = ai->ai_next) {
    n++;
  }
  d->attempts = calloc(n > 0 ? n : 1, sizeof *d->attempts);
  d->order = calloc(n > 0 ? n : 1, sizeof *d->order);
  if (d->attempts == NULL || d->order == NULL) {
    dial_finish(d, MIM_ERR_NO_MEMORY, "connecting: out of memory");
    return;
  }
  if (n > 0) {
    interleave_families(d, n);
  }
  d->n_addrs = n;
  textf(d->last_err, sizeof d->last_err, "resolving %s: no address", d->host_port);
  start_next(d);
}

static void on_kick(void *user) {
  mim_net_dial *d = user;
  d->kick = NULL;
  start_connecting(d);
}

static void lookup_done(void *arg) {
  lookup *lk = arg;
  /* No lock: only the loop thread writes lk->dial, and the resolver thread is done with
   * lk once it has been posted. */
  mim_net_dial *d = lk->dial;
  if (d == NULL) {
    free_lookup(lk);
    return;
  }
  d->lookup = NULL;
  if (lk->gai_err != 0) {
    char text[DETAIL_MAX];
    char sys[96] = "";
    if (lk->gai_err == EAI_SYSTEM) {
      sys_text(lk->sys_errno, sys, sizeof sys);
    }
    textf(text, sizeof text,
          "cannot resolve %s (DNS): check the endpoint and the network (resolving %s: %s)",
          d->host_port, d->host_port, lk->gai_err == EAI_SYSTEM ? sys : gai_strerror(lk->gai_err));
    free_lookup(lk);
    dial_finish(d, MIM_ERR_UNAVAILABLE, text);
    return;
  }
  d->addrs = lk->res;
  lk->res = NULL;
  free_lookup(lk);
  start_connecting(d);
}

/* ---- TLS handshake ---- */

static bool is_ip_literal(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* What to do about a certificate the handshake refused. */
static const char *verify_hint(long vr) {
  switch (vr) {
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH:
    return "it was issued for another name: check the endpoint";
  case X509_V_ERR_CERT_HAS_EXPIRED:
  case X509_V_ERR_CERT_NOT_YET_VALID:
    return "it is outside its validity period: check the server's certificate and this "
           "machine's clock";
  default:
    return "give the CA that signed it as ca_file (or install it in the system roots)";
  }
}

/* What to do about an OpenSSL error of the handshake, or NULL for no hint. */
static const char *tls_reason_hint(unsigned long e) {
  switch (ERR_GET_REASON(e)) {
  case SSL_R_WRONG_VERSION_NUMBER:
  case SSL_R_PACKET_LENGTH_TOO_LONG:
    return "the server does not speak TLS on this port (a plaintext server? then use "
           "MIM_TLS_OFF or a loopback endpoint)";
  case SSL_R_UNSUPPORTED_PROTOCOL:
  case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
  case SSL_R_NO_PROTOCOLS_AVAILABLE:
    return "the server and this client share no TLS version (this client needs TLS 1.2 or "
           "newer)";
  default:
    return NULL;
  }
}

static void tls_error_text(const mim_net_conn *c, int ssl_err, char *buf, size_t cap) {
  long vr = SSL_get_verify_result(c->ssl);
  unsigned long e = ERR_peek_last_error();
  if (vr != X509_V_OK) {
    textf(buf, cap,
          "the TLS certificate of %s is not trusted (%s): %s (TLS handshake with %s: "
          "certificate verify failed: %s)",
          c->peer, X509_verify_cert_error_string(vr), verify_hint(vr), c->peer,
          X509_verify_cert_error_string(vr));
  } else if (e != 0) {
    char why[200];
    ERR_error_string_n(e, why, sizeof why);
    const char *hint = tls_reason_hint(e);
    textf(buf, cap, "TLS with %s failed%s%s (TLS handshake with %s: %s)", c->peer, hint ? ": " : "",
          hint ? hint : "", c->peer, why);
  } else if (ssl_err == SSL_ERROR_SYSCALL && errno != 0) {
    char why[128];
    sys_text(errno, why, sizeof why);
    textf(buf, cap,
          "%s dropped the connection during the TLS handshake: does it speak TLS on this "
          "port? (TLS handshake with %s: %s)",
          c->peer, c->peer, why);
  } else {
    textf(buf, cap,
          "%s closed the connection during the TLS handshake: does it speak TLS on this "
          "port? (TLS handshake with %s: connection closed by the server)",
          c->peer, c->peer);
  }
  ERR_clear_error();
}

/* One handshake step: done (ALPN checked), waiting (watch updated) or failed. */
static void tls_step(mim_net_dial *d) {
  mim_net_conn *c = d->conn;
  ERR_clear_error();
  errno = 0;
  int rc = SSL_connect(c->ssl);
  if (rc == 1) {
    const unsigned char *proto = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(c->ssl, &proto, &len);
    if (len != 2 || memcmp(proto, "h2", 2) != 0) {
      char text[DETAIL_MAX];
      textf(text, sizeof text,
            "TLS handshake with %s: the server did not agree to HTTP/2 "
            "(ALPN h2)",
            d->host_port);
      dial_finish(d, MIM_ERR_UNAVAILABLE, text);
      return;
    }
    dial_finish(d, MIM_OK, NULL);
    return;
  }
  int err = SSL_get_error(c->ssl, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    mim_reactor_watch_set(d->tls_watch,
                          err == SSL_ERROR_WANT_READ ? MIM_LOOP_READ : MIM_LOOP_WRITE);
    return;
  }
  char text[DETAIL_MAX];
  tls_error_text(c, err, text, sizeof text);
  dial_finish(d, MIM_ERR_UNAVAILABLE, text);
}

static void on_tls_ready(void *user, unsigned events) {
  (void)events;
  tls_step(user);
}

static bool set_peer_name(mim_net_dial *d, SSL *ssl) {
  if (d->ip_literal) {
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), d->host) == 1;
  }
  return SSL_set_tlsext_host_name(ssl, d->host) == 1 && SSL_set1_host(ssl, d->host) == 1;
}

static void start_tls(mim_net_dial *d) {
  mim_net_conn *c = d->conn;
  c->ssl = SSL_new(d->net->ctx);
  BIO *bio = BIO_new(d->net->bio_method);
  if (c->ssl == NULL || bio == NULL) {
    BIO_free(bio);
    dial_finish(d, MIM_ERR_NO_MEMORY, "TLS: out of memory");
    return;
  }
  BIO_set_data(bio, (void *)(intptr_t)c->fd);
  BIO_set_init(bio, 1);
  SSL_set_bio(c->ssl, bio, bio);
  if (!set_peer_name(d, c->ssl)) {
    ERR_clear_error();
    char text[DETAIL_MAX];
    textf(text, sizeof text, "TLS: cannot set the expected name %s", d->host);
    dial_finish(d, MIM_ERR_INTERNAL, text);
    return;
  }
  if (mim_reactor_watch(d->net->r, c->fd, MIM_LOOP_WRITE, on_tls_ready, d, &d->tls_watch) !=
      MIM_OK) {
    dial_finish(d, MIM_ERR_NO_MEMORY, "TLS: cannot watch the socket");
    return;
  }
  tls_step(d);
}

/* ---- the public dial ---- */

mim_status mim_net_dial_start(mim_net *net, const char *host_port, int64_t timeout_ms,
                              mim_net_dial_cb cb, void *user, mim_net_dial **out) {
  *out = NULL;
  if (net == NULL || host_port == NULL || cb == NULL) {
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_net_dial: net, address and callback required");
  }
  mim_net_dial *d = calloc(1, sizeof *d);
  if (d == NULL) {
    return mim_fail(MIM_ERR_NO_MEMORY, "dialing %s: out of memory", host_port);
  }
  if (!split_host_port(host_port, d->host, sizeof d->host, d->port, sizeof d->port)) {
    free(d);
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "bad address '%s': expected host:port or [ipv6]:port",
                    host_port);
  }
  d->net = net;
  d->cb = cb;
  d->user = user;
  d->timeout_ms = timeout_ms;
  textf(d->host_port, sizeof d->host_port, "%s", host_port);
  d->ip_literal = is_ip_literal(d->host);
  mim_status st = mim_reactor_timer(net->r, timeout_ms, on_deadline, d, &d->deadline);
  if (st == MIM_OK && d->ip_literal) {
    struct addrinfo hints = {0};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(d->host, d->port, &hints, &d->addrs) != 0) {
      d->addrs = NULL;
      st = mim_fail(MIM_ERR_NO_MEMORY, "dialing %s: cannot build the address", host_port);
    } else {
      /* Deferred so the callback never runs inside mim_net_dial_start. */
      st = mim_reactor_timer(net->r, 0, on_kick, d, &d->kick);
    }
  } else if (st == MIM_OK) {
    st = enqueue_lookup(d);
  }
  if (st != MIM_OK) {
    dial_release(d);
    return st;
  }
  *out = d;
  return MIM_OK;
}

void mim_net_dial_cancel(mim_net_dial *dial) {
  if (dial != NULL) {
    dial_release(dial);
  }
}

/* ---- the connected stream ---- */

int mim_net_conn_fd(const mim_net_conn *c) {
  return c->fd;
}

const char *mim_net_conn_peer(const mim_net_conn *c) {
  return c->peer;
}

const char *mim_net_conn_error(const mim_net_conn *c) {
  return c->err;
}

unsigned mim_net_conn_wants(const mim_net_conn *c) {
  return c->read_wants | c->write_wants;
}

static ssize_t sys_fail(mim_net_conn *c, const char *what, int err) {
  c->broken = true;
  char why[128];
  sys_text(err, why, sizeof why);
  textf(c->err, sizeof c->err, "%s %s: %s", what, c->peer, why);
  return MIM_NET_ERROR;
}

/* Maps an SSL_read/SSL_write failure: AGAIN with the direction it waits for, 0 for the
 * peer's close_notify, or ERROR with the TLS text. */
static ssize_t tls_result(mim_net_conn *c, int rc, const char *what, unsigned *wants) {
  int err = SSL_get_error(c->ssl, rc);
  switch (err) {
  case SSL_ERROR_WANT_READ:
    *wants = MIM_LOOP_READ;
    return MIM_NET_AGAIN;
  case SSL_ERROR_WANT_WRITE:
    *wants = MIM_LOOP_WRITE;
    return MIM_NET_AGAIN;
  case SSL_ERROR_ZERO_RETURN:
    return 0;
  case SSL_ERROR_SYSCALL:
    if (errno != 0) {
      return sys_fail(c, what, errno);
    }
    return 0; /* EOF without close_notify (SSL_OP_IGNORE_UNEXPECTED_EOF) */
  default: {
    c->broken = true;
    char why[200] = "TLS error";
    unsigned long e = ERR_get_error();
    if (e != 0) {
      ERR_error_string_n(e, why, sizeof why);
    }
    ERR_clear_error();
    textf(c->err, sizeof c->err, "%s %s: %s", what, c->peer, why);
    return MIM_NET_ERROR;
  }
  }
}

ssize_t mim_net_conn_read(mim_net_conn *c, void *buf, size_t cap) {
  if (c->ssl != NULL) {
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_read_ex(c->ssl, buf, cap, &n);
    return rc == 1 ? (ssize_t)n : tls_result(c, rc, "reading from", &c->read_wants);
  }
  for (;;) {
    ssize_t n = recv(c->fd, buf, cap, 0);
    if (n >= 0) {
      return n;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      c->read_wants = MIM_LOOP_READ;
      return MIM_NET_AGAIN;
    }
    if (errno != EINTR) {
      return sys_fail(c, "reading from", errno);
    }
  }
}

ssize_t mim_net_conn_write(mim_net_conn *c, const void *buf, size_t len) {
  if (c->ssl != NULL) {
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_write_ex(c->ssl, buf, len, &n);
    if (rc == 1) {
      c->write_wants = 0;
      return (ssize_t)n;
    }
    return tls_result(c, rc, "writing to", &c->write_wants);
  }
  for (;;) {
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) {
      c->write_wants = 0;
      return n;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      c->write_wants = MIM_LOOP_WRITE;
      return MIM_NET_AGAIN;
    }
    if (errno != EINTR) {
      return sys_fail(c, "writing to", errno);
    }
  }
}

void mim_net_conn_close(mim_net_conn *c) {
  if (c == NULL) {
    return;
  }
  if (c->ssl != NULL) {
    /* One non-blocking attempt: a full socket buffer just skips the close_notify. OpenSSL
     * forbids SSL_shutdown after a fatal error. */
    if (SSL_is_init_finished(c->ssl) && !c->broken) {
      SSL_shutdown(c->ssl);
    }
    ERR_clear_error();
    SSL_free(c->ssl);
  }
  close(c->fd);
  free(c);
}
