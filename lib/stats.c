/* Per-client counters (see stats.h and mim_client_stats in <momento/client.h>). */
#include "stats.h"

#include "error.h"

#include <cacheclient.pb-c.h>
#include <string.h>

#define PUBSUB_PREFIX "/cache_client.pubsub."

static void add(atomic_uint_fast64_t *c, uint64_t n) {
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t get(const atomic_uint_fast64_t *c) {
  return atomic_load_explicit(c, memory_order_relaxed);
}

void mim_stats_init(mim_stats *st) {
  atomic_uint_fast64_t *all[] = {&st->calls,     &st->failed_calls,  &st->cache_ops,
                                 &st->topic_ops, &st->control_calls, &st->subscriptions,
                                 &st->messages,  &st->bytes_sent,    &st->bytes_received,
                                 &st->retries,   &st->throttled,     &st->limited};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    atomic_init(all[i], 0);
}

void mim_stats_read(const mim_stats *st, mim_client_stats *out) {
  *out = (mim_client_stats){.struct_size = sizeof *out,
                            .calls = get(&st->calls),
                            .failed_calls = get(&st->failed_calls),
                            .cache_operations = get(&st->cache_ops),
                            .topic_operations = get(&st->topic_ops),
                            .control_calls = get(&st->control_calls),
                            .subscriptions = get(&st->subscriptions),
                            .messages_received = get(&st->messages),
                            .bytes_sent = get(&st->bytes_sent),
                            .bytes_received = get(&st->bytes_received),
                            .retries = get(&st->retries),
                            .throttled = get(&st->throttled),
                            .limit_refusals = get(&st->limited)};
}

/* Momento counts two values as one operation, and any call as at least one. */
static unsigned pairs(size_t n) {
  return n < 2 ? 1u : (unsigned)((n + 1) / 2);
}

unsigned mim_stats_request_ops(const ProtobufCMessage *request) {
  const ProtobufCMessageDescriptor *d = request->descriptor;
  if (d == &cache_client____list_concatenate_back_request__descriptor)
    return pairs(((const CacheClient__ListConcatenateBackRequest *)request)->n_values);
  if (d == &cache_client____list_concatenate_front_request__descriptor)
    return pairs(((const CacheClient__ListConcatenateFrontRequest *)request)->n_values);
  return 0;
}

/* A fetch costs what it returned (a missing list: one operation). */
static unsigned response_ops(const ProtobufCMessage *response) {
  if (!response || response->descriptor != &cache_client____list_fetch_response__descriptor)
    return 0;
  const CacheClient__ListFetchResponse *r = (const void *)response;
  return pairs(r->list_case == CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_FOUND && r->found
                   ? r->found->n_values
                   : 0);
}

static void count_refusal(mim_stats *st, mim_status status, const char *detail) {
  if (status != MIM_ERR_RESOURCE_EXHAUSTED)
    return;
  add(&st->limited, 1);
  if (mim_throttled(status, detail))
    add(&st->throttled, 1);
}

void mim_stats_call(mim_client *client, mim_host_kind host, const char *path, unsigned request_ops,
                    size_t sent, size_t received, mim_status status, const char *detail,
                    const ProtobufCMessage *response) {
  mim_stats *st = mim_client_counters(client);
  add(&st->calls, 1);
  add(&st->bytes_sent, sent);
  if (host != MIM_HOST_CACHE)
    add(&st->control_calls, 1);
  if (status != MIM_OK) {
    add(&st->failed_calls, 1);
    count_refusal(st, status, detail);
    return;
  }
  add(&st->bytes_received, received);
  if (host != MIM_HOST_CACHE)
    return;
  if (strncmp(path, PUBSUB_PREFIX, strlen(PUBSUB_PREFIX)) == 0) {
    add(&st->topic_ops, 1);
    return;
  }
  unsigned ops = request_ops ? request_ops : response_ops(response);
  add(&st->cache_ops, ops ? ops : 1);
}

void mim_stats_subscribe(mim_client *client, size_t sent, bool retry) {
  mim_stats *st = mim_client_counters(client);
  add(&st->subscriptions, 1);
  add(&st->topic_ops, 1);
  add(&st->bytes_sent, sent);
  if (retry)
    add(&st->retries, 1);
}

void mim_stats_stream_message(mim_client *client, size_t len, bool item) {
  mim_stats *st = mim_client_counters(client);
  add(&st->bytes_received, len);
  if (item) {
    add(&st->messages, 1);
    add(&st->topic_ops, 1);
  }
}

void mim_stats_stream_end(mim_client *client, mim_status status, const char *detail) {
  count_refusal(mim_client_counters(client), status, detail);
}

void mim_stats_retry(mim_client *client) {
  add(&mim_client_counters(client)->retries, 1);
}
