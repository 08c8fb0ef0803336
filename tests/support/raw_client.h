/* Test helper: talk to mim-local below the public API, with the internal transport and
 * hand-packed protobuf, so tests can send what the library never would (garbage bodies,
 * oversize frames, missing metadata, tampered tokens) and watch raw subscription items.
 *
 *   mim_transport *t = raw_connect(srv, NULL);        // root token, all planes
 *   assert_int_equal(raw_ping(t), MIM_OK);
 *   raw_sub s; raw_sub_init(&s);
 *   assert_int_equal(raw_subscribe(t, "cache", "topic", 0, 0, &s), MIM_OK);
 *   assert_true(raw_sub_wait(&s, RAW_HEARTBEATS, 1, 5000));
 *   ...
 *   raw_sub_cancel(&s); assert_true(raw_sub_wait_closed(&s, 5000));
 *   raw_sub_destroy(&s); mim_transport_free(t);
 *
 * Everything here only reports; the tests assert. */
#ifndef MIM_TESTS_RAW_CLIENT_H
#define MIM_TESTS_RAW_CLIENT_H

#include "mim_local.h"
#include "transport.h"

#include "clock.h" /* cmn_mono_ms */
#include "permissionmessages.pb-c.h"

#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An explicit grant of read-write on every cache, the usual thing for the root key to
 * mint (a super-user token may not be minted). Lives in the caller's raw_grant. */
typedef struct raw_grant {
  PermissionMessages__PermissionsType__CachePermissions cache;
  PermissionMessages__PermissionsType__All all;
  PermissionMessages__PermissionsType type;
  PermissionMessages__PermissionsType *types[1];
  PermissionMessages__ExplicitPermissions explicit_;
  PermissionMessages__Permissions perms;
} raw_grant;
/* Fills g and returns its Permissions message (valid as long as g is). */
PermissionMessages__Permissions *raw_grant_all_caches(raw_grant *g);

/* The root key's token (malloc'd; caller frees), or NULL. */
char *raw_root_token(const mim_local *srv);

/* A plaintext transport with every plane on srv->endpoint. token NULL = the root key's
 * token; "" = no token. NULL on failure. */
mim_transport *raw_connect(const mim_local *srv, const char *token);

/* Like raw_connect, but on a TCP connection of its own. gRPC core shares one connection
 * among all channels to the same target with the same arguments (so with TRANSPORT=grpc
 * plain raw_connect transports multiplex over one socket); a unique
 * "ipv4:127.0.0.1:PORT?conn=N" target gives each transport its own. The HTTP/2 transport
 * never shares connections between transports. NULL on failure. */
mim_transport *raw_connect_own(const mim_local *srv, const char *token);

/* Plane of a full method path ("/control_client..." control, "/token..." token, else cache). */
mim_host_kind raw_host_of(const char *method);

/* malloc'd serialization of m (never NULL for a valid message; *len may be 0). */
uint8_t *raw_pack(const ProtobufCMessage *m, size_t *len);

/* Blocking unary call with raw request bytes (deadline 10 s). On MIM_OK *resp (if not
 * NULL) holds the malloc'd response. detail (if not NULL, size n) gets the error detail. */
mim_status raw_call_bytes(mim_transport *t, const char *method, const char *cache,
                          const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len,
                          char *detail, size_t n);

/* Same with a message packed here. */
mim_status raw_call(mim_transport *t, const char *method, const char *cache,
                    const ProtobufCMessage *req, uint8_t **resp, size_t *resp_len);

mim_status raw_ping(mim_transport *t);

/* Publishes value (text when text is true, else binary) of len bytes. */
mim_status raw_publish(mim_transport *t, const char *cache, const char *topic, const void *value,
                       size_t len, bool text);

/* Status of a server stream that the server ends by itself (e.g. a bad Subscribe):
 * starts the stream with raw bytes and waits up to timeout_ms for its close. Items that
 * arrive before the close are counted in *items (if not NULL). MIM_ERR_DEADLINE_EXCEEDED
 * if it did not close in time (the stream is then cancelled). */
mim_status raw_stream_status(mim_transport *t, const char *method, const char *cache,
                             const uint8_t *req, size_t len, int timeout_ms, size_t *items);

/* ---- a recording subscriber ---- */

typedef struct raw_sub {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  mim_call *call;    /* valid until closed (guarded by mu) */
  size_t heartbeats; /* counters, guarded by mu */
  size_t items;
  size_t discontinuities;
  size_t bad_order;   /* items whose seq was not the expected next one */
  size_t undecodable; /* messages that did not parse as _SubscriptionItem */
  uint64_t first_seq, last_seq;
  uint64_t next_expected;       /* 0 = take whatever comes first */
  uint64_t disc_last, disc_new; /* last discontinuity seen */
  uint64_t page;                /* sequence_page of the last item */
  size_t value_bytes;           /* sum of item value lengths */
  uint64_t value_hash;          /* FNV-1a over the item values in arrival order */
  bool closed;
  mim_status close_status;
  char close_detail[160];
  /* Test controls (set before subscribing, or under mu). */
  size_t cancel_at_items; /* > 0: the callback cancels the stream when items reaches it */
  bool block;             /* true: on_message waits (on the event thread!) until cleared */
  bool blocking;          /* set while on_message is waiting because of block */
  int64_t last_item_ms;   /* cmn_mono_ms() of the last item */
  int64_t deadline_ms;    /* stream deadline (set before subscribing); 0 = none */
} raw_sub;

/* The hash raw_sub keeps in value_hash: fold each value in arrival order, from h = 0. */
uint64_t raw_value_hash(uint64_t h, const uint8_t *d, size_t n);

void raw_sub_init(raw_sub *s);
void raw_sub_destroy(raw_sub *s);

mim_status raw_subscribe(mim_transport *t, const char *cache, const char *topic, uint64_t resume_at,
                         uint64_t page, raw_sub *s);

/* Cancels the stream if it is still open (safe at any time before destroy). */
void raw_sub_cancel(raw_sub *s);

/* Blocks the subscriber's on_message until raw_sub_release (blocking its transport's
 * event thread). */
void raw_sub_set_block(raw_sub *s, bool block);

typedef enum raw_counter { RAW_HEARTBEATS, RAW_ITEMS, RAW_DISCONTINUITIES } raw_counter;

/* Waits until the counter reaches at least n (true) or timeout_ms passes / the stream
 * closes first (false). */
bool raw_sub_wait(raw_sub *s, raw_counter which, size_t n, int timeout_ms);
/* Waits until on_message is parked by block. */
bool raw_sub_wait_blocking(raw_sub *s, int timeout_ms);
bool raw_sub_wait_closed(raw_sub *s, int timeout_ms);

/* Server process memory from /proc/PID/status ("VmRSS", "VmHWM"), in KiB; -1 if unknown. */
long raw_proc_kib(pid_t pid, const char *field);

/* Number of open sockets of a process (from /proc/PID/fd): its listeners plus one per
 * client connection; -1 if unknown. */
int raw_proc_sockets(pid_t pid);

/* Waits (polling /proc, bounded by timeout_ms) until pid has at most max sockets open;
 * returns the last count seen. */
int raw_wait_sockets_at_most(pid_t pid, int max, int timeout_ms);

#endif
