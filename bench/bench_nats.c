/* Bench of NATS core pub/sub with nats.c against a running nats-server on loopback:
 * publish -> subscriber callback latency (one in flight, SendAsap so nothing waits in the
 * client's buffer), buffered publish throughput, memory per idle subscription. NATS core
 * keeps no history, so there is no join figure. Output like bench_mim.
 * --only fanout / --only scale: the fan-out and chat-count figures, as in bench_mim.c
 * (a fan-out subscriber process holds one connection per FANOUT_SUBS_PER_CONN
 * subscriptions, with nats.c's global delivery pool instead of a thread per
 * subscription; scale: N subscriptions on one connection, on distinct subjects). */
#include <stdbool.h>

#include "bench_common.h"
#include <nats/nats.h>

#define WAIT_MS 10000
#define FANOUT_SUBS_PER_CONN 100

static struct {
  const char *url, *samples_dir;
  long count, warmup, tput, sessions, server_pid, payload;
} cfg;

static void check(natsStatus s, const char *what) {
  if (s != NATS_OK) {
    fprintf(stderr, "bench_nats: %s: %s\n", what, natsStatus_GetText(s));
    exit(1);
  }
}

static natsConnection *connect_nats_opts(bool send_asap, bool global_delivery) {
  natsOptions *o = NULL;
  natsConnection *nc = NULL;
  check(natsOptions_Create(&o), "options");
  check(natsOptions_UseGlobalMessageDelivery(o, global_delivery), "global delivery");
  check(natsOptions_SetURL(o, cfg.url), "url");
  check(natsOptions_SetSendAsap(o, send_asap), "sendasap");
  /* the throughput run may queue all messages before the callback drains them */
  check(natsOptions_SetMaxPendingMsgs(o, (int)(cfg.tput + 1024)), "maxpending");
  check(natsConnection_Connect(&nc, o), "connect");
  natsOptions_Destroy(o);
  return nc;
}

static natsConnection *connect_nats(bool send_asap) {
  return connect_nats_opts(send_asap, false);
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *user) {
  (void)nc;
  (void)sub;
  natsMsg_Destroy(msg);
  counter_bump(user);
}

static void on_idle(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *user) {
  (void)nc;
  (void)sub;
  (void)user;
  natsMsg_Destroy(msg);
}

static void bench_latency(const char *payload, bench_samples *out) {
  counter cnt;
  counter_init(&cnt);
  natsConnection *rx = connect_nats(true), *tx = connect_nats(true);
  natsSubscription *sub = NULL;
  check(natsConnection_Subscribe(&sub, rx, "lat", on_msg, &cnt), "subscribe");
  check(natsConnection_Flush(rx), "flush"); /* the server has the interest now */
  for (long i = 0; i < cfg.warmup + cfg.count; i++) {
    int64_t t0 = bench_now_ns();
    check(natsConnection_Publish(tx, "lat", payload, (int)cfg.payload), "publish");
    if (counter_wait(&cnt, i + 1, WAIT_MS) <= i) {
      fprintf(stderr, "bench_nats: message lost\n");
      exit(1);
    }
    pthread_mutex_lock(&cnt.mu);
    int64_t t1 = cnt.last_ns;
    pthread_mutex_unlock(&cnt.mu);
    if (i >= cfg.warmup)
      bench_samples_add(out, t1 - t0);
  }
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(tx);
  natsConnection_Destroy(rx);
}

/* Buffered publishes (NATS core publish has no reply: "in flight" is unbounded), then a
 * flush (PING/PONG) so the server has them all. */
static void bench_throughput(const char *payload, double *sends, double *recvs, long *received) {
  counter cnt;
  counter_init(&cnt);
  natsConnection *rx = connect_nats(false), *tx = connect_nats(false);
  natsSubscription *sub = NULL;
  check(natsConnection_Subscribe(&sub, rx, "tput", on_msg, &cnt), "subscribe");
  check(natsSubscription_SetPendingLimits(sub, (int)(cfg.tput + 1024), -1), "limits");
  check(natsConnection_Flush(rx), "flush");
  int64_t t0 = bench_now_ns();
  for (long i = 0; i < cfg.tput; i++)
    check(natsConnection_Publish(tx, "tput", payload, (int)cfg.payload), "publish");
  check(natsConnection_Flush(tx), "flush");
  int64_t t_sent = bench_now_ns();
  *received = counter_wait(&cnt, cfg.tput, WAIT_MS);
  pthread_mutex_lock(&cnt.mu);
  int64_t t_recv = cnt.last_ns;
  pthread_mutex_unlock(&cnt.mu);
  *sends = (double)cfg.tput / ((double)(t_sent - t0) / 1e9);
  *recvs = (double)*received / ((double)(t_recv - t0) / 1e9);
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(tx);
  natsConnection_Destroy(rx);
}

static void bench_memory(double *client_per, double *server_per) {
  natsConnection *nc = connect_nats(false);
  natsSubscription **subs = calloc((size_t)cfg.sessions, sizeof(*subs));
  char subj[64];
  long c0 = bench_rss_bytes(0), s0 = bench_rss_bytes((pid_t)cfg.server_pid);
  for (long i = 0; i < cfg.sessions; i++) {
    snprintf(subj, sizeof(subj), "idle.%ld", i);
    check(natsConnection_Subscribe(&subs[i], nc, subj, on_idle, NULL), "subscribe");
  }
  check(natsConnection_Flush(nc), "flush");
  long c1 = bench_rss_bytes(0), s1 = bench_rss_bytes((pid_t)cfg.server_pid);
  *client_per = (double)(c1 - c0) / (double)cfg.sessions;
  *server_per = cfg.server_pid > 0 ? (double)(s1 - s0) / (double)cfg.sessions : -1;
  for (long i = 0; i < cfg.sessions; i++)
    natsSubscription_Destroy(subs[i]);
  free(subs);
  natsConnection_Destroy(nc);
}

static void on_fanout_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *user) {
  (void)nc;
  (void)sub;
  fanout_sub_arrived(user, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
  natsMsg_Destroy(msg);
}

static int fanout_child(long k, long subs) {
  char subj[64];
  snprintf(subj, sizeof(subj), "fanout.%ld", subs);
  fanout_sub st;
  fanout_sub_init(&st, k);
  long nconns = (k + FANOUT_SUBS_PER_CONN - 1) / FANOUT_SUBS_PER_CONN;
  natsConnection **conns = calloc((size_t)nconns, sizeof(*conns));
  natsSubscription **sv = calloc((size_t)k, sizeof(*sv));
  for (long i = 0; i < nconns; i++)
    conns[i] = connect_nats_opts(true, true);
  for (long i = 0; i < k; i++)
    check(natsConnection_Subscribe(&sv[i], conns[i % nconns], subj, on_fanout_msg, &st),
          "subscribe");
  for (long i = 0; i < nconns; i++)
    check(natsConnection_Flush(conns[i]), "flush"); /* the server has the interest now */
  fanout_sub_serve();
  for (long i = 0; i < k; i++)
    natsSubscription_Destroy(sv[i]);
  for (long i = 0; i < nconns; i++)
    natsConnection_Destroy(conns[i]);
  free(sv);
  free(conns);
  fanout_sub_free(&st);
  return 0;
}

typedef struct fanout_pub {
  natsConnection *nc;
  char subj[64];
} fanout_pub;

static int fanout_publish(void *user, long seq, const char *payload) {
  (void)seq;
  fanout_pub *p = user;
  return natsConnection_PublishString(p->nc, p->subj, payload) == NATS_OK ? 0 : -1;
}

/* Publish -> callback latency on one of `chats` subscriptions of one connection. */
static void bench_scale(long chats, const char *payload) {
  counter cnt;
  counter_init(&cnt);
  natsConnection *rx = connect_nats(true), *tx = connect_nats(true);
  natsSubscription **subs = calloc((size_t)chats + 10, sizeof(*subs));
  char subj[64];
  for (long i = 0; i < 10; i++) { /* warm-up, as in bench_memory */
    snprintf(subj, sizeof(subj), "scale.%ld.w%ld", chats, i);
    check(natsConnection_Subscribe(&subs[chats + i], rx, subj, on_idle, NULL), "subscribe");
  }
  check(natsConnection_Flush(rx), "flush");
  long c0 = bench_rss_bytes(0);
  for (long i = 0; i < chats; i++) {
    snprintf(subj, sizeof(subj), "scale.%ld.%ld", chats, i);
    check(natsConnection_Subscribe(&subs[i], rx, subj, i == 0 ? on_msg : on_idle,
                                   i == 0 ? &cnt : NULL),
          "subscribe");
  }
  check(natsConnection_Flush(rx), "flush");
  long c1 = bench_rss_bytes(0);
  snprintf(subj, sizeof(subj), "scale.%ld.0", chats);
  bench_samples lat;
  bench_samples_init(&lat, (size_t)cfg.count);
  for (long i = 0; i < cfg.warmup + cfg.count; i++) {
    int64_t t0 = bench_now_ns();
    check(natsConnection_Publish(tx, subj, payload, (int)cfg.payload), "publish");
    if (counter_wait(&cnt, i + 1, WAIT_MS) <= i) {
      fprintf(stderr, "bench_nats: message lost\n");
      exit(1);
    }
    pthread_mutex_lock(&cnt.mu);
    int64_t t1 = cnt.last_ns;
    pthread_mutex_unlock(&cnt.mu);
    if (i >= cfg.warmup)
      bench_samples_add(&lat, t1 - t0);
  }
  printf("{\"system\":\"NATS (nats.c)\",\"kind\":\"scale\",\"chats\":%ld,", chats);
  bench_json_stats(stdout, "latency", &lat);
  printf(",\"rss_client\":%ld,\"rss_client_per_session\":%.0f}\n", c1,
         (double)(c1 - c0) / (double)chats);
  fflush(stdout);
  for (long i = 0; i < chats + 10; i++)
    natsSubscription_Destroy(subs[i]);
  free(subs);
  free(lat.v);
  natsConnection_Destroy(tx);
  natsConnection_Destroy(rx);
}

int main(int argc, char **argv) {
  cfg.url = bench_arg_str(argc, argv, "--url", "nats://127.0.0.1:4222");
  cfg.samples_dir = bench_arg_str(argc, argv, "--samples-dir", NULL);
  cfg.count = bench_arg(argc, argv, "--count", 2000);
  cfg.warmup = bench_arg(argc, argv, "--warmup", 200);
  cfg.tput = bench_arg(argc, argv, "--tput", 20000);
  cfg.sessions = bench_arg(argc, argv, "--sessions", 1000);
  cfg.server_pid = bench_arg(argc, argv, "--server-pid", 0);
  cfg.payload = bench_arg(argc, argv, "--payload", 100);
  char *payload = malloc((size_t)cfg.payload + 1);
  bench_payload(payload, (size_t)cfg.payload);
  const char *only = bench_arg_str(argc, argv, "--only", NULL);
  long fanout_k = bench_arg(argc, argv, "--fanout-sub", 0);
  int rc = -1;
  if (fanout_k > 0) {
    rc = fanout_child(fanout_k, bench_arg(argc, argv, "--subs", 100));
  } else if (only && strcmp(only, "fanout") == 0) {
    fanout_pub pub = {.nc = connect_nats(true)};
    snprintf(pub.subj, sizeof(pub.subj), "fanout.%ld", bench_arg(argc, argv, "--subs", 100));
    rc = fanout_main(argc, argv, "NATS (nats.c)", fanout_publish, &pub, (size_t)cfg.payload);
    natsConnection_Destroy(pub.nc);
  } else if (only && strcmp(only, "scale") == 0) {
    bench_scale(bench_arg(argc, argv, "--chats", 1), payload);
    rc = 0;
  }
  if (rc >= 0) {
    free(payload);
    nats_Close();
    return rc;
  }

  bench_samples lat;
  bench_samples_init(&lat, (size_t)cfg.count);
  double sends = 0, recvs = 0, mem_c = 0, mem_s = 0;
  long received = 0;
  bench_latency(payload, &lat);
  bench_throughput(payload, &sends, &recvs, &received);
  bench_memory(&mem_c, &mem_s);

  if (cfg.samples_dir) {
    char path[512];
    snprintf(path, sizeof(path), "%s/nats.txt", cfg.samples_dir);
    bench_write_samples(path, &lat);
  }
  printf("{\"system\":\"NATS (nats.c)\",");
  bench_json_stats(stdout, "latency", &lat);
  printf(",\"sends_per_s\":%.0f,\"recv_per_s\":%.0f,\"tput_messages\":%ld,\"received\":%ld,"
         "\"sessions\":%ld,\"rss_client_per_session\":%.0f,\"rss_server_per_sub\":%.0f}\n",
         sends, recvs, cfg.tput, received, cfg.sessions, mem_c, mem_s);
  free(payload);
  nats_Close();
  return 0;
}
