/* Raw mim-local client for tests: see raw_client.h. */
#include "raw_client.h"

#include "cacheping.pb-c.h"
#include "cachepubsub.pb-c.h"
#include "clock.h"
#include "error.h"
#include "time_scale.h"

#include <dirent.h>
#include <momento/credentials.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Per call; scaled, because under valgrind one process's threads share a core: a publish
 * queued behind 20 subscribers' deliveries once took over 10 s in CI. */
#define RAW_DEADLINE_MS (10000 * (int64_t)test_time_scale())

char *raw_root_token(const mim_local *srv) {
  mim_credentials *c = NULL;
  if (mim_credentials_from_string(srv->root_key, &c) != MIM_OK) {
    return NULL;
  }
  char *tok = strdup(mim_credentials_auth_token(c));
  mim_credentials_free(c);
  return tok;
}

static mim_transport *connect_to(const char *target, const mim_local *srv, const char *token) {
  char *root = token ? NULL : raw_root_token(srv);
  if (!token && !root) {
    return NULL;
  }
  mim_transport_config cfg = {0};
  cfg.hosts[MIM_HOST_CACHE] = target;
  cfg.hosts[MIM_HOST_CONTROL] = target;
  cfg.hosts[MIM_HOST_TOKEN] = target;
  cfg.auth_token = token ? token : root;
  cfg.plaintext = true;
  cfg.agent = "c:im:raw-test";
  mim_transport *t = NULL;
  mim_status st = mim_transport_create(&cfg, &t);
  free(root);
  return st == MIM_OK ? t : NULL;
}

mim_transport *raw_connect(const mim_local *srv, const char *token) {
  return connect_to(srv->endpoint, srv, token);
}

mim_transport *raw_connect_own(const mim_local *srv, const char *token) {
  char target[128];
#ifdef MIM_TRANSPORT_GRPC
  static atomic_ulong next_conn;
  snprintf(target, sizeof target, "ipv4:127.0.0.1:%d?conn=%lu", srv->port,
           atomic_fetch_add(&next_conn, 1));
#else
  /* The HTTP/2 transport never shares connections between transports. */
  snprintf(target, sizeof target, "127.0.0.1:%d", srv->port);
#endif
  return connect_to(target, srv, token); /* the transport copies the target */
}

mim_host_kind raw_host_of(const char *method) {
  if (strncmp(method, "/control_client.", 16) == 0) {
    return MIM_HOST_CONTROL;
  }
  if (strncmp(method, "/token.", 7) == 0) {
    return MIM_HOST_TOKEN;
  }
  return MIM_HOST_CACHE;
}

PermissionMessages__Permissions *raw_grant_all_caches(raw_grant *g) {
  permission_messages__permissions_type__cache_permissions__init(&g->cache);
  permission_messages__permissions_type__all__init(&g->all);
  g->cache.role = PERMISSION_MESSAGES__CACHE_ROLE__CacheReadWrite;
  g->cache.cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ALL_CACHES;
  g->cache.all_caches = &g->all;
  permission_messages__permissions_type__init(&g->type);
  g->type.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_CACHE_PERMISSIONS;
  g->type.cache_permissions = &g->cache;
  g->types[0] = &g->type;
  permission_messages__explicit_permissions__init(&g->explicit_);
  g->explicit_.n_permissions = 1;
  g->explicit_.permissions = g->types;
  permission_messages__permissions__init(&g->perms);
  g->perms.kind_case = PERMISSION_MESSAGES__PERMISSIONS__KIND_EXPLICIT;
  g->perms.explicit_ = &g->explicit_;
  return &g->perms;
}

uint8_t *raw_pack(const ProtobufCMessage *m, size_t *len) {
  *len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(*len ? *len : 1);
  if (buf) {
    protobuf_c_message_pack(m, buf);
  }
  return buf;
}

mim_status raw_call_bytes(mim_transport *t, const char *method, const char *cache,
                          const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len,
                          char *detail, size_t n) {
  uint8_t *r = NULL;
  size_t rl = 0;
  mim_status st = mim_transport_unary_sync(t, raw_host_of(method), method, cache, req, len,
                                           RAW_DEADLINE_MS, &r, &rl);
  if (detail && n) {
    snprintf(detail, n, "%s", st == MIM_OK ? "" : mim_last_error_detail());
  }
  if (resp) {
    *resp = r;
    *resp_len = rl;
  } else {
    free(r);
  }
  return st;
}

mim_status raw_call(mim_transport *t, const char *method, const char *cache,
                    const ProtobufCMessage *req, uint8_t **resp, size_t *resp_len) {
  size_t len;
  uint8_t *buf = raw_pack(req, &len);
  if (!buf) {
    return MIM_ERR_NO_MEMORY;
  }
  mim_status st = raw_call_bytes(t, method, cache, buf, len, resp, resp_len, NULL, 0);
  free(buf);
  return st;
}

mim_status raw_ping(mim_transport *t) {
  CacheClient__PingRequest p = CACHE_CLIENT____PING_REQUEST__INIT;
  return raw_call(t, "/cache_client.Ping/Ping", NULL, &p.base, NULL, NULL);
}

mim_status raw_publish(mim_transport *t, const char *cache, const char *topic, const void *value,
                       size_t len, bool text) {
  CacheClient__Pubsub__TopicValue v = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__INIT;
  char *txt = NULL;
  if (text) {
    txt = malloc(len + 1);
    if (!txt) {
      return MIM_ERR_NO_MEMORY;
    }
    memcpy(txt, value, len);
    txt[len] = '\0';
    v.kind_case = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_TEXT;
    v.text = txt;
  } else {
    v.kind_case = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_BINARY;
    v.binary.data = (uint8_t *)value;
    v.binary.len = len;
  }
  CacheClient__Pubsub__PublishRequest r = CACHE_CLIENT__PUBSUB____PUBLISH_REQUEST__INIT;
  r.cache_name = (char *)cache;
  r.topic = (char *)topic;
  r.value = &v;
  mim_status st = raw_call(t, "/cache_client.pubsub.Pubsub/Publish", NULL, &r.base, NULL, NULL);
  free(txt);
  return st;
}

/* ---- raw_sub ---- */

void raw_sub_init(raw_sub *s) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  cmn_cond_init_monotonic(&s->cv);
}

void raw_sub_destroy(raw_sub *s) {
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
}

/* The value's bytes (text or binary); NULL/0 when it has neither. */
static const uint8_t *value_bytes(const CacheClient__Pubsub__TopicValue *v, size_t *len) {
  *len = 0;
  if (v && v->kind_case == CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_TEXT) {
    *len = strlen(v->text);
    return (const uint8_t *)v->text;
  }
  if (v && v->kind_case == CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_BINARY) {
    *len = v->binary.len;
    return v->binary.data;
  }
  return NULL;
}

/* Chains one value (and a separator) into an FNV-1a hash: equal hashes = same values in
 * the same order. */
uint64_t raw_value_hash(uint64_t h, const uint8_t *d, size_t n) {
  if (h == 0) {
    h = 1469598103934665603ULL;
  }
  for (size_t i = 0; i < n; i++) {
    h = (h ^ d[i]) * 1099511628211ULL;
  }
  return (h ^ 0xffu) * 1099511628211ULL;
}

/* Records one item; the caller holds s->mu. Returns true when the stream should be
 * cancelled (cancel_at_items reached). */
static bool record_locked(raw_sub *s, const CacheClient__Pubsub__SubscriptionItem *it) {
  switch (it->kind_case) {
  case CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_HEARTBEAT:
    s->heartbeats++;
    break;
  case CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_DISCONTINUITY:
    s->discontinuities++;
    s->disc_last = it->discontinuity->last_topic_sequence;
    s->disc_new = it->discontinuity->new_topic_sequence;
    s->next_expected = s->disc_new + 1;
    break;
  case CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_ITEM: {
    uint64_t seq = it->item->topic_sequence_number;
    if (s->next_expected && seq != s->next_expected) {
      s->bad_order++;
    }
    if (s->items == 0) {
      s->first_seq = seq;
    }
    s->items++;
    s->last_seq = seq;
    s->next_expected = seq + 1;
    s->page = it->item->sequence_page;
    size_t vlen;
    const uint8_t *v = value_bytes(it->item->value, &vlen);
    s->value_bytes += vlen;
    s->value_hash = raw_value_hash(s->value_hash, v, vlen);
    s->last_item_ms = cmn_mono_ms();
    return s->cancel_at_items && s->items == s->cancel_at_items;
  }
  default:
    s->undecodable++;
  }
  return false;
}

static void sub_on_message(void *user, const uint8_t *msg, size_t len) {
  raw_sub *s = user;
  CacheClient__Pubsub__SubscriptionItem *it =
      cache_client__pubsub____subscription_item__unpack(NULL, len, msg);
  pthread_mutex_lock(&s->mu);
  bool cancel = false;
  if (it) {
    cancel = record_locked(s, it);
  } else {
    s->undecodable++;
  }
  if (cancel && !s->closed) {
    mim_call_cancel(s->call); /* allowed from a callback; the call is alive until on_close */
  }
  while (s->block) {
    s->blocking = true;
    pthread_cond_broadcast(&s->cv);
    pthread_cond_wait(&s->cv, &s->mu);
  }
  s->blocking = false;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (it) {
    cache_client__pubsub____subscription_item__free_unpacked(it, NULL);
  }
}

static void sub_on_close(void *user, mim_status status, const char *detail) {
  raw_sub *s = user;
  pthread_mutex_lock(&s->mu);
  s->closed = true;
  s->call = NULL;
  s->close_status = status;
  snprintf(s->close_detail, sizeof s->close_detail, "%s", detail ? detail : "");
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static mim_status start_stream(mim_transport *t, const char *method, const char *cache,
                               const uint8_t *req, size_t len, raw_sub *s) {
  mim_stream_callbacks cb = {sub_on_message, sub_on_close, s};
  /* Hold mu so that a close arriving before the handle is stored cannot be overwritten. */
  pthread_mutex_lock(&s->mu);
  mim_call *call = NULL;
  mim_status st = mim_transport_stream(t, raw_host_of(method), method, cache, req, len,
                                       s->deadline_ms, &cb, &call);
  if (st == MIM_OK && !s->closed) {
    s->call = call;
  }
  pthread_mutex_unlock(&s->mu);
  return st;
}

mim_status raw_subscribe(mim_transport *t, const char *cache, const char *topic, uint64_t resume_at,
                         uint64_t page, raw_sub *s) {
  CacheClient__Pubsub__SubscriptionRequest r = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_REQUEST__INIT;
  r.cache_name = (char *)cache;
  r.topic = (char *)topic;
  r.resume_at_topic_sequence_number = resume_at;
  r.sequence_page = page;
  size_t len;
  uint8_t *buf = raw_pack(&r.base, &len);
  if (!buf) {
    return MIM_ERR_NO_MEMORY;
  }
  mim_status st = start_stream(t, "/cache_client.pubsub.Pubsub/Subscribe", NULL, buf, len, s);
  free(buf);
  return st;
}

void raw_sub_cancel(raw_sub *s) {
  /* Under mu: on_close (which ends the handle's life) cannot return meanwhile. */
  pthread_mutex_lock(&s->mu);
  if (!s->closed && s->call) {
    mim_call_cancel(s->call);
  }
  pthread_mutex_unlock(&s->mu);
}

void raw_sub_set_block(raw_sub *s, bool block) {
  pthread_mutex_lock(&s->mu);
  s->block = block;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static size_t counter_locked(const raw_sub *s, raw_counter which) {
  switch (which) {
  case RAW_HEARTBEATS:
    return s->heartbeats;
  case RAW_ITEMS:
    return s->items;
  default:
    return s->discontinuities;
  }
}

bool raw_sub_wait(raw_sub *s, raw_counter which, size_t n, int timeout_ms) {
  struct timespec ts = cmn_deadline_after_ms(timeout_ms);
  pthread_mutex_lock(&s->mu);
  int rc = 0;
  while (counter_locked(s, which) < n && !s->closed && rc == 0) {
    rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
  }
  bool ok = counter_locked(s, which) >= n;
  pthread_mutex_unlock(&s->mu);
  return ok;
}

bool raw_sub_wait_blocking(raw_sub *s, int timeout_ms) {
  struct timespec ts = cmn_deadline_after_ms(timeout_ms);
  pthread_mutex_lock(&s->mu);
  int rc = 0;
  while (!s->blocking && !s->closed && rc == 0) {
    rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
  }
  bool ok = s->blocking;
  pthread_mutex_unlock(&s->mu);
  return ok;
}

bool raw_sub_wait_closed(raw_sub *s, int timeout_ms) {
  struct timespec ts = cmn_deadline_after_ms(timeout_ms);
  pthread_mutex_lock(&s->mu);
  int rc = 0;
  while (!s->closed && rc == 0) {
    rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
  }
  bool ok = s->closed;
  pthread_mutex_unlock(&s->mu);
  return ok;
}

mim_status raw_stream_status(mim_transport *t, const char *method, const char *cache,
                             const uint8_t *req, size_t len, int timeout_ms, size_t *items) {
  raw_sub *s = calloc(1, sizeof *s);
  if (!s) {
    return MIM_ERR_NO_MEMORY;
  }
  raw_sub_init(s);
  mim_status st = start_stream(t, method, cache, req, len, s);
  if (st == MIM_OK) {
    if (!raw_sub_wait_closed(s, timeout_ms)) {
      raw_sub_cancel(s);
      if (!raw_sub_wait_closed(s, RAW_DEADLINE_MS)) {
        return MIM_ERR_DEADLINE_EXCEEDED; /* s leaks: its callbacks may still come */
      }
      st = MIM_ERR_DEADLINE_EXCEEDED;
    } else {
      st = s->close_status;
    }
  }
  if (items) {
    *items = s->items + s->heartbeats + s->discontinuities;
  }
  raw_sub_destroy(s);
  free(s);
  return st;
}

long raw_proc_kib(pid_t pid, const char *field) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
  FILE *f = fopen(path, "r");
  if (!f) {
    return -1;
  }
  char line[256];
  size_t fl = strlen(field);
  long v = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
      v = strtol(line + fl + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

int raw_proc_sockets(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/fd", (long)pid);
  DIR *d = opendir(path);
  if (!d) {
    return -1;
  }
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char link[320], target[64];
    snprintf(link, sizeof link, "%s/%s", path, e->d_name);
    ssize_t len = readlink(link, target, sizeof target - 1);
    if (len > 0) {
      target[len] = '\0';
      n += strncmp(target, "socket:", 7) == 0;
    }
  }
  closedir(d);
  return n;
}

int raw_wait_sockets_at_most(pid_t pid, int max, int timeout_ms) {
  int64_t deadline = cmn_mono_ms() + timeout_ms;
  int n = raw_proc_sockets(pid);
  /* No event tells us when the server closed a socket: poll every 10 ms until the deadline. */
  while (n > max && cmn_mono_ms() < deadline) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
    n = raw_proc_sockets(pid);
  }
  return n;
}
