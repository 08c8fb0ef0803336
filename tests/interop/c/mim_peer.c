/* mim-peer: a tiny command-line client on libmomento-im, so the interop tests can check our
 * library against the official Node.js SDK in both directions (through mim-local).
 *
 *   MIM_PEER_KEY=<v1 key> MIM_PEER_ENDPOINT=127.0.0.1:PORT mim-peer COMMAND ...
 *     publish CACHE TOPIC TEXT          text message
 *     publish-hex CACHE TOPIC HEX       binary message
 *     push CACHE LIST HEX               list push back
 *     fetch CACHE LIST                  prints "value HEX" per element, then "found N"
 *     dict-set CACHE DICT FHEX VHEX     dictionary set field (client TTL, refreshed)
 *     dict-get CACHE DICT FHEX          prints "value HEX" or "missing"
 *     dict-fetch CACHE DICT             prints "pair FHEX VHEX" per field, then "found N"
 *     subscribe CACHE TOPIC N MS        prints "ready" once live, then per item
 *                                       "item SEQ PAGE PUBLISHER text|binary HEX"; exits 0
 *                                       after N items, 3 if MS passed first
 *   mim-peer dm-id USER_A USER_B        prints mim_direct_chat_id's answer (no key needed)
 * Every command prints "ok" on success or "error NAME detail" (exit 2). Plaintext only. */
#include <momento/client.h>
#include <momento/dictionary.h>
#include <momento/im.h>
#include <momento/list.h>
#include <momento/topics.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void print_hex(const uint8_t *data, size_t len) {
  for (size_t i = 0; i < len; i++) {
    printf("%02x", data[i]);
  }
}

static int parse_hex(const char *hex, uint8_t **out, size_t *len) {
  size_t n = strlen(hex);
  if (n % 2 != 0) {
    return -1;
  }
  uint8_t *buf = malloc(n / 2 + 1);
  if (buf == NULL) {
    return -1;
  }
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
      free(buf);
      return -1;
    }
    buf[i] = (uint8_t)v;
  }
  *out = buf;
  *len = n / 2;
  return 0;
}

static int report(mim_status st) {
  if (st == MIM_OK) {
    printf("ok\n");
    return 0;
  }
  printf("error %s %s\n", mim_status_name(st), mim_last_error_detail());
  return 2;
}

/* Subscription state shared with the event thread. */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  long seen;
} sub_state;

static void on_item(void *user, const mim_topic_item *item) {
  sub_state *s = user;
  printf("item %llu %llu %s %s ", (unsigned long long)item->sequence,
         (unsigned long long)item->sequence_page,
         item->publisher_id && item->publisher_id[0] ? item->publisher_id : "-",
         item->is_binary ? "binary" : "text");
  print_hex(item->data, item->len);
  printf("\n");
  fflush(stdout);
  pthread_mutex_lock(&s->mu);
  s->seen++;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static int cmd_subscribe(mim_client *c, char **argv) {
  sub_state s = {.seen = 0};
  pthread_mutex_init(&s.mu, NULL);
  pthread_cond_init(&s.cv, NULL);
  long want = strtol(argv[2], NULL, 10);
  long ms = strtol(argv[3], NULL, 10);
  mim_subscription_callbacks cb = {
      .struct_size = sizeof(mim_subscription_callbacks), .on_item = on_item, .user = &s};
  mim_subscription *sub = NULL;
  mim_status st = mim_topic_subscribe(c, argv[0], argv[1], NULL, &cb, &sub);
  if (st != MIM_OK) {
    return report(st);
  }
  printf("ready\n");
  fflush(stdout);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += ms / 1000;
  deadline.tv_nsec += (ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  int rc = 0;
  pthread_mutex_lock(&s.mu);
  while (s.seen < want && rc != ETIMEDOUT) {
    rc = pthread_cond_timedwait(&s.cv, &s.mu, &deadline);
  }
  long seen = s.seen;
  pthread_mutex_unlock(&s.mu);
  mim_topic_unsubscribe(sub);
  if (seen < want) {
    printf("timeout %ld of %ld\n", seen, want);
    return 3;
  }
  printf("ok\n");
  return 0;
}

static int cmd_fetch(mim_client *c, char **argv) {
  mim_list_values *v = NULL;
  mim_status st = mim_list_fetch(c, argv[0], argv[1], NULL, &v);
  if (st != MIM_OK) {
    return report(st);
  }
  for (size_t i = 0; i < v->count; i++) {
    printf("value ");
    print_hex(v->values[i].data, v->values[i].len);
    printf("\n");
  }
  printf("found %zu\n", v->found ? v->count : 0);
  mim_list_values_free(v);
  return report(MIM_OK);
}

static int cmd_dict_set(mim_client *c, char **argv) {
  uint8_t *f = NULL, *v = NULL;
  size_t flen = 0, vlen = 0;
  int rc = 64;
  if (parse_hex(argv[2], &f, &flen) == 0 && parse_hex(argv[3], &v, &vlen) == 0) {
    rc = report(mim_dictionary_set_field(c, argv[0], argv[1], f, flen, v, vlen, NULL));
  }
  free(f);
  free(v);
  return rc;
}

static int cmd_dict_get(mim_client *c, char **argv) {
  uint8_t *f = NULL, *v = NULL;
  size_t flen = 0, vlen = 0;
  bool found = false;
  if (parse_hex(argv[2], &f, &flen) != 0) {
    return 64;
  }
  mim_status st = mim_dictionary_get_field(c, argv[0], argv[1], f, flen, &v, &vlen, &found);
  free(f);
  if (st == MIM_OK && found) {
    printf("value ");
    print_hex(v, vlen);
    printf("\n");
  } else if (st == MIM_OK) {
    printf("missing\n");
  }
  free(v);
  return report(st);
}

static int cmd_dict_fetch(mim_client *c, char **argv) {
  mim_dictionary_entries *d = NULL;
  mim_status st = mim_dictionary_fetch(c, argv[0], argv[1], &d);
  if (st != MIM_OK) {
    return report(st);
  }
  for (size_t i = 0; i < d->count; i++) {
    printf("pair ");
    print_hex(d->entries[i].field.data, d->entries[i].field.len);
    printf(" ");
    print_hex(d->entries[i].value.data, d->entries[i].value.len);
    printf("\n");
  }
  printf("found %zu\n", d->found ? d->count : 0);
  mim_dictionary_entries_free(d);
  return report(MIM_OK);
}

static int run(mim_client *c, const char *cmd, int argc, char **argv) {
  uint8_t *bin = NULL;
  size_t len = 0;
  int rc;
  if (strcmp(cmd, "publish") == 0 && argc == 3) {
    return report(mim_topic_publish_text(c, argv[0], argv[1], argv[2]));
  }
  if (strcmp(cmd, "publish-hex") == 0 && argc == 3 && parse_hex(argv[2], &bin, &len) == 0) {
    rc = report(mim_topic_publish_binary(c, argv[0], argv[1], bin, len));
    free(bin);
    return rc;
  }
  if (strcmp(cmd, "push") == 0 && argc == 3 && parse_hex(argv[2], &bin, &len) == 0) {
    rc = report(mim_list_push_back(c, argv[0], argv[1], bin, len, NULL, NULL));
    free(bin);
    return rc;
  }
  if (strcmp(cmd, "fetch") == 0 && argc == 2) {
    return cmd_fetch(c, argv);
  }
  if (strcmp(cmd, "subscribe") == 0 && argc == 4) {
    return cmd_subscribe(c, argv);
  }
  if (strcmp(cmd, "dict-set") == 0 && argc == 4) {
    return cmd_dict_set(c, argv);
  }
  if (strcmp(cmd, "dict-get") == 0 && argc == 3) {
    return cmd_dict_get(c, argv);
  }
  if (strcmp(cmd, "dict-fetch") == 0 && argc == 2) {
    return cmd_dict_fetch(c, argv);
  }
  fprintf(stderr, "mim-peer: bad command or arguments\n");
  return 64;
}

/* Local: the direct chat id, for comparison with one computed from docs/PROTOCOL.md. */
static int cmd_dm_id(char **argv) {
  char id[MIM_DIRECT_CHAT_ID_SIZE];
  mim_status st = mim_direct_chat_id(argv[0], argv[1], id);
  if (st != MIM_OK) {
    return report(st);
  }
  printf("%s\n", id);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "dm-id") == 0) {
    return cmd_dm_id(argv + 2);
  }
  const char *key = getenv("MIM_PEER_KEY");
  const char *ep = getenv("MIM_PEER_ENDPOINT");
  if (argc < 2 || key == NULL || ep == NULL) {
    fprintf(stderr, "usage: MIM_PEER_KEY=... MIM_PEER_ENDPOINT=host:port mim-peer CMD ...\n");
    return 64;
  }
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.cache_host = ep;
  o.control_host = ep;
  o.token_host = ep;
  o.tls = MIM_TLS_OFF;
  mim_client *c = NULL;
  mim_status st = mim_client_create(&o, &c);
  if (st != MIM_OK) {
    return report(st);
  }
  int rc = run(c, argv[1], argc - 2, argv + 2);
  fflush(stdout);
  mim_client_free(c);
  return rc;
}
