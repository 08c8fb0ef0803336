/* mim-local: cache_client.pubsub.Pubsub handlers (auth, validation, then pubsub.c). */
#include "handlers.h"
#include "utf8.h"

#include "util.h"

#include <string.h>

/* Verifies token, names, permission and that the cache exists; fails the call if not. */
static bool topic_admit(app *a, srv_call *call, const char *cache_in, const char *topic_in,
                        auth_topic_verb verb, char *cache, char *topic, auth_claims *claims) {
  if (!svc_auth(a, call, NULL, claims)) {
    return false;
  }
  bool ok = svc_name(call, "cache_name", cache_in, strlen(cache_in), cache) &&
            svc_name(call, "topic", topic_in, strlen(topic_in), topic);
  if (ok && !auth_allows_topic(claims, cache, topic, verb)) {
    srv_call_fail(call, GRPC_STATUS_PERMISSION_DENIED, "token lacks permission to %s topic %s",
                  verb == VERB_PUBLISH ? "publish to" : "subscribe to", topic);
    ok = false;
  }
  if (ok && !store_cache_exists(a->store, cache)) {
    srv_call_fail(call, GRPC_STATUS_NOT_FOUND, "cache not found: %s", cache);
    ok = false;
  }
  if (!ok) {
    auth_claims_clear(claims);
  }
  return ok;
}

static bool value_ok(app *a, srv_call *call, const CacheClient__Pubsub__TopicValue *v) {
  size_t n;
  if (!v) {
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "value is missing");
    return false;
  }
  if (v->kind_case == CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_TEXT) {
    n = strlen(v->text);
    if (!cmn_utf8_valid(v->text, n)) {
      srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "text value is not valid UTF-8");
      return false;
    }
  } else if (v->kind_case == CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_BINARY) {
    n = v->binary.len;
  } else {
    srv_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "value has neither text nor binary");
    return false;
  }
  size_t limit = a->limits.max_topic_payload;
  if (limit && n > limit) {
    srv_call_fail_limit(call, "request_size_limit_exceeded",
                        "topic message of %zu bytes exceeds the request limit of %zu bytes for a "
                        "topic payload",
                        n, limit);
    return false;
  }
  if (n > a->max_message_bytes) {
    srv_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "message of %zu bytes exceeds %zu", n,
                  a->max_message_bytes);
    return false;
  }
  return true;
}

/* --topic-ops-per-s: publishes are refused while the namespace's bucket is empty. */
static bool topic_rate_ok(app *a, srv_call *call, quota_ns *ns, const char *cache) {
  if (quota_admit(a->quota, ns, QUOTA_TOPIC_OPS)) {
    return true;
  }
  srv_call_fail_limit(call, "operations_rate_limit_exceeded",
                      "topic namespace %s exceeded its rate limit of %llu operations per second "
                      "(publishes and deliveries)",
                      cache, (unsigned long long)quota_limit(a->quota, QUOTA_TOPIC_OPS));
  return false;
}

static void publish(app *a, srv_call *call, const CacheClient__Pubsub__PublishRequest *r) {
  char cache[SVC_MAX_NAME], topic[SVC_MAX_NAME];
  auth_claims claims;
  if (!topic_admit(a, call, r->cache_name, r->topic, VERB_PUBLISH, cache, topic, &claims)) {
    return;
  }
  quota_ns *ns = quota_ns_get(a->quota, cache);
  if (value_ok(a, call, r->value) && topic_rate_ok(a, call, ns, cache)) {
    size_t delivered = 0;
    ps_result res = pubsub_publish(a->ps, cache, topic, r->value, claims.token_id, &delivered);
    /* Deliveries are never refused, but they use up the namespace's budget. */
    quota_charge(a->quota, ns, QUOTA_TOPIC_OPS, 1 + (uint64_t)delivered);
    if (res == PS_OK) {
      Common__Empty resp = COMMON____EMPTY__INIT;
      srv_call_reply(call, &resp.base);
    } else if (res == PS_GONE) {
      srv_call_fail(call, GRPC_STATUS_NOT_FOUND, "cache not found: %s", cache);
    } else if (res == PS_UNRECORDED) {
      srv_call_fail(call, GRPC_STATUS_UNAVAILABLE,
                    "the server could not record the topic state in its data directory");
    } else {
      srv_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
  }
  auth_claims_clear(&claims);
}

void topics_publish(app *a, srv_call *call, const uint8_t *req, size_t len) {
  CacheClient__Pubsub__PublishRequest *r =
      svc_unpack(call, &cache_client__pubsub____publish_request__descriptor, req, len);
  if (r) {
    publish(a, call, r);
    cache_client__pubsub____publish_request__free_unpacked(r, NULL);
  }
}

static void subscribe(app *a, srv_call *call, const CacheClient__Pubsub__SubscriptionRequest *r) {
  char cache[SVC_MAX_NAME], topic[SVC_MAX_NAME];
  auth_claims claims;
  if (!topic_admit(a, call, r->cache_name, r->topic, VERB_SUBSCRIBE, cache, topic, &claims)) {
    return;
  }
  /* The stream ends when the token does (with --no-auth a token never runs out). */
  uint64_t expires = a->no_auth ? 0 : claims.expires;
  auth_claims_clear(&claims);
  /* --topic-subscriptions: counted while the stream lasts, released when it ends. */
  quota_ns *ns = quota_sub_limit(a->quota) ? quota_ns_get(a->quota, cache) : NULL;
  if (ns && !quota_sub_acquire(a->quota, ns)) {
    srv_call_fail_limit(call, "topic_subscriptions_limit_exceeded",
                        "topic namespace %s already has its limit of %llu concurrent subscribers",
                        cache, (unsigned long long)quota_sub_limit(a->quota));
    return;
  }
  ps_result res = pubsub_subscribe_ex(a->ps, call, cache, topic, r->resume_at_topic_sequence_number,
                                      r->sequence_page, expires, ns ? quota_sub_release : NULL, ns);
  if (res != PS_OK && ns) {
    quota_sub_release(ns);
  }
  if (res == PS_TOO_MANY) {
    srv_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many subscribers on topic %s", topic);
  } else if (res == PS_GONE) {
    srv_call_fail(call, GRPC_STATUS_NOT_FOUND, "cache not found: %s", cache);
  } else if (res == PS_NOMEM) {
    srv_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  } else {
    srv_log(LOG_DEBUG, "subscribed to %s/%s (resume_at %llu)", cache, topic,
            (unsigned long long)r->resume_at_topic_sequence_number);
  }
}

void topics_subscribe(app *a, srv_call *call, const uint8_t *req, size_t len) {
  CacheClient__Pubsub__SubscriptionRequest *r =
      svc_unpack(call, &cache_client__pubsub____subscription_request__descriptor, req, len);
  if (r) {
    subscribe(a, call, r);
    cache_client__pubsub____subscription_request__free_unpacked(r, NULL);
  }
}
