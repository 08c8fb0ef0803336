/* The history + live merge and its gap accounting (see merge.h for what it promises and
 * who may call it when). */
#include "merge.h"

#include "error.h"
#include "message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Extra ids remembered beyond the list size: live messages delivered since, plus slack
 * for senders whose push and publish interleave with other senders. */
#define DEDUP_WINDOW 4096u
/* Live items buffered while a fetch is outstanding; beyond this they are dropped and
 * recovered from the list by another fetch. */
#define MAX_PENDING 65536u
/* Values a gap-fill's tail holds beyond the gap and the buffered live items: messages
 * pushed before the anchor but published after it (senders interleave). */
#define GAP_SLACK 32u

mim_status mim_merge_init(mim_merge *mg, const char *chat, uint32_t history_cap,
                          const mim_merge_sink *sink) {
  memset(mg, 0, sizeof *mg);
  mg->chat = chat;
  mg->history_cap = history_cap;
  mg->sink = *sink;
  return mim_idset_init(&mg->delivered, (size_t)history_cap + DEDUP_WINDOW);
}

void mim_merge_free(mim_merge *mg) {
  for (size_t i = 0; i < mg->npending; i++)
    mim_message_free_packed(&mg->pending[i]);
  free(mg->pending);
  mg->pending = NULL;
  mg->npending = mg->pending_cap = 0;
  mim_idset_free(&mg->delivered);
}

bool mim_merge_joined(const mim_merge *mg) {
  return mg->joined;
}

size_t mim_merge_capacity(const mim_merge *mg) {
  return mg->delivered.capacity;
}

bool mim_merge_fetching(const mim_merge *mg) {
  return mg->fetching;
}

/* ---- delivery ---- */

static void remember_last(mim_merge *mg, const char *id) {
  size_t n = strlen(id);
  if (n < sizeof mg->last_id)
    memcpy(mg->last_id, id, n + 1);
  else
    mg->last_id[0] = '\0'; /* not an id we could look for later */
}

/* Delivers a chat message unless its id was delivered already; foreign ones always. */
static void deliver_once(mim_merge *mg, const mim_message *m, const mim_envelope *env) {
  if (m->kind == MIM_MESSAGE_CHAT) {
    bool added = false;
    if (mim_idset_add(&mg->delivered, m->id, &added) != MIM_OK) {
      /* Delivered anyway: a possible duplicate beats a lost message. */
      mim_log(MIM_LOG_WARN, "chat %s: out of memory remembering a message id", mg->chat);
    } else if (!added) {
      mim_log(MIM_LOG_DEBUG, "chat %s: duplicate of %s (%s) skipped", mg->chat, m->id,
              m->from_history ? "history" : "live");
      return;
    }
    remember_last(mg, m->id);
  }
  mg->sink.deliver(mg->sink.user, m, env);
}

/* After a fetch that followed a discontinuity: tells the user when messages of the gap
 * were probably lost. With an anchor (see struct mim_merge): when the list no longer
 * holds it (truncated away, or the server lost the list: a restart without persistence).
 * Without one: when the topic skipped more values than the list keeps, or the list is
 * full and none of it had been delivered (the start of the gap was truncated away). */
static void report_lost_gap(mim_merge *mg, bool list_full_of_unknown, bool anchor_found) {
  bool gap = mg->fetch_gap_missed > 0 || mg->fetch_gap_unknown;
  if (!mg->joined || !gap)
    return;
  bool lost = mg->fetch_gap_anchor[0]
                  ? !anchor_found
                  : mg->fetch_gap_missed > mg->history_cap || list_full_of_unknown;
  if (!lost)
    return;
  char detail[200];
  if (mg->fetch_gap_anchor[0] && mg->fetch_gap_missed <= mg->history_cap)
    snprintf(detail, sizeof detail,
             "the history no longer holds the last message delivered before the gap: "
             "messages may have been lost");
  else
    snprintf(detail, sizeof detail,
             "gap of %llu values%s larger than the history cap %u: some messages were lost",
             (unsigned long long)mg->fetch_gap_missed, mg->fetch_gap_unknown ? " (or more)" : "",
             (unsigned)mg->history_cap);
  mg->sink.report(mg->sink.user, MIM_ERR_RESOURCE_EXHAUSTED, detail);
}

/* Where a refetch starts delivering: at the join's oldest message (floor_id) when the
 * list still holds it; otherwise everything in the list is newer than it. The join
 * fetch itself records the floor. */
static size_t delivery_start(mim_merge *mg, const mim_list_values *values) {
  for (size_t i = 0; i < values->count; i++) {
    mim_envelope env;
    if (!mim_message_parse(mg->chat, values->values[i].data, values->values[i].len, &env))
      continue;
    bool floor = mg->joined ? mg->floor_id[0] && !strcmp(env.id, mg->floor_id) : true;
    if (!mg->joined && strlen(env.id) < sizeof mg->floor_id)
      memcpy(mg->floor_id, env.id, strlen(env.id) + 1);
    mim_envelope_clear(&env);
    if (floor)
      return mg->joined ? i : 0;
  }
  return 0;
}

/* Shows the sink the events of the batch that were not delivered yet. */
static void prepare_history(mim_merge *mg, const mim_list_values *values, size_t from) {
  if (!mg->sink.prepare)
    return;
  for (size_t i = from; i < values->count; i++) {
    mim_envelope env;
    if (!mim_envelope_parse(values->values[i].data, values->values[i].len, &env, NULL))
      continue;
    if (env.type != MIM_ENV_MSG && !mim_idset_contains(&mg->delivered, env.id))
      mg->sink.prepare(mg->sink.user, &env);
    mim_envelope_clear(&env);
  }
}

/* Delivers the list values not delivered yet, oldest first, from the join's oldest on
 * (see delivery_start). Foreign values in the list are delivered on the first (join)
 * fetch only: they have no id to de-duplicate by. */
static void deliver_history(mim_merge *mg, const mim_list_values *values) {
  size_t cap = mg->history_cap > values->count ? mg->history_cap : values->count;
  mim_idset_reserve(&mg->delivered, cap + DEDUP_WINDOW);
  bool any_known = false, anchor_found = false;
  size_t known_before = mg->delivered.count;
  size_t from = delivery_start(mg, values);
  prepare_history(mg, values, from);
  for (size_t i = 0; i < values->count; i++) {
    const mim_bytes *v = &values->values[i];
    mim_envelope env;
    mim_message m;
    if (mim_message_parse(mg->chat, v->data, v->len, &env)) {
      any_known = any_known || mim_idset_contains(&mg->delivered, env.id);
      anchor_found =
          anchor_found || (mg->fetch_gap_anchor[0] && !strcmp(env.id, mg->fetch_gap_anchor));
      mim_message_fill(&m, &env, mg->chat, "", v->data, v->len, 0, true);
      mim_message_fill_sender(&m, &env, mg->moderated);
      if (i >= from)
        deliver_once(mg, &m, &env);
      mim_envelope_clear(&env);
    } else if (!mg->joined && env.type == MIM_ENV_FOREIGN) {
      mim_message_fill(&m, NULL, mg->chat, "", v->data, v->len, 0, true);
      mg->sink.deliver(mg->sink.user, &m, NULL);
    }
  }
  report_lost_gap(mg, known_before > 0 && !any_known && values->count >= mg->history_cap,
                  anchor_found);
}

static void drain_pending(mim_merge *mg) {
  for (size_t i = 0; i < mg->npending; i++) {
    mim_message *m = &mg->pending[i];
    /* Parsed again rather than kept: the buffer holds packed messages only, and it is
     * used only while a fetch is outstanding. */
    mim_envelope env;
    bool ok = m->kind == MIM_MESSAGE_CHAT && mim_envelope_parse(m->raw, m->raw_len, &env, NULL);
    deliver_once(mg, m, ok ? &env : NULL);
    if (ok)
      mim_envelope_clear(&env);
    mim_message_free_packed(m);
  }
  mg->npending = 0;
}

/* Keeps a copy of m until the outstanding fetch completes. When it cannot, the item is
 * dropped and recovered from the list by one more fetch. */
static void buffer_item(mim_merge *mg, const mim_message *m) {
  if (mg->npending >= MAX_PENDING) {
    /* Instead of growing without bound. */
    mg->refetch_wanted = true;
    mim_log(MIM_LOG_WARN, "chat %s: live buffer full; refetching", mg->chat);
    return;
  }
  if (mg->npending == mg->pending_cap) {
    size_t n = mg->pending_cap ? mg->pending_cap * 2 : 64;
    mim_message *p = realloc(mg->pending, n * sizeof *p);
    if (!p) {
      mg->refetch_wanted = true;
      return;
    }
    mg->pending = p;
    mg->pending_cap = n;
  }
  mim_message copy = *m;
  if (!mim_message_pack(&copy)) {
    mg->refetch_wanted = true;
    return;
  }
  mg->pending[mg->npending++] = copy;
}

/* ---- subscription events ---- */

void mim_merge_live(mim_merge *mg, const mim_topic_item *item) {
  mim_envelope env;
  bool ok = mim_message_parse(mg->chat, item->data, item->len, &env);
  mg->page = item->sequence_page;
  if (!ok && env.type != MIM_ENV_FOREIGN)
    return; /* a signal or a type of a later version: nothing to deliver */
  mim_message m;
  mim_message_fill(&m, ok ? &env : NULL, mg->chat, item->publisher_id, item->data, item->len,
                   item->sequence, false);
  mim_message_fill_sender(&m, ok ? &env : NULL, mg->moderated);
  if (!mg->joined || mg->fetching)
    buffer_item(mg, &m);
  else
    deliver_once(mg, &m, ok ? &env : NULL);
  if (ok)
    mim_envelope_clear(&env);
}

bool mim_merge_discontinuity(mim_merge *mg, uint64_t last, uint64_t next, uint64_t page) {
  mim_log(MIM_LOG_INFO, "chat %s: discontinuity %llu -> %llu (page %llu); refetching history",
          mg->chat, (unsigned long long)last, (unsigned long long)next, (unsigned long long)page);
  /* The anchor of the gaps the next fetch covers: the last message delivered before the
   * first of them. */
  if (mg->gap_missed == 0 && !mg->gap_unknown)
    memcpy(mg->gap_anchor, mg->last_id, sizeof mg->last_id);
  /* Same page and a known position: the values in between are the gap. Otherwise
   * (first stream lost blind, topic reset: numbers of another page) its size is
   * unknown. */
  if (last > 0 && next > last && (mg->page == 0 || page == mg->page))
    mg->gap_missed += next - last - 1;
  else
    mg->gap_unknown = true;
  mg->page = page;
  return true;
}

bool mim_merge_state(mim_merge *mg, mim_subscription_state state) {
  /* A reconnect fetches only when the stream was lost before any value or discontinuity
   * (page still 0): it then resumes live only and nothing replays the gap. Otherwise the
   * resumed stream replays what was missed, in order, or reports a discontinuity, which
   * fetches; fetching here too would deliver the list's newest messages before the
   * older ones the replay is still bringing. */
  if (state == MIM_SUB_CONNECTED && !mg->confirmed) {
    /* Confirmed: from now on nothing published is missed, so fetch the history. */
    mg->confirmed = true;
    return true;
  }
  if (state == MIM_SUB_CONNECTED && mg->blind_reconnect) {
    mg->blind_reconnect = false;
    return true;
  }
  if (state == MIM_SUB_RECONNECTING)
    mg->blind_reconnect = mg->page == 0;
  return false;
}

/* ---- fetches ---- */

/* The tail a gap-fill fetches first (see mim_merge_fetch_window); 0 = the whole list. */
static size_t gap_window(const mim_merge *mg) {
  if (!mg->joined || mg->widen || !mg->fetch_gap_anchor[0] || mg->fetch_gap_unknown ||
      mg->fetch_gap_missed == 0)
    return 0;
  uint64_t n = mg->fetch_gap_missed + mg->npending + GAP_SLACK;
  return n < mg->history_cap ? (size_t)n : 0;
}

bool mim_merge_fetch_begin(mim_merge *mg) {
  if (mg->fetching) {
    mg->refetch_wanted = true;
    return false;
  }
  mg->fetching = true;
  mg->fetch_gap_missed = mg->gap_missed;
  mg->fetch_gap_unknown = mg->gap_unknown;
  memcpy(mg->fetch_gap_anchor, mg->gap_anchor, sizeof mg->gap_anchor);
  mg->gap_missed = 0;
  mg->gap_unknown = false;
  mg->gap_anchor[0] = '\0';
  mg->fetch_window = gap_window(mg);
  mg->widen = false;
  return true;
}

size_t mim_merge_fetch_window(const mim_merge *mg) {
  return mg->fetch_window;
}

static bool holds_id(const mim_merge *mg, const mim_list_values *values, const char *id) {
  bool found = false;
  for (size_t i = 0; i < values->count && !found; i++) {
    mim_envelope env;
    if (mim_message_parse(mg->chat, values->values[i].data, values->values[i].len, &env)) {
      found = strcmp(env.id, id) == 0;
      mim_envelope_clear(&env);
    }
  }
  return found;
}

/* A gap-fill's tail that came back full without the anchor: the gap reaches further
 * back. Its gaps go back to wait for the next fetch, which is of the whole list; live
 * items stay buffered meanwhile. */
static bool widen_if_short(mim_merge *mg, const mim_list_values *values) {
  if (mg->fetch_window == 0 || values->count < mg->fetch_window ||
      holds_id(mg, values, mg->fetch_gap_anchor))
    return false;
  mim_log(MIM_LOG_DEBUG, "chat %s: the gap reaches past the newest %zu values; fetching all",
          mg->chat, mg->fetch_window);
  mg->gap_missed += mg->fetch_gap_missed;
  mg->gap_unknown = mg->gap_unknown || mg->fetch_gap_unknown;
  memcpy(mg->gap_anchor, mg->fetch_gap_anchor, sizeof mg->gap_anchor); /* the first gap's */
  mg->widen = true;
  mg->refetch_wanted = false; /* the whole list covers what was asked for meanwhile */
  mg->fetching = false;
  return true;
}

bool mim_merge_fetch_done(mim_merge *mg, mim_status status, const char *detail,
                          const mim_list_values *values) {
  bool joining = !mg->joined;
  if (status == MIM_OK && widen_if_short(mg, values))
    return true;
  if (status == MIM_OK) {
    deliver_history(mg, values);
  } else if (!joining) {
    mim_log(MIM_LOG_WARN, "chat %s: history refetch failed: %s", mg->chat, mim_status_name(status));
    mg->sink.report(mg->sink.user, status, detail);
  }
  if (status == MIM_OK || !joining) {
    mg->joined = true;
    drain_pending(mg);
  }
  mg->fetching = false;
  if (!mg->joined || !mg->refetch_wanted)
    return false;
  mg->refetch_wanted = false;
  return true;
}

void mim_merge_fetch_not_started(mim_merge *mg, mim_status status, const char *detail) {
  mg->fetching = false;
  mg->widen = false;
  if (!mg->joined)
    return;
  mg->sink.report(mg->sink.user, status, detail);
  drain_pending(mg);
}
