/* A session's typing and presence: see presence.h. */
#include "presence.h"

#include "chat_signal.h"
#include "client_internal.h"
#include "clock.h"
#include "envelope.h"
#include "error.h"
#include "roster.h"
#include "transport.h"

#include <momento/topics.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A presence signal says: expire me after this many heartbeats (PROTOCOL: 75 s for 30 s). */
#define TTL_PER_HEARTBEAT_X2 5 /* 2.5 x, in halves */
/* Early "here" at most once per this, or per a quarter heartbeat when shorter. */
#define EARLY_HERE_GAP_MS 5000

struct mim_presence {
  mim_client *client;
  char *cache, *topic, *from, *uid;
  char sid[17];
  bool enabled;
  int64_t heartbeat_ms, ttl_ms, early_gap_ms;
  void (*emit)(void *, mim_presence_change, const mim_member *);
  void *user;

  /* The table and the callbacks it makes (recursive: on_presence may call mim_members). */
  pthread_mutex_t table_mu;
  mim_roster roster;

  /* Lifecycle and what this session sent. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool started;           /* mim_presence_start ran: the join is done, signals count */
  bool stopping;          /* mim_presence_stop began: nothing new is sent or armed */
  bool timers_stopped;    /* the stop ran on the event thread: no timer is pending */
  bool announced;         /* a "here" was sent: "left" follows at the stop */
  int inflight;           /* publishes whose completion has not run */
  mim_timer *beat_timer;  /* heartbeat (also the first "here") */
  mim_timer *lapse_timer; /* the table's next expiry */
  mim_timer *early_timer; /* a deferred early "here" */
  int64_t lapse_at;
  int64_t last_here_ms; /* monotonic; INT64_MIN = never */
  int64_t last_on_ms;   /* typing "on" last sent; INT64_MIN = never */
  bool off_owed;        /* an "on" was sent and no "off" since */
  uint64_t rng;         /* heartbeat jitter */
};

static int64_t heartbeat_of(uint32_t ms) {
  return ms ? ms : MIM_PRESENCE_HEARTBEAT_MS;
}

static uint64_t seed_from(const char *hex) {
  uint64_t x = 0x9e3779b97f4a7c15u;
  for (const char *c = hex; *c; c++)
    x = (x ^ (uint8_t)*c) * 0x100000001b3u;
  return x | 1;
}

mim_status mim_presence_new(const mim_presence_config *cfg, mim_presence **out) {
  *out = NULL;
  mim_presence *p = calloc(1, sizeof *p);
  if (!p)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  char id[MIM_ENVELOPE_ID_SIZE];
  mim_status st = mim_envelope_new_id(id);
  if (st != MIM_OK) {
    free(p);
    return st;
  }
  memcpy(p->sid, id, 16); /* 16 hex digits: 64 random bits */
  p->rng = seed_from(id);
  p->client = cfg->client;
  p->enabled = cfg->enabled;
  p->heartbeat_ms = heartbeat_of(cfg->heartbeat_ms);
  p->ttl_ms = p->heartbeat_ms * TTL_PER_HEARTBEAT_X2 / 2;
  p->ttl_ms = p->ttl_ms > MIM_SIGNAL_TTL_MAX ? MIM_SIGNAL_TTL_MAX : p->ttl_ms;
  p->early_gap_ms =
      p->heartbeat_ms / 4 < EARLY_HERE_GAP_MS ? p->heartbeat_ms / 4 : EARLY_HERE_GAP_MS;
  p->emit = cfg->emit;
  p->user = cfg->user;
  p->last_here_ms = INT64_MIN;
  p->last_on_ms = INT64_MIN;
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&p->table_mu, &attr);
  pthread_mutexattr_destroy(&attr);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  mim_roster_init(&p->roster, cfg->moderated, cfg->emit, cfg->user);
  p->cache = strdup(cfg->cache);
  p->topic = strdup(cfg->topic);
  p->from = strdup(cfg->from);
  p->uid = strdup(cfg->uid);
  if (!p->cache || !p->topic || !p->from || !p->uid) {
    mim_presence_free(p);
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  }
  *out = p;
  return MIM_OK;
}

void mim_presence_free(mim_presence *p) {
  if (!p)
    return;
  mim_roster_free(&p->roster);
  pthread_mutex_destroy(&p->table_mu);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->cache);
  free(p->topic);
  free(p->from);
  free(p->uid);
  free(p);
}

/* ---- publishing ---- */

static void on_published(void *user, mim_status status, const char *detail) {
  mim_presence *p = user;
  if (status != MIM_OK) /* fire and forget: the next heartbeat or keystroke makes up for it */
    mim_log(MIM_LOG_DEBUG, "presence: a signal on %s was not published: %s %s", p->topic,
            mim_status_name(status), detail);
  pthread_mutex_lock(&p->mu);
  p->inflight--;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Publishes a signal of ours. Called with mu held, which it releases around the publish
 * (its completion takes mu, and may run before the call returns): the caller must not
 * rely on what it read under mu before. Counted in `inflight` first, so a stop waits. */
static mim_status publish_locked(mim_presence *p, mim_signal *sig) {
  sig->from = p->from;
  sig->uid = p->uid;
  sig->sid = p->sid;
  sig->ts = cmn_wall_ms();
  char *json = NULL;
  size_t len = 0;
  mim_status st = mim_signal_build(sig, &json, &len);
  if (st != MIM_OK)
    return st;
  p->inflight++;
  pthread_mutex_unlock(&p->mu);
  st = mim_topic_publish_text_async(p->client, p->cache, p->topic, json, on_published, p);
  if (st != MIM_OK)
    mim_log(MIM_LOG_DEBUG, "presence: a signal on %s was not sent: %s", p->topic,
            mim_last_error_detail());
  free(json);
  pthread_mutex_lock(&p->mu);
  if (st != MIM_OK) {
    p->inflight--;
    pthread_cond_broadcast(&p->cv);
  }
  return st;
}

static void send_presence_locked(mim_presence *p, bool here) {
  mim_signal sig = {.kind = MIM_SIGNAL_PRESENCE, .here = here, .ttl_ms = here ? p->ttl_ms : 0};
  if (publish_locked(p, &sig) == MIM_OK && here) {
    p->announced = true;
    p->last_here_ms = cmn_mono_ms();
  }
}

/* ---- timers (event thread) ---- */

static void beat_fired(void *user);
static void lapse_fired(void *user);
static void early_fired(void *user);

/* The next heartbeat: the interval +-10 %, so sessions that joined together spread out. */
static int64_t next_beat_ms(mim_presence *p) {
  p->rng ^= p->rng << 13;
  p->rng ^= p->rng >> 7;
  p->rng ^= p->rng << 17;
  int64_t span = p->heartbeat_ms / 5;
  return p->heartbeat_ms - span / 2 + (span ? (int64_t)(p->rng % (uint64_t)(span + 1)) : 0);
}

/* ms from then to now; "never" (INT64_MIN) is long ago. */
static int64_t since(int64_t now, int64_t then) {
  return then == INT64_MIN ? INT64_MAX : now - then;
}

static mim_transport *transport_of(const mim_presence *p) {
  return mim_client_transport(p->client);
}

/* Heartbeat (the first one is the announcement). */
static void beat_fired(void *user) {
  mim_presence *p = user;
  pthread_mutex_lock(&p->mu);
  p->beat_timer = NULL;
  if (!p->stopping) {
    send_presence_locked(p, true);
    if (mim_transport_timer(transport_of(p), next_beat_ms(p), beat_fired, p, &p->beat_timer) !=
        MIM_OK)
      p->beat_timer = NULL;
  }
  pthread_mutex_unlock(&p->mu);
}

/* Re-arms the expiry timer for `due` (event thread, mu not held). */
static void arm_lapse(mim_presence *p, int64_t due) {
  pthread_mutex_lock(&p->mu);
  bool keep = p->lapse_timer && p->lapse_at <= due;
  if (!p->stopping && !keep && due != INT64_MAX) {
    if (p->lapse_timer)
      (void)mim_timer_cancel(p->lapse_timer); /* pending: we are on the event thread */
    int64_t delay = due - cmn_mono_ms();
    p->lapse_at = due;
    if (mim_transport_timer(transport_of(p), delay > 0 ? delay : 0, lapse_fired, p,
                            &p->lapse_timer) != MIM_OK)
      p->lapse_timer = NULL;
  }
  pthread_mutex_unlock(&p->mu);
}

static void lapse_fired(void *user) {
  mim_presence *p = user;
  pthread_mutex_lock(&p->mu);
  p->lapse_timer = NULL;
  bool stopping = p->stopping;
  pthread_mutex_unlock(&p->mu);
  if (stopping)
    return;
  pthread_mutex_lock(&p->table_mu);
  int64_t due = mim_roster_tick(&p->roster, cmn_mono_ms());
  pthread_mutex_unlock(&p->table_mu);
  arm_lapse(p, due);
}

/* The stop's event-thread half: nothing is pending after it. */
static void stop_fired(void *user) {
  mim_presence *p = user;
  pthread_mutex_lock(&p->mu);
  if (p->beat_timer)
    (void)mim_timer_cancel(p->beat_timer);
  if (p->lapse_timer)
    (void)mim_timer_cancel(p->lapse_timer);
  if (p->early_timer)
    (void)mim_timer_cancel(p->early_timer);
  p->beat_timer = p->lapse_timer = p->early_timer = NULL;
  if (p->announced)
    send_presence_locked(p, false);
  p->timers_stopped = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

void mim_presence_start(mim_presence *p) {
  if (!p->enabled)
    return;
  pthread_mutex_lock(&p->mu);
  p->started = true;
  if (!p->stopping && !p->beat_timer &&
      mim_transport_timer(transport_of(p), 0, beat_fired, p, &p->beat_timer) != MIM_OK) {
    p->beat_timer = NULL;
    mim_log(MIM_LOG_WARN, "presence: could not start the heartbeat on %s: %s", p->topic,
            mim_last_error_detail());
  }
  pthread_mutex_unlock(&p->mu);
}

static bool timers_done(void *arg) {
  return ((mim_presence *)arg)->timers_stopped;
}

static bool publishes_done(void *arg) {
  return ((mim_presence *)arg)->inflight == 0;
}

void mim_presence_stop(mim_presence *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  pthread_mutex_unlock(&p->mu);
  /* Timers are armed and cancelled on the event thread only: hand the stop over. */
  if (mim_transport_timer(transport_of(p), 0, stop_fired, p, NULL) != MIM_OK) {
    pthread_mutex_lock(&p->mu);
    p->timers_stopped = true; /* the transport is going away: it drops pending timers */
    pthread_mutex_unlock(&p->mu);
  }
  pthread_mutex_lock(&p->mu);
  /* The event thread is not blocked by anything of ours: this is quick. */
  (void)mim_client_wait_locked(p->client, &p->mu, &p->cv, timers_done, p, NULL);
  pthread_mutex_unlock(&p->mu);
}

void mim_presence_drain(mim_presence *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  /* Each publish has the client's deadline: this ends. */
  (void)mim_client_wait_locked(p->client, &p->mu, &p->cv, publishes_done, p, NULL);
  pthread_mutex_unlock(&p->mu);
}

/* ---- receiving (event thread) ---- */

/* Answers a session we did not know with our own "here", so it learns of us at once; at
 * most once per early_gap_ms: within it, the answer waits for the gap's end (one for every
 * session met meanwhile). A "here" sent before the newcomer subscribed did not reach it,
 * so it is deferred, never skipped. */
static void early_here(mim_presence *p) {
  pthread_mutex_lock(&p->mu);
  int64_t waited = since(cmn_mono_ms(), p->last_here_ms);
  if (!p->stopping && p->announced && !p->early_timer) {
    if (waited >= p->early_gap_ms)
      send_presence_locked(p, true);
    else if (mim_transport_timer(transport_of(p), p->early_gap_ms - waited, early_fired, p,
                                 &p->early_timer) != MIM_OK)
      p->early_timer = NULL;
  }
  pthread_mutex_unlock(&p->mu);
}

static void early_fired(void *user) {
  mim_presence *p = user;
  pthread_mutex_lock(&p->mu);
  p->early_timer = NULL;
  if (!p->stopping)
    send_presence_locked(p, true);
  pthread_mutex_unlock(&p->mu);
}

bool mim_presence_on_item(mim_presence *p, const uint8_t *data, size_t len) {
  mim_signal sig;
  const char *reason = NULL;
  mim_signal_parse_result r = mim_signal_parse(data, len, &sig, &reason);
  if (r == MIM_SIGNAL_BAD)
    mim_log(MIM_LOG_DEBUG, "presence: dropped a signal on %s: %s", p->topic, reason);
  if (r != MIM_SIGNAL_OK)
    return r == MIM_SIGNAL_BAD;
  pthread_mutex_lock(&p->mu);
  /* Before the join is done nothing is armed (a failed join frees us without a stop); what
   * is missed meanwhile comes back as answers to our first "here". */
  bool ignore = !p->started || p->stopping || strcmp(sig.sid, p->sid) == 0;
  pthread_mutex_unlock(&p->mu);
  if (!ignore) {
    int64_t now = cmn_mono_ms();
    pthread_mutex_lock(&p->table_mu);
    bool new_sid = mim_roster_apply(&p->roster, &sig, now, cmn_wall_ms(), MIM_PRESENCE_EXPIRY_MS);
    int64_t due = mim_roster_tick(&p->roster, now);
    pthread_mutex_unlock(&p->table_mu);
    arm_lapse(p, due);
    if (new_sid)
      early_here(p);
  }
  mim_signal_clear(&sig);
  return true;
}

/* ---- the application's calls ---- */

mim_status mim_presence_set_typing(mim_presence *p, bool typing) {
  pthread_mutex_lock(&p->mu);
  int64_t now = cmn_mono_ms();
  mim_status st = MIM_OK;
  bool send =
      !p->stopping && (typing ? since(now, p->last_on_ms) >= MIM_TYPING_REFRESH_MS
                              : p->off_owed && since(now, p->last_on_ms) < MIM_TYPING_EXPIRY_MS);
  /* Counted as sent before publishing (mu is released meanwhile): a failure is not
   * retried anyway, and two threads typing at once must not both send. */
  if (send && typing)
    p->last_on_ms = now;
  p->off_owed = send ? typing : p->off_owed && typing;
  if (send) {
    mim_signal sig = {.kind = MIM_SIGNAL_TYPING, .on = typing};
    st = publish_locked(p, &sig);
  }
  pthread_mutex_unlock(&p->mu);
  return st;
}

mim_status mim_presence_members(mim_presence *p, mim_member_list **out) {
  if (!p->enabled)
    return mim_fail(MIM_ERR_FAILED_PRECONDITION,
                    "mim_members: presence is off (set mim_join_options.on_presence)");
  pthread_mutex_lock(&p->table_mu);
  mim_status st = mim_roster_list(&p->roster, out);
  pthread_mutex_unlock(&p->table_mu);
  return st;
}
