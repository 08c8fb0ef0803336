/* Unit tests for our Momento .proto files (lib/proto/, compiled by protoc-c).
 *
 * Part 1 packs the messages of every service and compares the bytes with expected
 * arrays written by hand from the protobuf encoding rules and the field numbers in
 * /work/shared/spec/momento-wire.md, so a wrong field number, type (sint32 vs int32)
 * or nesting in our .proto files fails here. Part 2 round-trips every message that
 * libmomento-im uses (pack -> unpack -> compare fields -> repack gives the same
 * bytes). Part 3 checks service and method names, which form the gRPC paths.
 *
 * Encoding reminders used below: a key byte is (field_number << 3) | wire_type with
 * wire type 0 = VARINT and 2 = LEN; varints are little-endian base-128 with the high
 * bit as "more follows"; sint32 is zigzag-encoded first ((n << 1) ^ (n >> 31), so
 * -1 -> 1, -10 -> 19, -300 -> 599); proto3 scalars equal to their default are not
 * written, but a set oneof member always is (even when 0 or empty).
 */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "cacheclient.pb-c.h"
#include "cacheping.pb-c.h"
#include "cachepubsub.pb-c.h"
#include "common.pb-c.h"
#include "controlclient.pb-c.h"
#include "permissionmessages.pb-c.h"
#include "token.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

#define BIN(s) ((ProtobufCBinaryData){sizeof(s) - 1, (uint8_t *)(s)})

static void assert_bin(ProtobufCBinaryData got, const char *want, size_t want_len) {
  assert_int_equal(got.len, want_len);
  if (want_len)
    assert_memory_equal(got.data, want, want_len);
}
#define ASSERT_BIN(got, lit) assert_bin((got), (lit), sizeof(lit) - 1)

static uint8_t *pack(const ProtobufCMessage *m, size_t *len) {
  *len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(*len ? *len : 1);
  assert_non_null(buf);
  assert_int_equal(protobuf_c_message_pack(m, buf), *len);
  return buf;
}

/* Packs m, unpacks the bytes, checks that the decoded message packs to the same
 * bytes, and returns the decoded message (free with protobuf_c_message_free_unpacked). */
static void *roundtrip(const void *msg) {
  const ProtobufCMessage *m = msg;
  size_t n, n2;
  uint8_t *buf = pack(m, &n);
  ProtobufCMessage *out = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
  assert_non_null(out);
  uint8_t *buf2 = pack(out, &n2);
  assert_int_equal(n2, n);
  if (n)
    assert_memory_equal(buf2, buf, n);
  free(buf);
  free(buf2);
  return out;
}

static void done(void *m) {
  protobuf_c_message_free_unpacked(m, NULL);
}

/* Packs m and compares with the hand-derived bytes; then decodes those bytes. */
static void *expect_bytes(const void *msg, const uint8_t *want, size_t want_len) {
  const ProtobufCMessage *m = msg;
  size_t n;
  uint8_t *buf = pack(m, &n);
  if (n != want_len || (n && memcmp(buf, want, n) != 0)) {
    fprintf(stderr, "%s: packed %zu bytes, expected %zu\n  got:", m->descriptor->name, n, want_len);
    for (size_t i = 0; i < n; i++)
      fprintf(stderr, " %02x", buf[i]);
    fprintf(stderr, "\n want:");
    for (size_t i = 0; i < want_len; i++)
      fprintf(stderr, " %02x", want[i]);
    fprintf(stderr, "\n");
    free(buf);
    fail_msg("packed bytes differ from the hand-derived encoding");
  }
  free(buf);
  void *out = protobuf_c_message_unpack(m->descriptor, NULL, want_len, want);
  assert_non_null(out);
  return out;
}

/* Decodes hand-written bytes (what a server would send). */
static void *decode(const ProtobufCMessageDescriptor *d, const uint8_t *bytes, size_t len) {
  void *out = protobuf_c_message_unpack(d, NULL, len, bytes);
  assert_non_null(out);
  return out;
}

/* ==== Part 1: packed bytes against hand-derived expectations ==== */

static void test_bytes_list_push_back(void **state) {
  (void)state;
  CacheClient__ListPushBackRequest m = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  m.list_name = BIN("chat");
  m.value = BIN("hi");
  m.ttl_milliseconds = 86400000; /* one day */
  m.refresh_ttl = 1;
  m.truncate_front_to_size = 100;
  static const uint8_t want[] = {
      0x0a, 0x04, 'c',  'h',  'a',  't', /* list_name = 1, LEN, 4 bytes */
      0x12, 0x02, 'h',  'i',             /* value = 2, LEN, 2 bytes */
      0x18, 0x80, 0xb8, 0x99, 0x29,      /* ttl_milliseconds = 3, VARINT 86400000 =
                                            41*2^21 + 25*2^14 + 56*2^7 + 0 */
      0x20, 0x01,                        /* refresh_ttl = 4, VARINT, true */
      0x28, 0x64,                        /* truncate_front_to_size = 5, VARINT 100 */
  };
  CacheClient__ListPushBackRequest *d = expect_bytes(&m, want, sizeof want);
  assert_int_equal(d->ttl_milliseconds, 86400000);
  assert_int_equal(d->truncate_front_to_size, 100);
  done(d);

  /* Push front: field 5 is truncate_back_to_size. */
  CacheClient__ListPushFrontRequest f = CACHE_CLIENT____LIST_PUSH_FRONT_REQUEST__INIT;
  f.list_name = BIN("c");
  f.value = BIN("v");
  f.truncate_back_to_size = 3;
  static const uint8_t want_front[] = {
      0x0a, 0x01, 'c', /* list_name = 1, LEN */
      0x12, 0x01, 'v', /* value = 2, LEN */
      0x28, 0x03,      /* truncate_back_to_size = 5, VARINT 3 (ttl/refresh default: absent) */
  };
  done(expect_bytes(&f, want_front, sizeof want_front));
}

static void test_bytes_list_concatenate_back(void **state) {
  (void)state;
  ProtobufCBinaryData values[] = {BIN("a"), BIN("bc")};
  CacheClient__ListConcatenateBackRequest m = CACHE_CLIENT____LIST_CONCATENATE_BACK_REQUEST__INIT;
  m.list_name = BIN("chat");
  m.n_values = 2;
  m.values = values;
  m.ttl_milliseconds = 1000;
  m.truncate_front_to_size = 50;
  static const uint8_t want[] = {
      0x0a, 0x04, 'c',  'h', 'a', 't', /* list_name = 1, LEN */
      0x12, 0x01, 'a',                 /* values = 2, LEN (repeated: one key per element) */
      0x12, 0x02, 'b',  'c',           /* values = 2, LEN */
      0x18, 0xe8, 0x07,                /* ttl_milliseconds = 3, VARINT 1000 = 7*128 + 104 */
      0x28, 0x32,                      /* truncate_front_to_size = 5, VARINT 50 */
  };
  done(expect_bytes(&m, want, sizeof want));
}

static void test_bytes_list_fetch(void **state) {
  (void)state;
  Common__Unbounded unb = COMMON____UNBOUNDED__INIT;
  CacheClient__ListFetchRequest m = CACHE_CLIENT____LIST_FETCH_REQUEST__INIT;
  m.list_name = BIN("chat");
  m.start_index_case = CACHE_CLIENT____LIST_FETCH_REQUEST__START_INDEX_INCLUSIVE_START;
  m.inclusive_start = -10; /* the last 10 messages */
  m.end_index_case = CACHE_CLIENT____LIST_FETCH_REQUEST__END_INDEX_UNBOUNDED_END;
  m.unbounded_end = &unb;
  static const uint8_t want[] = {
      0x0a, 0x04, 'c', 'h', 'a', 't', /* list_name = 1, LEN */
      0x18, 0x13,                     /* inclusive_start = 3, VARINT, sint32 zigzag(-10) = 19 */
      0x22, 0x00,                     /* unbounded_end = 4, LEN, empty _Unbounded */
  };
  CacheClient__ListFetchRequest *d = expect_bytes(&m, want, sizeof want);
  assert_int_equal(d->start_index_case,
                   CACHE_CLIENT____LIST_FETCH_REQUEST__START_INDEX_INCLUSIVE_START);
  assert_int_equal(d->inclusive_start, -10);
  assert_int_equal(d->end_index_case, CACHE_CLIENT____LIST_FETCH_REQUEST__END_INDEX_UNBOUNDED_END);
  done(d);

  /* The other two oneof members, with a two-byte zigzag varint. */
  m.start_index_case = CACHE_CLIENT____LIST_FETCH_REQUEST__START_INDEX_UNBOUNDED_START;
  m.unbounded_start = &unb;
  m.end_index_case = CACHE_CLIENT____LIST_FETCH_REQUEST__END_INDEX_EXCLUSIVE_END;
  m.exclusive_end = -300;
  static const uint8_t want2[] = {
      0x0a, 0x04, 'c',  'h', 'a', 't', /* list_name = 1, LEN */
      0x12, 0x00,                      /* unbounded_start = 2, LEN, empty */
      0x28, 0xd7, 0x04,                /* exclusive_end = 5, VARINT, zigzag(-300) = 599 */
  };
  d = expect_bytes(&m, want2, sizeof want2);
  assert_int_equal(d->exclusive_end, -300);
  done(d);

  /* A set oneof member is written even when it is 0. */
  m.start_index_case = CACHE_CLIENT____LIST_FETCH_REQUEST__START_INDEX_INCLUSIVE_START;
  m.inclusive_start = 0;
  m.end_index_case = CACHE_CLIENT____LIST_FETCH_REQUEST__END_INDEX_EXCLUSIVE_END;
  m.exclusive_end = 5;
  static const uint8_t want3[] = {
      0x0a, 0x04, 'c', 'h', 'a', 't', /* list_name = 1, LEN */
      0x18, 0x00,                     /* inclusive_start = 3, VARINT 0 (oneof: present) */
      0x28, 0x0a,                     /* exclusive_end = 5, VARINT, zigzag(5) = 10 */
  };
  done(expect_bytes(&m, want3, sizeof want3));
}

static void test_bytes_list_responses(void **state) {
  (void)state;
  /* What a server sends for ListFetch: found { values: ["x", "yz"] }. */
  static const uint8_t found[] = {
      0x0a, 0x07,           /* found = 1, LEN, 7 bytes */
      0x0a, 0x01, 'x',      /*   values = 1, LEN */
      0x0a, 0x02, 'y', 'z', /*   values = 1, LEN */
  };
  CacheClient__ListFetchResponse *r =
      decode(&cache_client____list_fetch_response__descriptor, found, sizeof found);
  assert_int_equal(r->list_case, CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_FOUND);
  assert_int_equal(r->found->n_values, 2);
  ASSERT_BIN(r->found->values[0], "x");
  ASSERT_BIN(r->found->values[1], "yz");
  done(r);
  static const uint8_t missing[] = {0x12, 0x00}; /* missing = 2, LEN, empty */
  r = decode(&cache_client____list_fetch_response__descriptor, missing, sizeof missing);
  assert_int_equal(r->list_case, CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_MISSING);
  done(r);
  /* An existing but empty list: found with no values. */
  static const uint8_t empty_found[] = {0x0a, 0x00}; /* found = 1, LEN, empty */
  r = decode(&cache_client____list_fetch_response__descriptor, empty_found, sizeof empty_found);
  assert_int_equal(r->list_case, CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_FOUND);
  assert_int_equal(r->found->n_values, 0);
  done(r);

  static const uint8_t push[] = {0x08, 0x07}; /* list_length = 1, VARINT 7 */
  CacheClient__ListPushBackResponse *p =
      decode(&cache_client____list_push_back_response__descriptor, push, sizeof push);
  assert_int_equal(p->list_length, 7);
  done(p);

  static const uint8_t len[] = {0x0a, 0x02, 0x08, 0x2a}; /* found = 1 { length = 1: 42 } */
  CacheClient__ListLengthResponse *l =
      decode(&cache_client____list_length_response__descriptor, len, sizeof len);
  assert_int_equal(l->list_case, CACHE_CLIENT____LIST_LENGTH_RESPONSE__LIST_FOUND);
  assert_int_equal(l->found->length, 42);
  done(l);

  /* ItemGetTtl found { remaining_ttl_millis = 1: 60000 = 3*2^14 + 84*2^7 + 96 } */
  static const uint8_t ttl[] = {0x0a, 0x04, 0x08, 0xe0, 0xd4, 0x03};
  CacheClient__ItemGetTtlResponse *t =
      decode(&cache_client____item_get_ttl_response__descriptor, ttl, sizeof ttl);
  assert_int_equal(t->result_case, CACHE_CLIENT____ITEM_GET_TTL_RESPONSE__RESULT_FOUND);
  assert_int_equal(t->found->remaining_ttl_millis, 60000);
  done(t);
}

static void test_bytes_delete(void **state) {
  (void)state;
  CacheClient__DeleteRequest m = CACHE_CLIENT____DELETE_REQUEST__INIT;
  m.cache_key = BIN("chat");
  static const uint8_t want[] = {0x0a, 0x04, 'c', 'h', 'a', 't'}; /* cache_key = 1, LEN */
  done(expect_bytes(&m, want, sizeof want));
}

static void test_bytes_create_cache(void **state) {
  (void)state;
  ControlClient__CreateCacheRequest m = CONTROL_CLIENT____CREATE_CACHE_REQUEST__INIT;
  m.cache_name = "instant-messaging";
  static const uint8_t want[] = {
      0x0a, 0x11, /* cache_name = 1, LEN, 17 bytes */
      'i',  'n',  's', 't', 'a', 'n', 't', '-', 'm', 'e', 's', 's', 'a', 'g', 'i', 'n', 'g',
  };
  ControlClient__CreateCacheRequest *d = expect_bytes(&m, want, sizeof want);
  assert_string_equal(d->cache_name, "instant-messaging");
  done(d);

  /* ListCaches response: cache = 1 [{ cache_name = 1: "a" }], next_token = 2: "n" */
  static const uint8_t list[] = {
      0x0a, 0x03, 0x0a, 0x01, 'a', /* cache = 1, LEN { cache_name = 1, LEN "a" } */
      0x12, 0x01, 'n',             /* next_token = 2, LEN */
  };
  ControlClient__ListCachesResponse *l =
      decode(&control_client____list_caches_response__descriptor, list, sizeof list);
  assert_int_equal(l->n_cache, 1);
  assert_string_equal(l->cache[0]->cache_name, "a");
  assert_string_equal(l->next_token, "n");
  done(l);
}

static void test_bytes_ping(void **state) {
  (void)state;
  CacheClient__PingRequest m = CACHE_CLIENT____PING_REQUEST__INIT;
  assert_int_equal(protobuf_c_message_get_packed_size(&m.base), 0);
  CacheClient__PingResponse *r =
      decode(&cache_client____ping_response__descriptor, (const uint8_t *)"", 0);
  done(r);
  Common__Empty e = COMMON____EMPTY__INIT;
  assert_int_equal(protobuf_c_message_get_packed_size(&e.base), 0);
}

static void test_bytes_subscription_request(void **state) {
  (void)state;
  CacheClient__Pubsub__SubscriptionRequest m = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_REQUEST__INIT;
  m.cache_name = "cache";
  m.topic = "chat";
  m.resume_at_topic_sequence_number = 42;
  m.sequence_page = 300;
  static const uint8_t want[] = {
      0x0a, 0x05, 'c',  'a', 'c', 'h', 'e', /* cache_name = 1, LEN */
      0x12, 0x04, 'c',  'h', 'a', 't',      /* topic = 2, LEN */
      0x18, 0x2a,                           /* resume_at_topic_sequence_number = 3, VARINT 42 */
      0x20, 0xac, 0x02,                     /* sequence_page = 4, VARINT 300 = 2*128 + 44 */
  };
  CacheClient__Pubsub__SubscriptionRequest *d = expect_bytes(&m, want, sizeof want);
  assert_int_equal(d->resume_at_topic_sequence_number, 42);
  assert_int_equal(d->sequence_page, 300);
  done(d);

  /* A fresh subscription: resume_at 0 and page 0 are simply absent. */
  m.resume_at_topic_sequence_number = 0;
  m.sequence_page = 0;
  done(expect_bytes(&m, want, 13));
}

static void test_bytes_topic_item(void **state) {
  (void)state;
  CacheClient__Pubsub__TopicValue v = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__INIT;
  v.kind_case = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_TEXT;
  v.text = "hey";
  CacheClient__Pubsub__TopicItem m = CACHE_CLIENT__PUBSUB____TOPIC_ITEM__INIT;
  m.topic_sequence_number = 7;
  m.value = &v;
  m.publisher_id = "alice";
  m.sequence_page = 3;
  static const uint8_t want[] = {
      0x08, 0x07,                          /* topic_sequence_number = 1, VARINT 7 */
      0x12, 0x05,                          /* value = 2, LEN, 5 bytes: _TopicValue */
      0x0a, 0x03, 'h', 'e', 'y',           /*   text = 1, LEN */
      0x1a, 0x05, 'a', 'l', 'i', 'c', 'e', /* publisher_id = 3, LEN */
      0x20, 0x03,                          /* sequence_page = 4, VARINT 3 */
  };
  CacheClient__Pubsub__TopicItem *d = expect_bytes(&m, want, sizeof want);
  assert_int_equal(d->value->kind_case, CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_TEXT);
  assert_string_equal(d->value->text, "hey");
  assert_string_equal(d->publisher_id, "alice");
  done(d);

  /* The same item as a stream element, plus the other two kinds. */
  CacheClient__Pubsub__SubscriptionItem si = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__INIT;
  si.kind_case = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_ITEM;
  si.item = &m;
  uint8_t want_si[2 + sizeof want] = {0x0a, (uint8_t)sizeof want}; /* item = 1, LEN */
  memcpy(want_si + 2, want, sizeof want);
  done(expect_bytes(&si, want_si, sizeof want_si));

  CacheClient__Pubsub__Heartbeat hb = CACHE_CLIENT__PUBSUB____HEARTBEAT__INIT;
  si.kind_case = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_HEARTBEAT;
  si.heartbeat = &hb;
  static const uint8_t want_hb[] = {0x1a, 0x00}; /* heartbeat = 3, LEN, empty */
  CacheClient__Pubsub__SubscriptionItem *dsi = expect_bytes(&si, want_hb, sizeof want_hb);
  assert_int_equal(dsi->kind_case, CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_HEARTBEAT);
  done(dsi);

  CacheClient__Pubsub__Discontinuity dc = CACHE_CLIENT__PUBSUB____DISCONTINUITY__INIT;
  dc.last_topic_sequence = 5;
  dc.new_topic_sequence = 9;
  dc.new_sequence_page = 2;
  si.kind_case = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_DISCONTINUITY;
  si.discontinuity = &dc;
  static const uint8_t want_dc[] = {
      0x12, 0x06, /* discontinuity = 2, LEN, 6 bytes */
      0x08, 0x05, /*   last_topic_sequence = 1, VARINT */
      0x10, 0x09, /*   new_topic_sequence = 2, VARINT */
      0x18, 0x02, /*   new_sequence_page = 3, VARINT */
  };
  dsi = expect_bytes(&si, want_dc, sizeof want_dc);
  assert_int_equal(dsi->discontinuity->new_topic_sequence, 9);
  done(dsi);

  /* Publish with a binary value. */
  CacheClient__Pubsub__TopicValue bv = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__INIT;
  bv.kind_case = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_BINARY;
  bv.binary = BIN("\x00\xff");
  CacheClient__Pubsub__PublishRequest pr = CACHE_CLIENT__PUBSUB____PUBLISH_REQUEST__INIT;
  pr.cache_name = "c";
  pr.topic = "t";
  pr.value = &bv;
  static const uint8_t want_pr[] = {
      0x0a, 0x01, 'c',        /* cache_name = 1, LEN */
      0x12, 0x01, 't',        /* topic = 2, LEN */
      0x1a, 0x04,             /* value = 3, LEN, 4 bytes: _TopicValue */
      0x12, 0x02, 0x00, 0xff, /*   binary = 2, LEN */
  };
  done(expect_bytes(&pr, want_pr, sizeof want_pr));
}

static void test_bytes_generate_token(void **state) {
  (void)state;
  /* The server-mediated policy for chat "c1" in cache "im": read on item "c1",
   * publish-only on topic "c1-input", subscribe-only on topic "c1". */
  PermissionMessages__PermissionsType__CacheSelector im =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_SELECTOR__INIT;
  im.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_SELECTOR__KIND_CACHE_NAME;
  im.cache_name = "im";

  PermissionMessages__PermissionsType__CacheItemSelector key =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__INIT;
  key.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__KIND_KEY;
  key.key = BIN("c1");
  PermissionMessages__PermissionsType__CachePermissions cp =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__INIT;
  cp.role = PERMISSION_MESSAGES__CACHE_ROLE__CacheReadOnly;
  cp.cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_CACHE_SELECTOR;
  cp.cache_selector = &im;
  cp.cache_item_case =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ITEM_ITEM_SELECTOR;
  cp.item_selector = &key;
  PermissionMessages__PermissionsType p0 = PERMISSION_MESSAGES__PERMISSIONS_TYPE__INIT;
  p0.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_CACHE_PERMISSIONS;
  p0.cache_permissions = &cp;

  PermissionMessages__PermissionsType__TopicSelector in =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__INIT;
  in.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__KIND_TOPIC_NAME;
  in.topic_name = "c1-input";
  PermissionMessages__PermissionsType__TopicPermissions tp1 =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__INIT;
  tp1.role = PERMISSION_MESSAGES__TOPIC_ROLE__TopicWriteOnly;
  tp1.cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__CACHE_CACHE_SELECTOR;
  tp1.cache_selector = &im;
  tp1.topic_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__TOPIC_TOPIC_SELECTOR;
  tp1.topic_selector = &in;
  PermissionMessages__PermissionsType p1 = PERMISSION_MESSAGES__PERMISSIONS_TYPE__INIT;
  p1.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_TOPIC_PERMISSIONS;
  p1.topic_permissions = &tp1;

  PermissionMessages__PermissionsType__TopicSelector out =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__INIT;
  out.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__KIND_TOPIC_NAME;
  out.topic_name = "c1";
  PermissionMessages__PermissionsType__TopicPermissions tp2 = tp1;
  tp2.role = PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadOnly;
  tp2.topic_selector = &out;
  PermissionMessages__PermissionsType p2 = PERMISSION_MESSAGES__PERMISSIONS_TYPE__INIT;
  p2.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_TOPIC_PERMISSIONS;
  p2.topic_permissions = &tp2;

  PermissionMessages__PermissionsType *list[] = {&p0, &p1, &p2};
  PermissionMessages__ExplicitPermissions ex = PERMISSION_MESSAGES__EXPLICIT_PERMISSIONS__INIT;
  ex.n_permissions = 3;
  ex.permissions = list;
  PermissionMessages__Permissions perms = PERMISSION_MESSAGES__PERMISSIONS__INIT;
  perms.kind_case = PERMISSION_MESSAGES__PERMISSIONS__KIND_EXPLICIT;
  perms.explicit_ = &ex;

  Token__GenerateDisposableTokenRequest__Expires exp =
      TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__EXPIRES__INIT;
  exp.valid_for_seconds = 3600;
  Token__GenerateDisposableTokenRequest m = TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__INIT;
  m.expires = &exp;
  m.auth_token = ""; /* empty: the caller's token travels in metadata; not written */
  m.permissions = &perms;
  m.token_id = "alice";

  static const uint8_t want[] = {
      0x0a, 0x03,            /* expires = 1, LEN, 3 bytes */
      0x08, 0x90, 0x1c,      /*   valid_for_seconds = 1, VARINT 3600 = 28*128 + 16 */
      0x1a, 0x3e,            /* permissions = 3, LEN, 62 bytes: Permissions */
      0x12, 0x3c,            /*   explicit = 2, LEN, 60 bytes: ExplicitPermissions */
      0x0a, 0x10,            /* permissions[0]: field 1, LEN, 16 bytes: PermissionsType */
      0x0a, 0x0e,            /*   cache_permissions = 1, LEN, 14 bytes */
      0x08, 0x02,            /*   role = 1, VARINT CacheReadOnly (2) */
      0x1a, 0x04,            /*   cache_selector = 3, LEN, 4 bytes */
      0x0a, 0x02, 'i',  'm', /*     cache_name = 1, LEN */
      0x2a, 0x04,            /*   item_selector = 5, LEN, 4 bytes */
      0x0a, 0x02, 'c',  '1', /*     key = 1, LEN */
      0x0a, 0x16,            /* permissions[1]: field 1, LEN, 22 bytes: PermissionsType */
      0x12, 0x14,            /*   topic_permissions = 2, LEN, 20 bytes */
      0x08, 0x03,            /*   role = 1, VARINT TopicWriteOnly (3) */
      0x1a, 0x04,            /*   cache_selector = 3, LEN, 4 bytes */
      0x0a, 0x02, 'i',  'm', /*     cache_name = 1, LEN */
      0x2a, 0x0a,            /*   topic_selector = 5, LEN, 10 bytes */
      0x0a, 0x08, 'c',  '1', '-', 'i', 'n', 'p', 'u', 't', /* topic_name = 1, LEN */
      0x0a, 0x10,            /* permissions[2]: field 1, LEN, 16 bytes: PermissionsType */
      0x12, 0x0e,            /*   topic_permissions = 2, LEN, 14 bytes */
      0x08, 0x02,            /*   role = 1, VARINT TopicReadOnly (2) */
      0x1a, 0x04,            /*   cache_selector = 3, LEN, 4 bytes */
      0x0a, 0x02, 'i',  'm', /*     cache_name = 1, LEN */
      0x2a, 0x04,            /*   topic_selector = 5, LEN, 4 bytes */
      0x0a, 0x02, 'c',  '1', /*     topic_name = 1, LEN */
      0x22, 0x05, 'a',  'l', 'i', 'c', 'e', /* token_id = 4, LEN */
  };
  Token__GenerateDisposableTokenRequest *d = expect_bytes(&m, want, sizeof want);
  assert_int_equal(d->expires->valid_for_seconds, 3600);
  assert_string_equal(d->token_id, "alice");
  assert_int_equal(d->permissions->explicit_->n_permissions, 3);
  assert_string_equal(
      d->permissions->explicit_->permissions[1]->topic_permissions->topic_selector->topic_name,
      "c1-input");
  done(d);

  /* Super user: the enum value is 0 but, being a oneof member, it is written. */
  PermissionMessages__Permissions su = PERMISSION_MESSAGES__PERMISSIONS__INIT;
  su.kind_case = PERMISSION_MESSAGES__PERMISSIONS__KIND_SUPER_USER;
  su.super_user = PERMISSION_MESSAGES__SUPER_USER_PERMISSIONS__SuperUser;
  static const uint8_t want_su[] = {0x08, 0x00}; /* super_user = 1, VARINT SuperUser (0) */
  PermissionMessages__Permissions *dsu = expect_bytes(&su, want_su, sizeof want_su);
  assert_int_equal(dsu->kind_case, PERMISSION_MESSAGES__PERMISSIONS__KIND_SUPER_USER);
  done(dsu);

  /* Response as the token service sends it. */
  static const uint8_t resp[] = {
      0x0a, 0x03, 'k',  'e',  'y', /* api_key = 1, LEN */
      0x12, 0x02, 'e',  'p',       /* endpoint = 2, LEN */
      0x18, 0x80, 0xa4, 0xa7, 0xda,
      0x06, /* valid_until = 3, VARINT 1800000000 =
              6*2^28 + 90*2^21 + 39*2^14 + 36*2^7 + 0 */
  };
  Token__GenerateDisposableTokenResponse *r =
      decode(&token____generate_disposable_token_response__descriptor, resp, sizeof resp);
  assert_string_equal(r->api_key, "key");
  assert_string_equal(r->endpoint, "ep");
  assert_int_equal(r->valid_until, 1800000000u);
  done(r);
}

/* ==== Part 2: round trips of every message we use ==== */

static void test_rt_delete_ttl(void **state) {
  (void)state;
  CacheClient__DeleteRequest dr = CACHE_CLIENT____DELETE_REQUEST__INIT;
  dr.cache_key = BIN("k\x00y");
  CacheClient__DeleteRequest *d1 = roundtrip(&dr);
  ASSERT_BIN(d1->cache_key, "k\x00y");
  done(d1);
  CacheClient__DeleteResponse dresp = CACHE_CLIENT____DELETE_RESPONSE__INIT;
  done(roundtrip(&dresp));

  CacheClient__ItemGetTtlRequest tr = CACHE_CLIENT____ITEM_GET_TTL_REQUEST__INIT;
  tr.cache_key = BIN("chat");
  CacheClient__ItemGetTtlRequest *d2 = roundtrip(&tr);
  ASSERT_BIN(d2->cache_key, "chat");
  done(d2);

  CacheClient__ItemGetTtlResponse__Found f = CACHE_CLIENT____ITEM_GET_TTL_RESPONSE____FOUND__INIT;
  f.remaining_ttl_millis = UINT64_C(0xfffffffffff);
  CacheClient__ItemGetTtlResponse r = CACHE_CLIENT____ITEM_GET_TTL_RESPONSE__INIT;
  r.result_case = CACHE_CLIENT____ITEM_GET_TTL_RESPONSE__RESULT_FOUND;
  r.found = &f;
  CacheClient__ItemGetTtlResponse *d3 = roundtrip(&r);
  assert_int_equal(d3->result_case, CACHE_CLIENT____ITEM_GET_TTL_RESPONSE__RESULT_FOUND);
  assert_true(d3->found->remaining_ttl_millis == UINT64_C(0xfffffffffff));
  done(d3);
  CacheClient__ItemGetTtlResponse__Missing mi =
      CACHE_CLIENT____ITEM_GET_TTL_RESPONSE____MISSING__INIT;
  r.result_case = CACHE_CLIENT____ITEM_GET_TTL_RESPONSE__RESULT_MISSING;
  r.missing = &mi;
  d3 = roundtrip(&r);
  assert_int_equal(d3->result_case, CACHE_CLIENT____ITEM_GET_TTL_RESPONSE__RESULT_MISSING);
  done(d3);
}

static void test_rt_push_concat(void **state) {
  (void)state;
  CacheClient__ListPushFrontRequest pf = CACHE_CLIENT____LIST_PUSH_FRONT_REQUEST__INIT;
  pf.list_name = BIN("chat");
  pf.value = BIN("{\"v\":1}");
  pf.ttl_milliseconds = 5;
  pf.refresh_ttl = 1;
  pf.truncate_back_to_size = 9;
  CacheClient__ListPushFrontRequest *a = roundtrip(&pf);
  ASSERT_BIN(a->list_name, "chat");
  ASSERT_BIN(a->value, "{\"v\":1}");
  assert_int_equal(a->ttl_milliseconds, 5);
  assert_true(a->refresh_ttl);
  assert_int_equal(a->truncate_back_to_size, 9);
  done(a);

  CacheClient__ListPushBackRequest pb = CACHE_CLIENT____LIST_PUSH_BACK_REQUEST__INIT;
  pb.list_name = BIN("chat");
  pb.value = BIN("\xff\x00");
  pb.truncate_front_to_size = UINT32_MAX;
  CacheClient__ListPushBackRequest *b = roundtrip(&pb);
  ASSERT_BIN(b->value, "\xff\x00");
  assert_false(b->refresh_ttl);
  assert_int_equal(b->truncate_front_to_size, UINT32_MAX);
  done(b);

  CacheClient__ListPushFrontResponse pfr = CACHE_CLIENT____LIST_PUSH_FRONT_RESPONSE__INIT;
  pfr.list_length = 11;
  CacheClient__ListPushFrontResponse *c = roundtrip(&pfr);
  assert_int_equal(c->list_length, 11);
  done(c);
  CacheClient__ListPushBackResponse pbr = CACHE_CLIENT____LIST_PUSH_BACK_RESPONSE__INIT;
  pbr.list_length = 12;
  CacheClient__ListPushBackResponse *e = roundtrip(&pbr);
  assert_int_equal(e->list_length, 12);
  done(e);

  ProtobufCBinaryData vals[] = {BIN("one"), BIN(""), BIN("three")};
  CacheClient__ListConcatenateFrontRequest cf =
      CACHE_CLIENT____LIST_CONCATENATE_FRONT_REQUEST__INIT;
  cf.list_name = BIN("l");
  cf.n_values = 3;
  cf.values = vals;
  cf.ttl_milliseconds = 77;
  cf.refresh_ttl = 1;
  cf.truncate_back_to_size = 2;
  CacheClient__ListConcatenateFrontRequest *g = roundtrip(&cf);
  assert_int_equal(g->n_values, 3);
  ASSERT_BIN(g->values[0], "one");
  ASSERT_BIN(g->values[1], "");
  ASSERT_BIN(g->values[2], "three");
  assert_int_equal(g->ttl_milliseconds, 77);
  assert_int_equal(g->truncate_back_to_size, 2);
  done(g);

  CacheClient__ListConcatenateBackRequest cb = CACHE_CLIENT____LIST_CONCATENATE_BACK_REQUEST__INIT;
  cb.list_name = BIN("l");
  cb.n_values = 2;
  cb.values = vals;
  cb.truncate_front_to_size = 4;
  CacheClient__ListConcatenateBackRequest *h = roundtrip(&cb);
  assert_int_equal(h->n_values, 2);
  ASSERT_BIN(h->values[0], "one");
  assert_int_equal(h->truncate_front_to_size, 4);
  done(h);

  CacheClient__ListConcatenateFrontResponse cfr =
      CACHE_CLIENT____LIST_CONCATENATE_FRONT_RESPONSE__INIT;
  cfr.list_length = 3;
  CacheClient__ListConcatenateFrontResponse *i = roundtrip(&cfr);
  assert_int_equal(i->list_length, 3);
  done(i);
  CacheClient__ListConcatenateBackResponse cbr =
      CACHE_CLIENT____LIST_CONCATENATE_BACK_RESPONSE__INIT;
  cbr.list_length = 4;
  CacheClient__ListConcatenateBackResponse *j = roundtrip(&cbr);
  assert_int_equal(j->list_length, 4);
  done(j);
}

static void test_rt_pop(void **state) {
  (void)state;
  CacheClient__ListPopFrontRequest pfq = CACHE_CLIENT____LIST_POP_FRONT_REQUEST__INIT;
  pfq.list_name = BIN("q");
  CacheClient__ListPopFrontRequest *a = roundtrip(&pfq);
  ASSERT_BIN(a->list_name, "q");
  done(a);
  CacheClient__ListPopBackRequest pbq = CACHE_CLIENT____LIST_POP_BACK_REQUEST__INIT;
  pbq.list_name = BIN("q");
  CacheClient__ListPopBackRequest *b = roundtrip(&pbq);
  ASSERT_BIN(b->list_name, "q");
  done(b);

  CacheClient__ListPopFrontResponse__Found ff =
      CACHE_CLIENT____LIST_POP_FRONT_RESPONSE____FOUND__INIT;
  ff.front = BIN("first");
  ff.list_length = 2;
  CacheClient__ListPopFrontResponse fr = CACHE_CLIENT____LIST_POP_FRONT_RESPONSE__INIT;
  fr.list_case = CACHE_CLIENT____LIST_POP_FRONT_RESPONSE__LIST_FOUND;
  fr.found = &ff;
  CacheClient__ListPopFrontResponse *c = roundtrip(&fr);
  assert_int_equal(c->list_case, CACHE_CLIENT____LIST_POP_FRONT_RESPONSE__LIST_FOUND);
  ASSERT_BIN(c->found->front, "first");
  assert_int_equal(c->found->list_length, 2);
  done(c);
  CacheClient__ListPopFrontResponse__Missing fm =
      CACHE_CLIENT____LIST_POP_FRONT_RESPONSE____MISSING__INIT;
  fr.list_case = CACHE_CLIENT____LIST_POP_FRONT_RESPONSE__LIST_MISSING;
  fr.missing = &fm;
  c = roundtrip(&fr);
  assert_int_equal(c->list_case, CACHE_CLIENT____LIST_POP_FRONT_RESPONSE__LIST_MISSING);
  done(c);

  CacheClient__ListPopBackResponse__Found bf =
      CACHE_CLIENT____LIST_POP_BACK_RESPONSE____FOUND__INIT;
  bf.back = BIN("last");
  bf.list_length = 1;
  CacheClient__ListPopBackResponse br = CACHE_CLIENT____LIST_POP_BACK_RESPONSE__INIT;
  br.list_case = CACHE_CLIENT____LIST_POP_BACK_RESPONSE__LIST_FOUND;
  br.found = &bf;
  CacheClient__ListPopBackResponse *d = roundtrip(&br);
  ASSERT_BIN(d->found->back, "last");
  assert_int_equal(d->found->list_length, 1);
  done(d);
  CacheClient__ListPopBackResponse__Missing bm =
      CACHE_CLIENT____LIST_POP_BACK_RESPONSE____MISSING__INIT;
  br.list_case = CACHE_CLIENT____LIST_POP_BACK_RESPONSE__LIST_MISSING;
  br.missing = &bm;
  d = roundtrip(&br);
  assert_int_equal(d->list_case, CACHE_CLIENT____LIST_POP_BACK_RESPONSE__LIST_MISSING);
  done(d);
}

static void test_rt_erase_remove(void **state) {
  (void)state;
  CacheClient__ListRange r0 = CACHE_CLIENT____LIST_RANGE__INIT;
  r0.begin_index = 0;
  r0.count = 2;
  CacheClient__ListRange r1 = CACHE_CLIENT____LIST_RANGE__INIT;
  r1.begin_index = 10;
  r1.count = 1;
  CacheClient__ListRange *ranges[] = {&r0, &r1};
  CacheClient__ListEraseRequest__ListRanges some =
      CACHE_CLIENT____LIST_ERASE_REQUEST____LIST_RANGES__INIT;
  some.n_ranges = 2;
  some.ranges = ranges;
  CacheClient__ListEraseRequest er = CACHE_CLIENT____LIST_ERASE_REQUEST__INIT;
  er.list_name = BIN("l");
  er.erase_case = CACHE_CLIENT____LIST_ERASE_REQUEST__ERASE_SOME;
  er.some = &some;
  CacheClient__ListEraseRequest *a = roundtrip(&er);
  assert_int_equal(a->erase_case, CACHE_CLIENT____LIST_ERASE_REQUEST__ERASE_SOME);
  assert_int_equal(a->some->n_ranges, 2);
  assert_int_equal(a->some->ranges[0]->begin_index, 0);
  assert_int_equal(a->some->ranges[0]->count, 2);
  assert_int_equal(a->some->ranges[1]->begin_index, 10);
  assert_int_equal(a->some->ranges[1]->count, 1);
  done(a);
  CacheClient__ListEraseRequest__All all = CACHE_CLIENT____LIST_ERASE_REQUEST____ALL__INIT;
  er.erase_case = CACHE_CLIENT____LIST_ERASE_REQUEST__ERASE_ALL;
  er.all = &all;
  a = roundtrip(&er);
  assert_int_equal(a->erase_case, CACHE_CLIENT____LIST_ERASE_REQUEST__ERASE_ALL);
  done(a);

  CacheClient__ListEraseResponse__Found ef = CACHE_CLIENT____LIST_ERASE_RESPONSE____FOUND__INIT;
  ef.list_length = 8;
  CacheClient__ListEraseResponse ers = CACHE_CLIENT____LIST_ERASE_RESPONSE__INIT;
  ers.list_case = CACHE_CLIENT____LIST_ERASE_RESPONSE__LIST_FOUND;
  ers.found = &ef;
  CacheClient__ListEraseResponse *b = roundtrip(&ers);
  assert_int_equal(b->found->list_length, 8);
  done(b);
  CacheClient__ListEraseResponse__Missing em = CACHE_CLIENT____LIST_ERASE_RESPONSE____MISSING__INIT;
  ers.list_case = CACHE_CLIENT____LIST_ERASE_RESPONSE__LIST_MISSING;
  ers.missing = &em;
  b = roundtrip(&ers);
  assert_int_equal(b->list_case, CACHE_CLIENT____LIST_ERASE_RESPONSE__LIST_MISSING);
  done(b);

  CacheClient__ListRemoveRequest rr = CACHE_CLIENT____LIST_REMOVE_REQUEST__INIT;
  rr.list_name = BIN("l");
  rr.remove_case = CACHE_CLIENT____LIST_REMOVE_REQUEST__REMOVE_ALL_ELEMENTS_WITH_VALUE;
  rr.all_elements_with_value = BIN("dup");
  CacheClient__ListRemoveRequest *c = roundtrip(&rr);
  assert_int_equal(c->remove_case,
                   CACHE_CLIENT____LIST_REMOVE_REQUEST__REMOVE_ALL_ELEMENTS_WITH_VALUE);
  ASSERT_BIN(c->all_elements_with_value, "dup");
  done(c);

  CacheClient__ListRemoveResponse__Found rf = CACHE_CLIENT____LIST_REMOVE_RESPONSE____FOUND__INIT;
  rf.list_length = 6;
  CacheClient__ListRemoveResponse rrs = CACHE_CLIENT____LIST_REMOVE_RESPONSE__INIT;
  rrs.list_case = CACHE_CLIENT____LIST_REMOVE_RESPONSE__LIST_FOUND;
  rrs.found = &rf;
  CacheClient__ListRemoveResponse *d = roundtrip(&rrs);
  assert_int_equal(d->found->list_length, 6);
  done(d);
  CacheClient__ListRemoveResponse__Missing rm =
      CACHE_CLIENT____LIST_REMOVE_RESPONSE____MISSING__INIT;
  rrs.list_case = CACHE_CLIENT____LIST_REMOVE_RESPONSE__LIST_MISSING;
  rrs.missing = &rm;
  d = roundtrip(&rrs);
  assert_int_equal(d->list_case, CACHE_CLIENT____LIST_REMOVE_RESPONSE__LIST_MISSING);
  done(d);
}

static void test_rt_fetch_length_retain(void **state) {
  (void)state;
  CacheClient__ListFetchRequest fq = CACHE_CLIENT____LIST_FETCH_REQUEST__INIT;
  fq.list_name = BIN("chat");
  fq.start_index_case = CACHE_CLIENT____LIST_FETCH_REQUEST__START_INDEX_INCLUSIVE_START;
  fq.inclusive_start = INT32_MIN;
  fq.end_index_case = CACHE_CLIENT____LIST_FETCH_REQUEST__END_INDEX_EXCLUSIVE_END;
  fq.exclusive_end = INT32_MAX;
  CacheClient__ListFetchRequest *a = roundtrip(&fq);
  assert_int_equal(a->inclusive_start, INT32_MIN);
  assert_int_equal(a->exclusive_end, INT32_MAX);
  done(a);
  /* Neither bound set: both oneofs stay NOT_SET. */
  fq.start_index_case = CACHE_CLIENT____LIST_FETCH_REQUEST__START_INDEX__NOT_SET;
  fq.end_index_case = CACHE_CLIENT____LIST_FETCH_REQUEST__END_INDEX__NOT_SET;
  a = roundtrip(&fq);
  assert_int_equal(a->start_index_case, CACHE_CLIENT____LIST_FETCH_REQUEST__START_INDEX__NOT_SET);
  assert_int_equal(a->end_index_case, CACHE_CLIENT____LIST_FETCH_REQUEST__END_INDEX__NOT_SET);
  done(a);

  ProtobufCBinaryData vals[] = {BIN("m1"), BIN("m2")};
  CacheClient__ListFetchResponse__Found ff = CACHE_CLIENT____LIST_FETCH_RESPONSE____FOUND__INIT;
  ff.n_values = 2;
  ff.values = vals;
  CacheClient__ListFetchResponse fr = CACHE_CLIENT____LIST_FETCH_RESPONSE__INIT;
  fr.list_case = CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_FOUND;
  fr.found = &ff;
  CacheClient__ListFetchResponse *b = roundtrip(&fr);
  assert_int_equal(b->found->n_values, 2);
  ASSERT_BIN(b->found->values[1], "m2");
  done(b);
  CacheClient__ListFetchResponse__Missing fm = CACHE_CLIENT____LIST_FETCH_RESPONSE____MISSING__INIT;
  fr.list_case = CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_MISSING;
  fr.missing = &fm;
  b = roundtrip(&fr);
  assert_int_equal(b->list_case, CACHE_CLIENT____LIST_FETCH_RESPONSE__LIST_MISSING);
  done(b);

  CacheClient__ListLengthRequest lq = CACHE_CLIENT____LIST_LENGTH_REQUEST__INIT;
  lq.list_name = BIN("chat");
  CacheClient__ListLengthRequest *c = roundtrip(&lq);
  ASSERT_BIN(c->list_name, "chat");
  done(c);
  CacheClient__ListLengthResponse__Found lf = CACHE_CLIENT____LIST_LENGTH_RESPONSE____FOUND__INIT;
  lf.length = 99;
  CacheClient__ListLengthResponse lr = CACHE_CLIENT____LIST_LENGTH_RESPONSE__INIT;
  lr.list_case = CACHE_CLIENT____LIST_LENGTH_RESPONSE__LIST_FOUND;
  lr.found = &lf;
  CacheClient__ListLengthResponse *d = roundtrip(&lr);
  assert_int_equal(d->found->length, 99);
  done(d);
  CacheClient__ListLengthResponse__Missing lm =
      CACHE_CLIENT____LIST_LENGTH_RESPONSE____MISSING__INIT;
  lr.list_case = CACHE_CLIENT____LIST_LENGTH_RESPONSE__LIST_MISSING;
  lr.missing = &lm;
  d = roundtrip(&lr);
  assert_int_equal(d->list_case, CACHE_CLIENT____LIST_LENGTH_RESPONSE__LIST_MISSING);
  done(d);

  Common__Unbounded unb = COMMON____UNBOUNDED__INIT;
  CacheClient__ListRetainRequest rq = CACHE_CLIENT____LIST_RETAIN_REQUEST__INIT;
  rq.list_name = BIN("chat");
  rq.start_index_case = CACHE_CLIENT____LIST_RETAIN_REQUEST__START_INDEX_INCLUSIVE_START;
  rq.inclusive_start = -100;
  rq.end_index_case = CACHE_CLIENT____LIST_RETAIN_REQUEST__END_INDEX_UNBOUNDED_END;
  rq.unbounded_end = &unb;
  rq.ttl_milliseconds = 3600000;
  rq.refresh_ttl = 1;
  CacheClient__ListRetainRequest *e = roundtrip(&rq);
  assert_int_equal(e->inclusive_start, -100);
  assert_int_equal(e->end_index_case, CACHE_CLIENT____LIST_RETAIN_REQUEST__END_INDEX_UNBOUNDED_END);
  assert_int_equal(e->ttl_milliseconds, 3600000);
  assert_true(e->refresh_ttl);
  done(e);
  /* Retain's ttl fields are 6 and 7 (after the 2..5 oneofs). */
  rq.start_index_case = CACHE_CLIENT____LIST_RETAIN_REQUEST__START_INDEX__NOT_SET;
  rq.end_index_case = CACHE_CLIENT____LIST_RETAIN_REQUEST__END_INDEX__NOT_SET;
  rq.list_name = BIN("");
  rq.ttl_milliseconds = 1;
  static const uint8_t want_retain[] = {
      0x30, 0x01, /* ttl_milliseconds = 6, VARINT 1 */
      0x38, 0x01, /* refresh_ttl = 7, VARINT true */
  };
  done(expect_bytes(&rq, want_retain, sizeof want_retain));

  CacheClient__ListRetainResponse__Found rf = CACHE_CLIENT____LIST_RETAIN_RESPONSE____FOUND__INIT;
  rf.list_length = 100;
  CacheClient__ListRetainResponse rr = CACHE_CLIENT____LIST_RETAIN_RESPONSE__INIT;
  rr.list_case = CACHE_CLIENT____LIST_RETAIN_RESPONSE__LIST_FOUND;
  rr.found = &rf;
  CacheClient__ListRetainResponse *f = roundtrip(&rr);
  assert_int_equal(f->found->list_length, 100);
  done(f);
  CacheClient__ListRetainResponse__Missing rm =
      CACHE_CLIENT____LIST_RETAIN_RESPONSE____MISSING__INIT;
  rr.list_case = CACHE_CLIENT____LIST_RETAIN_RESPONSE__LIST_MISSING;
  rr.missing = &rm;
  f = roundtrip(&rr);
  assert_int_equal(f->list_case, CACHE_CLIENT____LIST_RETAIN_RESPONSE__LIST_MISSING);
  done(f);
}

static void test_rt_control_ping(void **state) {
  (void)state;
  ControlClient__CreateCacheRequest cq = CONTROL_CLIENT____CREATE_CACHE_REQUEST__INIT;
  cq.cache_name = "im";
  ControlClient__CreateCacheRequest *a = roundtrip(&cq);
  assert_string_equal(a->cache_name, "im");
  done(a);
  ControlClient__CreateCacheResponse cr = CONTROL_CLIENT____CREATE_CACHE_RESPONSE__INIT;
  done(roundtrip(&cr));
  ControlClient__DeleteCacheRequest dq = CONTROL_CLIENT____DELETE_CACHE_REQUEST__INIT;
  dq.cache_name = "old";
  ControlClient__DeleteCacheRequest *b = roundtrip(&dq);
  assert_string_equal(b->cache_name, "old");
  done(b);
  ControlClient__DeleteCacheResponse dr = CONTROL_CLIENT____DELETE_CACHE_RESPONSE__INIT;
  done(roundtrip(&dr));
  ControlClient__ListCachesRequest lq = CONTROL_CLIENT____LIST_CACHES_REQUEST__INIT;
  lq.next_token = "page2";
  ControlClient__ListCachesRequest *c = roundtrip(&lq);
  assert_string_equal(c->next_token, "page2");
  done(c);

  ControlClient__CacheLimits lim = CONTROL_CLIENT____CACHE_LIMITS__INIT;
  lim.max_traffic_rate = 100;
  lim.max_throughput_kbps = 1024;
  lim.max_item_size_kb = 5120;
  lim.max_ttl_seconds = 86400;
  ControlClient__TopicLimits tl = CONTROL_CLIENT____TOPIC_LIMITS__INIT;
  tl.max_publish_rate = 10;
  tl.max_subscription_count = 20;
  tl.max_publish_message_size_kb = 30;
  ControlClient__Cache c0 = CONTROL_CLIENT____CACHE__INIT;
  c0.cache_name = "a";
  c0.cache_limits = &lim;
  c0.topic_limits = &tl;
  ControlClient__Cache c1 = CONTROL_CLIENT____CACHE__INIT;
  c1.cache_name = "b";
  ControlClient__Cache *caches[] = {&c0, &c1};
  ControlClient__ListCachesResponse lr = CONTROL_CLIENT____LIST_CACHES_RESPONSE__INIT;
  lr.n_cache = 2;
  lr.cache = caches;
  lr.next_token = "";
  ControlClient__ListCachesResponse *d = roundtrip(&lr);
  assert_int_equal(d->n_cache, 2);
  assert_string_equal(d->cache[0]->cache_name, "a");
  assert_int_equal(d->cache[0]->cache_limits->max_item_size_kb, 5120);
  assert_int_equal(d->cache[0]->cache_limits->max_ttl_seconds, 86400);
  assert_int_equal(d->cache[0]->topic_limits->max_subscription_count, 20);
  assert_string_equal(d->cache[1]->cache_name, "b");
  assert_null(d->cache[1]->cache_limits);
  assert_string_equal(d->next_token, "");
  done(d);

  CacheClient__PingRequest pq = CACHE_CLIENT____PING_REQUEST__INIT;
  done(roundtrip(&pq));
  CacheClient__PingResponse pr = CACHE_CLIENT____PING_RESPONSE__INIT;
  done(roundtrip(&pr));
}

static void test_rt_pubsub(void **state) {
  (void)state;
  CacheClient__Pubsub__TopicValue tv = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__INIT;
  tv.kind_case = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_TEXT;
  tv.text = "{\"v\":1,\"text\":\"h\xc3\xa9\"}";
  CacheClient__Pubsub__PublishRequest pr = CACHE_CLIENT__PUBSUB____PUBLISH_REQUEST__INIT;
  pr.cache_name = "im";
  pr.topic = "c1";
  pr.value = &tv;
  CacheClient__Pubsub__PublishRequest *a = roundtrip(&pr);
  assert_string_equal(a->cache_name, "im");
  assert_string_equal(a->topic, "c1");
  assert_int_equal(a->value->kind_case, CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_TEXT);
  assert_string_equal(a->value->text, tv.text);
  done(a);
  /* An empty text is still a text (oneof member present). */
  tv.text = "";
  CacheClient__Pubsub__TopicValue *b = roundtrip(&tv);
  assert_int_equal(b->kind_case, CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_TEXT);
  assert_string_equal(b->text, "");
  done(b);
  tv.kind_case = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_BINARY;
  tv.binary = BIN("\x01\x02\x03");
  b = roundtrip(&tv);
  assert_int_equal(b->kind_case, CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_BINARY);
  ASSERT_BIN(b->binary, "\x01\x02\x03");
  done(b);

  CacheClient__Pubsub__SubscriptionRequest sq = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_REQUEST__INIT;
  sq.cache_name = "im";
  sq.topic = "c1";
  sq.resume_at_topic_sequence_number = UINT64_MAX;
  sq.sequence_page = UINT64_C(1) << 40;
  CacheClient__Pubsub__SubscriptionRequest *c = roundtrip(&sq);
  assert_string_equal(c->cache_name, "im");
  assert_string_equal(c->topic, "c1");
  assert_true(c->resume_at_topic_sequence_number == UINT64_MAX);
  assert_true(c->sequence_page == UINT64_C(1) << 40);
  done(c);

  CacheClient__Pubsub__TopicItem ti = CACHE_CLIENT__PUBSUB____TOPIC_ITEM__INIT;
  ti.topic_sequence_number = 123456789012ull;
  ti.value = &tv;
  ti.publisher_id = "moderator";
  ti.sequence_page = 4;
  CacheClient__Pubsub__SubscriptionItem si = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__INIT;
  si.kind_case = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_ITEM;
  si.item = &ti;
  CacheClient__Pubsub__SubscriptionItem *d = roundtrip(&si);
  assert_int_equal(d->kind_case, CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_ITEM);
  assert_true(d->item->topic_sequence_number == 123456789012ull);
  assert_string_equal(d->item->publisher_id, "moderator");
  assert_int_equal(d->item->sequence_page, 4);
  ASSERT_BIN(d->item->value->binary, "\x01\x02\x03");
  done(d);

  CacheClient__Pubsub__Discontinuity dc = CACHE_CLIENT__PUBSUB____DISCONTINUITY__INIT;
  dc.last_topic_sequence = 10;
  dc.new_topic_sequence = 20;
  dc.new_sequence_page = 30;
  CacheClient__Pubsub__Discontinuity *e = roundtrip(&dc);
  assert_int_equal(e->last_topic_sequence, 10);
  assert_int_equal(e->new_topic_sequence, 20);
  assert_int_equal(e->new_sequence_page, 30);
  done(e);

  CacheClient__Pubsub__Heartbeat hb = CACHE_CLIENT__PUBSUB____HEARTBEAT__INIT;
  done(roundtrip(&hb));
  Common__Empty em = COMMON____EMPTY__INIT;
  done(roundtrip(&em));
}

static void test_rt_token_permissions(void **state) {
  (void)state;
  /* Every selector form: all caches + all items, cache name + key prefix, all topics,
   * topic name prefix. */
  PermissionMessages__PermissionsType__All all = PERMISSION_MESSAGES__PERMISSIONS_TYPE__ALL__INIT;
  PermissionMessages__PermissionsType__CachePermissions cp0 =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__INIT;
  cp0.role = PERMISSION_MESSAGES__CACHE_ROLE__CacheReadWrite;
  cp0.cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ALL_CACHES;
  cp0.all_caches = &all;
  cp0.cache_item_case =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ITEM_ALL_ITEMS;
  cp0.all_items = &all;

  PermissionMessages__PermissionsType__CacheSelector cs =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_SELECTOR__INIT;
  cs.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_SELECTOR__KIND_CACHE_NAME;
  cs.cache_name = "im";
  PermissionMessages__PermissionsType__CacheItemSelector is =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__INIT;
  is.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__KIND_KEY_PREFIX;
  is.key_prefix = BIN("room-");
  PermissionMessages__PermissionsType__CachePermissions cp1 =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__INIT;
  cp1.role = PERMISSION_MESSAGES__CACHE_ROLE__CacheWriteOnly;
  cp1.cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_CACHE_SELECTOR;
  cp1.cache_selector = &cs;
  cp1.cache_item_case =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ITEM_ITEM_SELECTOR;
  cp1.item_selector = &is;

  PermissionMessages__PermissionsType__TopicPermissions tp0 =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__INIT;
  tp0.role = PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadWrite;
  tp0.cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__CACHE_CACHE_SELECTOR;
  tp0.cache_selector = &cs;
  tp0.topic_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__TOPIC_ALL_TOPICS;
  tp0.all_topics = &all;
  PermissionMessages__PermissionsType__TopicSelector ts =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__INIT;
  ts.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__KIND_TOPIC_NAME_PREFIX;
  ts.topic_name_prefix = "room-";
  PermissionMessages__PermissionsType__TopicPermissions tp1 =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__INIT;
  tp1.role = PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadOnly;
  tp1.cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__CACHE_ALL_CACHES;
  tp1.all_caches = &all;
  tp1.topic_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__TOPIC_TOPIC_SELECTOR;
  tp1.topic_selector = &ts;

  PermissionMessages__PermissionsType t[4];
  for (int i = 0; i < 4; i++)
    t[i] = (PermissionMessages__PermissionsType)PERMISSION_MESSAGES__PERMISSIONS_TYPE__INIT;
  t[0].kind_case = t[1].kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_CACHE_PERMISSIONS;
  t[0].cache_permissions = &cp0;
  t[1].cache_permissions = &cp1;
  t[2].kind_case = t[3].kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_TOPIC_PERMISSIONS;
  t[2].topic_permissions = &tp0;
  t[3].topic_permissions = &tp1;
  PermissionMessages__PermissionsType *list[] = {&t[0], &t[1], &t[2], &t[3]};
  PermissionMessages__ExplicitPermissions ex = PERMISSION_MESSAGES__EXPLICIT_PERMISSIONS__INIT;
  ex.n_permissions = 4;
  ex.permissions = list;
  PermissionMessages__Permissions perms = PERMISSION_MESSAGES__PERMISSIONS__INIT;
  perms.kind_case = PERMISSION_MESSAGES__PERMISSIONS__KIND_EXPLICIT;
  perms.explicit_ = &ex;

  Token__GenerateDisposableTokenRequest__Expires exp =
      TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__EXPIRES__INIT;
  exp.valid_for_seconds = UINT32_MAX;
  Token__GenerateDisposableTokenRequest rq = TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__INIT;
  rq.expires = &exp;
  rq.auth_token = "caller-token";
  rq.permissions = &perms;
  rq.token_id = "user-42";
  Token__GenerateDisposableTokenRequest *d = roundtrip(&rq);
  assert_int_equal(d->expires->valid_for_seconds, UINT32_MAX);
  assert_string_equal(d->auth_token, "caller-token");
  assert_string_equal(d->token_id, "user-42");
  assert_int_equal(d->permissions->kind_case, PERMISSION_MESSAGES__PERMISSIONS__KIND_EXPLICIT);
  PermissionMessages__ExplicitPermissions *dx = d->permissions->explicit_;
  assert_int_equal(dx->n_permissions, 4);

  PermissionMessages__PermissionsType__CachePermissions *g0 = dx->permissions[0]->cache_permissions;
  assert_int_equal(dx->permissions[0]->kind_case,
                   PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_CACHE_PERMISSIONS);
  assert_int_equal(g0->role, PERMISSION_MESSAGES__CACHE_ROLE__CacheReadWrite);
  assert_int_equal(g0->cache_case,
                   PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ALL_CACHES);
  assert_int_equal(g0->cache_item_case,
                   PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ITEM_ALL_ITEMS);

  PermissionMessages__PermissionsType__CachePermissions *g1 = dx->permissions[1]->cache_permissions;
  assert_int_equal(g1->role, PERMISSION_MESSAGES__CACHE_ROLE__CacheWriteOnly);
  assert_string_equal(g1->cache_selector->cache_name, "im");
  assert_int_equal(g1->item_selector->kind_case,
                   PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__KIND_KEY_PREFIX);
  ASSERT_BIN(g1->item_selector->key_prefix, "room-");

  PermissionMessages__PermissionsType__TopicPermissions *g2 = dx->permissions[2]->topic_permissions;
  assert_int_equal(dx->permissions[2]->kind_case,
                   PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_TOPIC_PERMISSIONS);
  assert_int_equal(g2->role, PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadWrite);
  assert_string_equal(g2->cache_selector->cache_name, "im");
  assert_int_equal(g2->topic_case,
                   PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__TOPIC_ALL_TOPICS);

  PermissionMessages__PermissionsType__TopicPermissions *g3 = dx->permissions[3]->topic_permissions;
  assert_int_equal(g3->role, PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadOnly);
  assert_int_equal(g3->cache_case,
                   PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__CACHE_ALL_CACHES);
  assert_int_equal(g3->topic_selector->kind_case,
                   PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__KIND_TOPIC_NAME_PREFIX);
  assert_string_equal(g3->topic_selector->topic_name_prefix, "room-");
  done(d);

  Token__GenerateDisposableTokenResponse rs = TOKEN____GENERATE_DISPOSABLE_TOKEN_RESPONSE__INIT;
  rs.api_key = "eyJhbGciOi.x.y";
  rs.endpoint = "cell-1.example.com";
  rs.valid_until = 1764000000;
  Token__GenerateDisposableTokenResponse *r = roundtrip(&rs);
  assert_string_equal(r->api_key, "eyJhbGciOi.x.y");
  assert_string_equal(r->endpoint, "cell-1.example.com");
  assert_int_equal(r->valid_until, 1764000000);
  done(r);
}

/* Malformed bytes must be rejected, not crash. */
static void test_decode_garbage(void **state) {
  (void)state;
  static const uint8_t truncated[] = {0x0a, 0x05, 'a', 'b'}; /* LEN 5 with 2 bytes */
  assert_null(protobuf_c_message_unpack(&cache_client____list_fetch_response__descriptor, NULL,
                                        sizeof truncated, truncated));
  static const uint8_t bad_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  assert_null(protobuf_c_message_unpack(&cache_client____list_push_back_response__descriptor, NULL,
                                        sizeof bad_varint, bad_varint));
  /* An unknown field is skipped (servers may add fields). */
  static const uint8_t unknown[] = {0x08, 0x07, 0x78, 0x01}; /* list_length 7, field 15 */
  CacheClient__ListPushBackResponse *r =
      decode(&cache_client____list_push_back_response__descriptor, unknown, sizeof unknown);
  assert_int_equal(r->list_length, 7);
  done(r);
}

/* ==== Part 3: service and method names (the gRPC paths) ==== */

static void assert_service(const ProtobufCServiceDescriptor *d, const char *full_name,
                           const char *const *methods, size_t n) {
  assert_string_equal(d->name, full_name);
  assert_int_equal(d->n_methods, n);
  for (size_t i = 0; i < n; i++) {
    int found = 0;
    for (unsigned j = 0; j < d->n_methods; j++)
      found |= strcmp(d->methods[j].name, methods[i]) == 0;
    if (!found)
      fail_msg("%s has no method %s", full_name, methods[i]);
  }
}

static void test_service_names(void **state) {
  (void)state;
  static const char *const scs[] = {"Delete",       "ItemGetTtl",           "ListPushFront",
                                    "ListPushBack", "ListPopFront",         "ListPopBack",
                                    "ListErase",    "ListRemove",           "ListFetch",
                                    "ListLength",   "ListConcatenateFront", "ListConcatenateBack",
                                    "ListRetain",   "DictionaryGet",        "DictionaryFetch",
                                    "DictionarySet"};
  assert_service(&cache_client__scs__descriptor, "cache_client.Scs", scs, 16);
  static const char *const ctl[] = {"CreateCache", "DeleteCache", "ListCaches"};
  assert_service(&control_client__scs_control__descriptor, "control_client.ScsControl", ctl, 3);
  static const char *const ping[] = {"Ping"};
  assert_service(&cache_client__ping__descriptor, "cache_client.Ping", ping, 1);
  static const char *const ps[] = {"Publish", "Subscribe"};
  assert_service(&cache_client__pubsub__pubsub__descriptor, "cache_client.pubsub.Pubsub", ps, 2);
  static const char *const tok[] = {"GenerateDisposableToken"};
  assert_service(&token__token__descriptor, "token.Token", tok, 1);
  /* Message full names as they appear in Momento's protos. */
  assert_string_equal(cache_client____list_push_back_request__descriptor.name,
                      "cache_client._ListPushBackRequest");
  assert_string_equal(cache_client__pubsub____subscription_item__descriptor.name,
                      "cache_client.pubsub._SubscriptionItem");
  assert_string_equal(permission_messages__permissions__descriptor.name,
                      "permission_messages.Permissions");
  assert_string_equal(common____unbounded__descriptor.name, "common._Unbounded");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bytes_list_push_back),
      cmocka_unit_test(test_bytes_list_concatenate_back),
      cmocka_unit_test(test_bytes_list_fetch),
      cmocka_unit_test(test_bytes_list_responses),
      cmocka_unit_test(test_bytes_delete),
      cmocka_unit_test(test_bytes_create_cache),
      cmocka_unit_test(test_bytes_ping),
      cmocka_unit_test(test_bytes_subscription_request),
      cmocka_unit_test(test_bytes_topic_item),
      cmocka_unit_test(test_bytes_generate_token),
      cmocka_unit_test(test_rt_delete_ttl),
      cmocka_unit_test(test_rt_push_concat),
      cmocka_unit_test(test_rt_pop),
      cmocka_unit_test(test_rt_erase_remove),
      cmocka_unit_test(test_rt_fetch_length_retain),
      cmocka_unit_test(test_rt_control_ping),
      cmocka_unit_test(test_rt_pubsub),
      cmocka_unit_test(test_rt_token_permissions),
      cmocka_unit_test(test_decode_garbage),
      cmocka_unit_test(test_service_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
