/* Internal: the per-client counters behind mim_client_stats_get. Each thing is counted
 * in the one place it passes: unary calls in pb_call.c, subscribe streams and their
 * messages in topics.c, send retries in outbox.c. Relaxed atomic adds: no lock and no
 * allocation on the hot path, and readers only need each counter to be exact on its own. */
#ifndef MIM_LIB_STATS_H
#define MIM_LIB_STATS_H

#include "pb.h"
#include "transport.h"

#include <momento/client.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct mim_stats {
  atomic_uint_fast64_t calls, failed_calls, cache_ops, topic_ops, control_calls, subscriptions,
      messages, bytes_sent, bytes_received, retries, throttled, limited;
} mim_stats;

/* Zeroes every counter (before the client is shared). */
void mim_stats_init(mim_stats *st);
/* Copies the counters out. */
void mim_stats_read(const mim_stats *st, mim_client_stats *out);

/* The client's counters (owned by the client; valid until mim_client_free). */
mim_stats *mim_client_counters(mim_client *client);

/* Operations a request costs by itself (ListConcatenate*: ceil(values / 2)); 0 when the
 * cost depends on the response or is the default. */
unsigned mim_stats_request_ops(const ProtobufCMessage *request);

/* One unary call ended. request_ops from mim_stats_request_ops; response the decoded
 * answer (NULL when not read or on failure); detail the failure's (may be NULL). */
void mim_stats_call(mim_client *client, mim_host_kind host, const char *path, unsigned request_ops,
                    size_t sent, size_t received, mim_status status, const char *detail,
                    const ProtobufCMessage *response);

/* A subscribe stream was started (retry: a re-subscribe after a lost stream). */
void mim_stats_subscribe(mim_client *client, size_t sent, bool retry);
/* A stream message arrived (item: a delivered message, which costs an operation). */
void mim_stats_stream_message(mim_client *client, size_t len, bool item);
/* A stream ended with this status (counts limit refusals). */
void mim_stats_stream_end(mim_client *client, mim_status status, const char *detail);
/* The outbox scheduled a retry of a send. */
void mim_stats_retry(mim_client *client);

#endif
