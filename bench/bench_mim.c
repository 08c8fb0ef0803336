/* Bench of our stack against a running mim-local: libmomento-im (topics publish ->
 * on_item, mim_send -> on_message, async publish throughput, mim_join of 100 messages,
 * memory per idle session) and the raw gRPC unary round trip (mim_client_ping).
 * Prints one JSON object per system on stdout; writes sorted latency samples (us) to
 * --samples-dir for the CDF plot. Every wait has a deadline.
 * Two more figures, each run on its own by bench/run.sh (fresh processes, clean RSS):
 *   --only fanout --subs N --procs P --messages M: one topic publish to N topic
 *     subscriptions spread over P subscriber processes (this program again, with
 *     --fanout-sub K; each holds one mim_client per FANOUT_SUBS_PER_CLIENT subscriptions),
 *     time until the last subscriber has it (bench_common.h);
 *   --only scale --chats N: one client joins N chats (idle), then mim_send ->
 *     on_message latency in one of them and RSS per joined session.
 * --system NAME names the rows (bench/run.sh runs this program once per transport build:
 * "mim (grpc core)", "mim (h2)"); --tag T suffixes the sample files. Client CPU (getrusage,
 * every thread of this process) is measured around the timed ping loop (per blocking call)
 * and around pipelined publishes with no subscriber (per async publish); server CPU
 * (/proc/PID/stat) per message around the throughput run and per publish. */
#include <stdbool.h>

#include "bench_common.h"
#include <momento/im.h>

#define WAIT_MS 10000
#define FANOUT_SUBS_PER_CLIENT 100

static struct {
  const char *endpoint, *key, *cache, *samples_dir, *system, *tag;
  long count, warmup, tput, window, joins, sessions, server_pid, payload;
} cfg;

static void die(const char *what, mim_status st) {
  fprintf(stderr, "bench_mim: %s: %s (%s)\n", what, mim_status_name(st), mim_last_error_detail());
  exit(1);
}

static mim_client *make_client(void) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = cfg.key;
  o.cache_host = cfg.endpoint;
  o.control_host = cfg.endpoint;
  o.token_host = cfg.endpoint;
  o.tls = MIM_TLS_OFF;
  mim_client *c = NULL;
  mim_status st = mim_client_create(&o, &c);
  if (st != MIM_OK)
    die("mim_client_create", st);
  return c;
}

static void on_item(void *user, const mim_topic_item *item) {
  (void)item;
  counter_bump(user);
}

static mim_subscription *subscribe(mim_client *c, const char *topic, counter *cnt) {
  mim_subscription_callbacks cb = {
      .struct_size = sizeof(mim_subscription_callbacks), .on_item = on_item, .user = cnt};
  mim_subscription *sub = NULL;
  mim_status st = mim_topic_subscribe(c, cfg.cache, topic, NULL, &cb, &sub);
  if (st != MIM_OK)
    die("mim_topic_subscribe", st);
  return sub;
}

static void save_samples(const char *name, bench_samples *s) {
  if (!cfg.samples_dir)
    return;
  char path[512];
  snprintf(path, sizeof(path), "%s/%s%s%s.txt", cfg.samples_dir, name, *cfg.tag ? "@" : "",
           cfg.tag);
  bench_write_samples(path, s);
}

/* Topic publish -> on_item, one message in flight. */
static void bench_topic_latency(mim_client *tx, mim_client *rx, const char *payload,
                                bench_samples *out) {
  counter cnt;
  counter_init(&cnt);
  mim_subscription *sub = subscribe(rx, "lat", &cnt);
  for (long i = 0; i < cfg.warmup + cfg.count; i++) {
    long before = cnt.n; /* only this thread waits; the callback only increments */
    int64_t t0 = bench_now_ns();
    mim_status st = mim_topic_publish_text(tx, cfg.cache, "lat", payload);
    if (st != MIM_OK)
      die("publish", st);
    if (counter_wait(&cnt, before + 1, WAIT_MS) <= before)
      die("no on_item", MIM_OK);
    pthread_mutex_lock(&cnt.mu);
    int64_t t1 = cnt.last_ns;
    pthread_mutex_unlock(&cnt.mu);
    if (i >= cfg.warmup)
      bench_samples_add(out, t1 - t0);
  }
  mim_topic_unsubscribe(sub);
}

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s;
  if (!m->from_history)
    counter_bump(user);
}

static void on_message_count_all(mim_session *s, const mim_message *m, void *user) {
  (void)s;
  (void)m;
  counter_bump(user);
}

static mim_session *join(mim_client *c, const char *chat, mim_on_message fn, counter *cnt) {
  mim_session *s = NULL;
  /* The join benchmark fetches and delivers the whole 100-message history (the default
   * initial_history shows only the newest 20). */
  mim_join_options jo = MIM_JOIN_OPTIONS_INIT;
  jo.initial_history = 100;
  mim_status st = mim_join(c, cfg.cache, chat, &jo, fn, cnt, &s);
  if (st != MIM_OK)
    die("mim_join", st);
  return s;
}

/* mim_send (list push + publish of the envelope) -> receiver's on_message. */
static void bench_send_latency(mim_client *tx, mim_client *rx, const char *payload,
                               bench_samples *out) {
  counter rcnt, scnt;
  counter_init(&rcnt);
  counter_init(&scnt);
  mim_session *rs = join(rx, "lat-chat", on_message, &rcnt);
  mim_session *ss = join(tx, "lat-chat", on_message, &scnt);
  for (long i = 0; i < cfg.warmup + cfg.count; i++) {
    long before = rcnt.n;
    int64_t t0 = bench_now_ns();
    mim_status st = mim_send(ss, payload, NULL);
    if (st != MIM_OK)
      die("mim_send", st);
    if (counter_wait(&rcnt, before + 1, WAIT_MS) <= before)
      die("no on_message", MIM_OK);
    pthread_mutex_lock(&rcnt.mu);
    int64_t t1 = rcnt.last_ns;
    pthread_mutex_unlock(&rcnt.mu);
    if (i >= cfg.warmup)
      bench_samples_add(out, t1 - t0);
  }
  mim_leave(ss);
  mim_leave(rs);
}

static void on_published(void *user, mim_status st, const char *detail) {
  (void)detail;
  counter *c = user;
  pthread_mutex_lock(&c->mu);
  c->inflight--;
  if (st != MIM_OK)
    c->failed++;
  c->last_ns = bench_now_ns();
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

/* Async publishes with up to cfg.window in flight; a second client counts arrivals. */
/* Async publishes of n messages with up to cfg.window in flight, until all completed. */
static void publish_window(mim_client *tx, const char *topic, const char *payload, long n,
                           counter *pub) {
  for (long i = 0; i < n; i++) {
    pthread_mutex_lock(&pub->mu);
    while (pub->inflight >= cfg.window)
      pthread_cond_wait(&pub->cv, &pub->mu);
    pub->inflight++;
    pthread_mutex_unlock(&pub->mu);
    mim_status st = mim_topic_publish_text_async(tx, cfg.cache, topic, payload, on_published, pub);
    if (st != MIM_OK)
      die("publish_async", st);
  }
  pthread_mutex_lock(&pub->mu);
  while (pub->inflight > 0)
    pthread_cond_wait(&pub->cv, &pub->mu);
  pthread_mutex_unlock(&pub->mu);
}

static double per_op_us(int64_t ns0, int64_t ns1, long n) {
  return ns0 < 0 || ns1 < 0 || n <= 0 ? -1 : (double)(ns1 - ns0) / 1000.0 / (double)n;
}

/* Client CPU per pipelined async publish, nobody subscribed (so this process only sends
 * and completes), and mim-local's CPU per publish meanwhile. */
static void bench_publish_cpu(mim_client *tx, const char *payload, double *client_us,
                              double *server_us) {
  counter pub;
  counter_init(&pub);
  long warm = cfg.tput / 10;
  publish_window(tx, "cpu", payload, warm, &pub);
  int64_t c0 = bench_cpu_self_ns(), s0 = bench_cpu_proc_ns((pid_t)cfg.server_pid);
  publish_window(tx, "cpu", payload, cfg.tput, &pub);
  int64_t c1 = bench_cpu_self_ns(), s1 = bench_cpu_proc_ns((pid_t)cfg.server_pid);
  if (pub.failed)
    fprintf(stderr, "bench_mim: %ld publishes failed\n", pub.failed);
  *client_us = per_op_us(c0, c1, cfg.tput);
  *server_us = per_op_us(s0, s1, cfg.tput);
}

static void bench_throughput(mim_client *tx, mim_client *rx, const char *payload, double *sends,
                             double *recvs, long *received, long *failed, double *server_us) {
  counter rcnt, pub;
  counter_init(&rcnt);
  counter_init(&pub);
  mim_subscription *sub = subscribe(rx, "tput", &rcnt);
  int64_t s0 = bench_cpu_proc_ns((pid_t)cfg.server_pid);
  int64_t t0 = bench_now_ns();
  for (long i = 0; i < cfg.tput; i++) {
    pthread_mutex_lock(&pub.mu);
    while (pub.inflight >= cfg.window)
      pthread_cond_wait(&pub.cv, &pub.mu);
    pub.inflight++;
    pthread_mutex_unlock(&pub.mu);
    mim_status st =
        mim_topic_publish_text_async(tx, cfg.cache, "tput", payload, on_published, &pub);
    if (st != MIM_OK)
      die("publish_async", st);
  }
  pthread_mutex_lock(&pub.mu);
  while (pub.inflight > 0)
    pthread_cond_wait(&pub.cv, &pub.mu);
  int64_t t_sent = pub.last_ns;
  *failed = pub.failed;
  pthread_mutex_unlock(&pub.mu);
  *received = counter_wait(&rcnt, cfg.tput, WAIT_MS);
  pthread_mutex_lock(&rcnt.mu);
  int64_t t_recv = rcnt.last_ns;
  pthread_mutex_unlock(&rcnt.mu);
  *server_us = per_op_us(s0, bench_cpu_proc_ns((pid_t)cfg.server_pid), cfg.tput);
  *sends = (double)cfg.tput / ((double)(t_sent - t0) / 1e9);
  *recvs = (double)*received / ((double)(t_recv - t0) / 1e9);
  mim_topic_unsubscribe(sub);
}

/* mim_join of a chat whose list holds 100 messages: subscribe + fetch + deliver all. */
static void bench_join(mim_client *tx, mim_client *rx, const char *payload, bench_samples *out) {
  counter scnt;
  counter_init(&scnt);
  mim_session *ss = join(tx, "join-chat", on_message, &scnt);
  for (int i = 0; i < 100; i++) {
    mim_status st = mim_send(ss, payload, NULL);
    if (st != MIM_OK)
      die("prefill", st);
  }
  for (long i = 0; i < cfg.warmup / 10 + cfg.joins; i++) {
    counter cnt;
    counter_init(&cnt);
    int64_t t0 = bench_now_ns();
    mim_session *s = join(rx, "join-chat", on_message_count_all, &cnt);
    int64_t t1 = bench_now_ns();
    if (cnt.n < 100)
      fprintf(stderr, "bench_mim: join delivered %ld of 100\n", cnt.n);
    mim_leave(s);
    if (i >= cfg.warmup / 10)
      bench_samples_add(out, t1 - t0);
  }
  mim_leave(ss);
}

/* Blocking unary round trips; *cpu_us is this process's CPU per timed call. */
static void bench_ping(mim_client *c, bench_samples *out, double *cpu_us) {
  int64_t c0 = 0;
  for (long i = 0; i < cfg.warmup + cfg.count; i++) {
    if (i == cfg.warmup)
      c0 = bench_cpu_self_ns();
    int64_t t0 = bench_now_ns();
    mim_status st = mim_client_ping(c);
    if (st != MIM_OK)
      die("ping", st);
    if (i >= cfg.warmup)
      bench_samples_add(out, bench_now_ns() - t0);
  }
  *cpu_us = per_op_us(c0, bench_cpu_self_ns(), cfg.count);
}

/* RSS growth per idle joined session: in this process and in mim-local. */
static void bench_memory(double *client_per, double *server_per) {
  mim_client *c = make_client();
  long n = cfg.sessions;
  mim_session **ss = calloc((size_t)n + 10, sizeof(*ss));
  counter cnt;
  counter_init(&cnt);
  char chat[64];
  for (int i = 0; i < 10; i++) { /* warm-up: first streams allocate shared state */
    snprintf(chat, sizeof(chat), "idle-w%d", i);
    ss[n + i] = join(c, chat, on_message, &cnt);
  }
  long c0 = bench_rss_bytes(0), s0 = bench_rss_bytes((pid_t)cfg.server_pid);
  for (long i = 0; i < n; i++) {
    snprintf(chat, sizeof(chat), "idle-%ld", i);
    ss[i] = join(c, chat, on_message, &cnt);
  }
  long c1 = bench_rss_bytes(0), s1 = bench_rss_bytes((pid_t)cfg.server_pid);
  *client_per = (double)(c1 - c0) / (double)n;
  *server_per = cfg.server_pid > 0 && s0 > 0 ? (double)(s1 - s0) / (double)n : -1;
  for (long i = 0; i < n + 10; i++)
    mim_leave(ss[i]);
  free(ss);
  mim_client_free(c);
}

static void on_fanout_item(void *user, const mim_topic_item *item) {
  fanout_sub_arrived(user, item->data, item->len);
}

static void fanout_topic(char *buf, size_t len, long subs) {
  snprintf(buf, len, "fanout-%ld", subs);
}

/* Subscriber process of the fan-out figure: k subscriptions to the topic. */
static int fanout_child(long k, long subs) {
  char topic[64];
  fanout_topic(topic, sizeof(topic), subs);
  fanout_sub st;
  fanout_sub_init(&st, k);
  long nclients = (k + FANOUT_SUBS_PER_CLIENT - 1) / FANOUT_SUBS_PER_CLIENT;
  mim_client **clients = calloc((size_t)nclients, sizeof(*clients));
  mim_subscription **subs_v = calloc((size_t)k, sizeof(*subs_v));
  for (long i = 0; i < nclients; i++)
    clients[i] = make_client();
  mim_subscription_callbacks cb = {
      .struct_size = sizeof(mim_subscription_callbacks), .on_item = on_fanout_item, .user = &st};
  for (long i = 0; i < k; i++) {
    mim_status rc =
        mim_topic_subscribe(clients[i % nclients], cfg.cache, topic, NULL, &cb, &subs_v[i]);
    if (rc != MIM_OK)
      die("fan-out subscribe", rc);
  }
  fanout_sub_serve();
  for (long i = 0; i < k; i++)
    mim_topic_unsubscribe(subs_v[i]);
  for (long i = 0; i < nclients; i++)
    mim_client_free(clients[i]);
  free(subs_v);
  free(clients);
  fanout_sub_free(&st);
  return 0;
}

typedef struct fanout_pub {
  mim_client *c;
  char topic[64];
} fanout_pub;

static int fanout_publish(void *user, long seq, const char *payload) {
  (void)seq;
  fanout_pub *p = user;
  mim_status st = mim_topic_publish_text(p->c, cfg.cache, p->topic, payload);
  if (st != MIM_OK)
    fprintf(stderr, "bench_mim: fan-out publish: %s\n", mim_status_name(st));
  return st == MIM_OK ? 0 : -1;
}

/* Latency (mim_send -> on_message) in one of `chats` joined chats, and RSS per session. */
static void bench_scale(long chats, const char *payload) {
  mim_client *rx = make_client(), *tx = make_client();
  mim_session **ss = calloc((size_t)chats + 10, sizeof(*ss));
  counter idle, rcnt, scnt;
  counter_init(&idle);
  counter_init(&rcnt);
  counter_init(&scnt);
  char chat[64];
  for (int i = 0; i < 10; i++) { /* warm-up, as in bench_memory */
    snprintf(chat, sizeof(chat), "scale%ld-w%d", chats, i);
    ss[chats + i] = join(rx, chat, on_message, &idle);
  }
  long c0 = bench_rss_bytes(0);
  for (long i = 0; i < chats; i++) {
    snprintf(chat, sizeof(chat), "scale%ld-%ld", chats, i);
    ss[i] = join(rx, chat, on_message, i == 0 ? &rcnt : &idle);
  }
  long c1 = bench_rss_bytes(0);
  snprintf(chat, sizeof(chat), "scale%ld-0", chats);
  mim_session *tx_s = join(tx, chat, on_message, &scnt);
  bench_samples lat;
  bench_samples_init(&lat, (size_t)cfg.count);
  for (long i = 0; i < cfg.warmup + cfg.count; i++) {
    pthread_mutex_lock(&rcnt.mu);
    long before = rcnt.n;
    pthread_mutex_unlock(&rcnt.mu);
    int64_t t0 = bench_now_ns();
    mim_status st = mim_send(tx_s, payload, NULL);
    if (st != MIM_OK)
      die("mim_send", st);
    if (counter_wait(&rcnt, before + 1, WAIT_MS) <= before)
      die("no on_message", MIM_OK);
    pthread_mutex_lock(&rcnt.mu);
    int64_t t1 = rcnt.last_ns;
    pthread_mutex_unlock(&rcnt.mu);
    if (i >= cfg.warmup)
      bench_samples_add(&lat, t1 - t0);
  }
  printf("{\"system\":\"%s\",\"kind\":\"scale\",\"chats\":%ld,", cfg.system, chats);
  bench_json_stats(stdout, "latency", &lat);
  printf(",\"rss_client\":%ld,\"rss_client_per_session\":%.0f}\n", c1,
         (double)(c1 - c0) / (double)chats);
  fflush(stdout);
  mim_leave(tx_s);
  for (long i = 0; i < chats + 10; i++)
    mim_leave(ss[i]);
  free(ss);
  free(lat.v);
  mim_client_free(tx);
  mim_client_free(rx);
}

int main(int argc, char **argv) {
  cfg.endpoint = bench_arg_str(argc, argv, "--endpoint", NULL);
  const char *key_file = bench_arg_str(argc, argv, "--key-file", NULL);
  cfg.cache = bench_arg_str(argc, argv, "--cache", "bench");
  cfg.samples_dir = bench_arg_str(argc, argv, "--samples-dir", NULL);
  cfg.count = bench_arg(argc, argv, "--count", 2000);
  cfg.warmup = bench_arg(argc, argv, "--warmup", 200);
  cfg.tput = bench_arg(argc, argv, "--tput", 20000);
  cfg.window = bench_arg(argc, argv, "--window", 256);
  cfg.joins = bench_arg(argc, argv, "--joins", 200);
  cfg.sessions = bench_arg(argc, argv, "--sessions", 1000);
  cfg.server_pid = bench_arg(argc, argv, "--server-pid", 0);
  cfg.payload = bench_arg(argc, argv, "--payload", 100);
  cfg.system = bench_arg_str(argc, argv, "--system", "libmomento-im");
  cfg.tag = bench_arg_str(argc, argv, "--tag", "");
  if (!cfg.endpoint || !key_file) {
    fprintf(stderr, "usage: bench_mim --endpoint HOST:PORT --key-file FILE [--count N ...]\n");
    return 2;
  }
  static char key[4096];
  FILE *kf = fopen(key_file, "r");
  if (!kf || !fgets(key, sizeof(key), kf)) {
    perror(key_file);
    return 2;
  }
  fclose(kf);
  key[strcspn(key, "\r\n")] = '\0';
  cfg.key = key;

  char *payload = malloc((size_t)cfg.payload + 1);
  bench_payload(payload, (size_t)cfg.payload);
  /* --only PHASE runs one phase (for perf); the others report n 0. fanout and scale run
   * only when asked for and print their own line. */
  const char *only = bench_arg_str(argc, argv, "--only", NULL);
  long fanout_k = bench_arg(argc, argv, "--fanout-sub", 0);
  if (fanout_k > 0)
    return fanout_child(fanout_k, bench_arg(argc, argv, "--subs", 100));
  if (only && strcmp(only, "fanout") == 0) {
    fanout_pub pub = {.c = make_client()};
    fanout_topic(pub.topic, sizeof(pub.topic), bench_arg(argc, argv, "--subs", 100));
    int rc = fanout_main(argc, argv, cfg.system, fanout_publish, &pub, (size_t)cfg.payload);
    mim_client_free(pub.c);
    free(payload);
    return rc;
  }
  if (only && strcmp(only, "scale") == 0) {
    bench_scale(bench_arg(argc, argv, "--chats", 1), payload);
    free(payload);
    return 0;
  }
  mim_client *tx = make_client(), *rx = make_client();

  bench_samples lat, send_lat, joins, ping;
  bench_samples_init(&lat, (size_t)cfg.count);
  bench_samples_init(&send_lat, (size_t)cfg.count);
  bench_samples_init(&joins, (size_t)cfg.joins);
  bench_samples_init(&ping, (size_t)cfg.count);
  double sends = 0, recvs = 0, mem_c = 0, mem_s = 0;
  double cpu_call = -1, cpu_pub = -1, srv_msg = -1, srv_pub = -1;
  long received = 0, failed = 0;

#define PHASE(name) (!only || strcmp(only, name) == 0)
  if (PHASE("ping"))
    bench_ping(tx, &ping, &cpu_call);
  if (PHASE("latency"))
    bench_topic_latency(tx, rx, payload, &lat);
  if (PHASE("send"))
    bench_send_latency(tx, rx, payload, &send_lat);
  if (PHASE("tput"))
    bench_throughput(tx, rx, payload, &sends, &recvs, &received, &failed, &srv_msg);
  if (PHASE("pubcpu"))
    bench_publish_cpu(tx, payload, &cpu_pub, &srv_pub);
  if (PHASE("join"))
    bench_join(tx, rx, payload, &joins);
  if (PHASE("memory"))
    bench_memory(&mem_c, &mem_s);
#undef PHASE

  save_samples("libmomento-im", &lat);
  save_samples("libmomento-im-send", &send_lat);
  save_samples("grpc-ping", &ping);
  printf("{\"system\":\"%s\",", cfg.system);
  bench_json_stats(stdout, "latency", &lat);
  printf(",");
  bench_json_stats(stdout, "latency_send", &send_lat);
  printf(",");
  bench_json_stats(stdout, "join", &joins);
  printf(",");
  bench_json_stats(stdout, "ping", &ping);
  printf(",\"cpu_per_call_us\":%.1f,\"cpu_per_publish_us\":%.1f,\"server_cpu_per_msg_us\":%.1f,"
         "\"server_cpu_per_publish_us\":%.1f",
         cpu_call, cpu_pub, srv_msg, srv_pub);
  printf(",\"sends_per_s\":%.0f,\"recv_per_s\":%.0f,\"tput_messages\":%ld,\"received\":%ld,"
         "\"publish_failed\":%ld,\"window\":%ld,\"sessions\":%ld,"
         "\"rss_client_per_session\":%.0f,\"rss_server_per_sub\":%.0f}\n",
         sends, recvs, cfg.tput, received, failed, cfg.window, cfg.sessions, mem_c, mem_s);
  if (!*cfg.tag) { /* the one-transport layout of earlier runs */
    printf("{\"system\":\"raw gRPC ping\",");
    bench_json_stats(stdout, "latency", &ping);
    printf("}\n");
  }
  fflush(stdout);
  mim_client_free(tx);
  mim_client_free(rx);
  free(payload);
  free(lat.v);
  free(send_lat.v);
  free(joins.v);
  free(ping.v);
  return 0;
}
