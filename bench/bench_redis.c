/* Bench of Redis pub/sub + lists with hiredis against a running redis-server on loopback:
 * PUBLISH -> subscriber latency (one in flight), pipelined PUBLISH throughput with a
 * window, join = SUBSCRIBE + LRANGE 0 -1 of 100, memory per idle subscription.
 * Output like bench_mim: one JSON object on stdout, samples in --samples-dir.
 * --only fanout / --only scale: the fan-out and chat-count figures, as in bench_mim.c.
 * A Redis connection subscribed twice to one channel gets a message once, so a fan-out
 * subscriber is a connection here (a subscriber process polls its K connections); scale:
 * N channels subscribed on one connection. */
#include <stdarg.h>
#include <stdbool.h>

#include "bench_common.h"
#include <hiredis.h>

#define WAIT_MS 10000

static struct {
  int port;
  const char *samples_dir;
  long count, warmup, tput, window, joins, sessions, server_pid, payload;
} cfg;

static redisContext *connect_redis(void) {
  redisContext *c = redisConnect("127.0.0.1", cfg.port);
  if (!c || c->err) {
    fprintf(stderr, "bench_redis: connect: %s\n", c ? c->errstr : "out of memory");
    exit(1);
  }
  return c;
}

static void command(redisContext *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(c, fmt, ap);
  va_end(ap);
  if (!r || r->type == REDIS_REPLY_ERROR) {
    fprintf(stderr, "bench_redis: %s: %s\n", fmt, r ? r->str : c->errstr);
    exit(1);
  }
  freeReplyObject(r);
}

/* Receiver thread: reads `want` published messages from a subscribed connection. */
typedef struct receiver {
  redisContext *sub;
  counter cnt;
  long want;
  pthread_t th;
} receiver;

static void *receive_loop(void *arg) {
  receiver *rv = arg;
  for (long i = 0; i < rv->want; i++) {
    redisReply *r = NULL;
    if (redisGetReply(rv->sub, (void **)&r) != REDIS_OK)
      break;
    freeReplyObject(r);
    counter_bump(&rv->cnt);
  }
  return NULL;
}

static void receiver_start(receiver *rv, const char *channel, long want) {
  rv->sub = connect_redis();
  command(rv->sub, "SUBSCRIBE %s", channel);
  counter_init(&rv->cnt);
  rv->want = want;
  pthread_create(&rv->th, NULL, receive_loop, rv);
}

static void receiver_join(receiver *rv) {
  pthread_join(rv->th, NULL);
  redisFree(rv->sub);
}

static void bench_latency(const char *payload, bench_samples *out) {
  receiver rv;
  long total = cfg.warmup + cfg.count;
  receiver_start(&rv, "lat", total);
  redisContext *pub = connect_redis();
  for (long i = 0; i < total; i++) {
    int64_t t0 = bench_now_ns();
    command(pub, "PUBLISH lat %b", payload, (size_t)cfg.payload);
    if (counter_wait(&rv.cnt, i + 1, WAIT_MS) <= i) {
      fprintf(stderr, "bench_redis: message lost\n");
      exit(1);
    }
    pthread_mutex_lock(&rv.cnt.mu);
    int64_t t1 = rv.cnt.last_ns;
    pthread_mutex_unlock(&rv.cnt.mu);
    if (i >= cfg.warmup)
      bench_samples_add(out, t1 - t0);
  }
  receiver_join(&rv);
  redisFree(pub);
}

/* Pipelined PUBLISH with at most cfg.window replies outstanding. */
static void bench_throughput(const char *payload, double *sends, double *recvs, long *received) {
  receiver rv;
  receiver_start(&rv, "tput", cfg.tput);
  redisContext *pub = connect_redis();
  long outstanding = 0;
  int64_t t0 = bench_now_ns();
  for (long i = 0; i < cfg.tput; i++) {
    redisAppendCommand(pub, "PUBLISH tput %b", payload, (size_t)cfg.payload);
    if (++outstanding >= cfg.window) {
      redisReply *r = NULL;
      if (redisGetReply(pub, (void **)&r) != REDIS_OK)
        exit(1);
      freeReplyObject(r);
      outstanding--;
    }
  }
  while (outstanding-- > 0) {
    redisReply *r = NULL;
    if (redisGetReply(pub, (void **)&r) != REDIS_OK)
      exit(1);
    freeReplyObject(r);
  }
  int64_t t_sent = bench_now_ns();
  *received = counter_wait(&rv.cnt, cfg.tput, WAIT_MS);
  pthread_mutex_lock(&rv.cnt.mu);
  int64_t t_recv = rv.cnt.last_ns;
  pthread_mutex_unlock(&rv.cnt.mu);
  *sends = (double)cfg.tput / ((double)(t_sent - t0) / 1e9);
  *recvs = (double)*received / ((double)(t_recv - t0) / 1e9);
  if (*received < cfg.tput) {
    /* unblock the receiver: it waits for messages that will not come */
    redisContext *c = connect_redis();
    for (long i = *received; i < cfg.tput; i++)
      command(c, "PUBLISH tput x");
    redisFree(c);
  }
  receiver_join(&rv);
  redisFree(pub);
}

/* Join = SUBSCRIBE (confirmed) + LRANGE 0 -1 of a 100-element list, on connections that
 * are already open (as mim_join uses an existing client). */
static void bench_join(const char *payload, bench_samples *out) {
  redisContext *c = connect_redis(), *sub = connect_redis();
  command(c, "DEL joinlist");
  for (int i = 0; i < 100; i++)
    command(c, "RPUSH joinlist %b", payload, (size_t)cfg.payload);
  for (long i = 0; i < cfg.warmup / 10 + cfg.joins; i++) {
    int64_t t0 = bench_now_ns();
    command(sub, "SUBSCRIBE joinch");
    redisReply *r = redisCommand(c, "LRANGE joinlist 0 -1");
    int64_t t1 = bench_now_ns();
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 100) {
      fprintf(stderr, "bench_redis: LRANGE did not return 100\n");
      exit(1);
    }
    freeReplyObject(r);
    command(sub, "UNSUBSCRIBE joinch");
    if (i >= cfg.warmup / 10)
      bench_samples_add(out, t1 - t0);
  }
  redisFree(c);
  redisFree(sub);
}

/* RSS growth per idle subscription (one connection, cfg.sessions channels). */
static void bench_memory(double *client_per, double *server_per) {
  redisContext *sub = connect_redis();
  long c0 = bench_rss_bytes(0), s0 = bench_rss_bytes((pid_t)cfg.server_pid);
  for (long i = 0; i < cfg.sessions; i++)
    redisAppendCommand(sub, "SUBSCRIBE idle-%ld", i);
  for (long i = 0; i < cfg.sessions; i++) {
    redisReply *r = NULL;
    if (redisGetReply(sub, (void **)&r) != REDIS_OK)
      exit(1);
    freeReplyObject(r);
  }
  long c1 = bench_rss_bytes(0), s1 = bench_rss_bytes((pid_t)cfg.server_pid);
  *client_per = (double)(c1 - c0) / (double)cfg.sessions;
  *server_per = cfg.server_pid > 0 ? (double)(s1 - s0) / (double)cfg.sessions : -1;
  redisFree(sub);
}

/* Reads what is buffered on c: every complete pub/sub message counts as an arrival. */
static int fanout_drain(redisContext *c, fanout_sub *st) {
  if (redisBufferRead(c) != REDIS_OK)
    return -1;
  for (;;) {
    redisReply *r = NULL;
    if (redisGetReplyFromReader(c, (void **)&r) != REDIS_OK)
      return -1;
    if (!r)
      return 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[2]->type == REDIS_REPLY_STRING)
      fanout_sub_arrived(st, r->element[2]->str, r->element[2]->len);
    freeReplyObject(r);
  }
}

static int fanout_child(long k, long subs) {
  fanout_sub st;
  fanout_sub_init(&st, k);
  redisContext **cs = calloc((size_t)k, sizeof(*cs));
  struct pollfd *pf = calloc((size_t)k + 1, sizeof(*pf));
  for (long i = 0; i < k; i++) {
    cs[i] = connect_redis();
    command(cs[i], "SUBSCRIBE fanout-%ld", subs); /* returns once confirmed */
    pf[i] = (struct pollfd){.fd = cs[i]->fd, .events = POLLIN};
  }
  pf[k] = (struct pollfd){.fd = 0, .events = POLLIN};
  fanout_write_line("ready\n");
  bool quit = false;
  while (!quit) {
    if (poll(pf, (nfds_t)k + 1, -1) < 0 && errno != EINTR)
      break;
    for (long i = 0; i < k; i++)
      if (pf[i].revents && fanout_drain(cs[i], &st) != 0)
        quit = true;
    char buf[64];
    if (pf[k].revents && read(0, buf, sizeof(buf)) <= 0)
      quit = true; /* the coordinator closed our stdin */
  }
  for (long i = 0; i < k; i++)
    redisFree(cs[i]);
  free(cs);
  free(pf);
  fanout_sub_free(&st);
  return 0;
}

typedef struct fanout_pub {
  redisContext *c;
  char channel[64];
} fanout_pub;

static int fanout_publish(void *user, long seq, const char *payload) {
  (void)seq;
  fanout_pub *p = user;
  redisReply *r = redisCommand(p->c, "PUBLISH %s %s", p->channel, payload);
  int ok = r && r->type == REDIS_REPLY_INTEGER;
  freeReplyObject(r);
  return ok ? 0 : -1;
}

/* PUBLISH -> receiver latency on one of `chats` channels subscribed on one connection. */
static void bench_scale(long chats, const char *payload) {
  receiver rv;
  long total = cfg.warmup + cfg.count;
  rv.sub = connect_redis();
  command(rv.sub, "SUBSCRIBE scale-%ld-w", chats); /* warm-up */
  long c0 = bench_rss_bytes(0);
  for (long i = 0; i < chats; i++)
    redisAppendCommand(rv.sub, "SUBSCRIBE scale-%ld-%ld", chats, i);
  for (long i = 0; i < chats; i++) {
    redisReply *r = NULL;
    if (redisGetReply(rv.sub, (void **)&r) != REDIS_OK)
      exit(1);
    freeReplyObject(r);
  }
  long c1 = bench_rss_bytes(0);
  counter_init(&rv.cnt);
  rv.want = total;
  pthread_create(&rv.th, NULL, receive_loop, &rv);
  redisContext *pub = connect_redis();
  bench_samples lat;
  bench_samples_init(&lat, (size_t)cfg.count);
  for (long i = 0; i < total; i++) {
    int64_t t0 = bench_now_ns();
    command(pub, "PUBLISH scale-%ld-0 %b", chats, payload, (size_t)cfg.payload);
    if (counter_wait(&rv.cnt, i + 1, WAIT_MS) <= i) {
      fprintf(stderr, "bench_redis: message lost\n");
      exit(1);
    }
    pthread_mutex_lock(&rv.cnt.mu);
    int64_t t1 = rv.cnt.last_ns;
    pthread_mutex_unlock(&rv.cnt.mu);
    if (i >= cfg.warmup)
      bench_samples_add(&lat, t1 - t0);
  }
  receiver_join(&rv);
  redisFree(pub);
  printf("{\"system\":\"Redis (hiredis)\",\"kind\":\"scale\",\"chats\":%ld,", chats);
  bench_json_stats(stdout, "latency", &lat);
  printf(",\"rss_client\":%ld,\"rss_client_per_session\":%.0f}\n", c1,
         (double)(c1 - c0) / (double)chats);
  fflush(stdout);
  free(lat.v);
}

int main(int argc, char **argv) {
  cfg.port = (int)bench_arg(argc, argv, "--port", 6379);
  cfg.samples_dir = bench_arg_str(argc, argv, "--samples-dir", NULL);
  cfg.count = bench_arg(argc, argv, "--count", 2000);
  cfg.warmup = bench_arg(argc, argv, "--warmup", 200);
  cfg.tput = bench_arg(argc, argv, "--tput", 20000);
  cfg.window = bench_arg(argc, argv, "--window", 256);
  cfg.joins = bench_arg(argc, argv, "--joins", 200);
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
    fanout_pub pub = {.c = connect_redis()};
    snprintf(pub.channel, sizeof(pub.channel), "fanout-%ld", bench_arg(argc, argv, "--subs", 100));
    rc = fanout_main(argc, argv, "Redis (hiredis)", fanout_publish, &pub, (size_t)cfg.payload);
    redisFree(pub.c);
  } else if (only && strcmp(only, "scale") == 0) {
    bench_scale(bench_arg(argc, argv, "--chats", 1), payload);
    rc = 0;
  }
  if (rc >= 0) {
    free(payload);
    return rc;
  }

  bench_samples lat, joins;
  bench_samples_init(&lat, (size_t)cfg.count);
  bench_samples_init(&joins, (size_t)cfg.joins);
  double sends = 0, recvs = 0, mem_c = 0, mem_s = 0;
  long received = 0;
  bench_latency(payload, &lat);
  bench_throughput(payload, &sends, &recvs, &received);
  bench_join(payload, &joins);
  bench_memory(&mem_c, &mem_s);

  if (cfg.samples_dir) {
    char path[512];
    snprintf(path, sizeof(path), "%s/redis.txt", cfg.samples_dir);
    bench_write_samples(path, &lat);
  }
  printf("{\"system\":\"Redis (hiredis)\",");
  bench_json_stats(stdout, "latency", &lat);
  printf(",");
  bench_json_stats(stdout, "join", &joins);
  printf(",\"sends_per_s\":%.0f,\"recv_per_s\":%.0f,\"tput_messages\":%ld,\"received\":%ld,"
         "\"window\":%ld,\"sessions\":%ld,\"rss_client_per_session\":%.0f,"
         "\"rss_server_per_sub\":%.0f}\n",
         sends, recvs, cfg.tput, received, cfg.window, cfg.sessions, mem_c, mem_s);
  free(payload);
  return 0;
}
