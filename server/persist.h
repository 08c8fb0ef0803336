/* mim-local: optional persistence (--data-dir). An append-only log of mutations
 * (DIR/log) on top of a snapshot (DIR/snapshot), both in the same record format
 * (record.h):
 *   u32 payload length, u32 CRC-32 of the payload, payload (little-endian fields).
 * It knows records and files, not the store: startup hands every intact record of
 * snapshot then log to a replay callback (recovery.c), refusing to start on damage
 * unless told to recover (persist_replay); recovery then compacts everything into a
 * fresh snapshot. It also keeps pubsub's
 * topic state (topic_state.h), since a topic record and its table entry must change
 * together. See server/README.md.
 *
 * Thread-safe: one mutex over the files and the topic table. Lock order: store table ->
 * cache -> persist, and topic -> persist. */
#ifndef MIM_SERVER_PERSIST_H
#define MIM_SERVER_PERSIST_H

#include "bytes.h"
#include "topic_state.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct persist persist;

typedef enum { PERSIST_FSYNC_ALWAYS, PERSIST_FSYNC_INTERVAL, PERSIST_FSYNC_NEVER } persist_fsync;

/* Sequence numbers a topic may use before it must log a new high-water mark. */
#define PERSIST_SEQ_BLOCK 1024

/* Parses "always|interval|never". */
bool persist_parse_fsync(const char *s, persist_fsync *out);

/* Default log size that triggers a compaction. */
#define PERSIST_COMPACT_BYTES (64u << 20)

/* How startup hands back what the files hold. apply gets each record's payload (type
 * byte first) except the headers, in file order, before persist_open returns; false
 * when the record is malformed (counted as damage, like a bad CRC or length). Reading
 * goes on past damage to every intact record. Damage (anything but a record cut short
 * at the end of the log, a crash mid-append) makes persist_open fail and leaves the
 * files unchanged, unless recover is set: then both files are first copied, as read,
 * into DIR/damaged-<time>/, and persist_open goes on with the intact records. */
typedef struct persist_replay {
  bool (*apply)(void *ctx, persist *p, const uint8_t *rec, size_t len);
  void *ctx;
  bool recover;
} persist_replay;

/* Opens (creating) dir and replays its snapshot and log through replay (the caller
 * compacts next: store_compact). The log is compacted again when it outgrows
 * compact_bytes (0: the default). NULL on error. */
persist *persist_open(const char *dir, persist_fsync mode, uint64_t compact_bytes,
                      const persist_replay *replay);
/* For the startup log line: topics with a state, and the files' generation. */
void persist_stats(persist *p, size_t *topics, uint64_t *generation);
/* Flushes, fsyncs and closes (after the last writer is gone). */
void persist_close(persist *p);

/* Result of recording a mutation. */
typedef enum {
  PERSIST_OK = 0,
  PERSIST_FAILED,  /* not recorded (write error, disk full, out of memory, log unusable) */
  PERSIST_TOO_BIG, /* a record would exceed the limit the reader accepts */
} persist_rc;

/* Mutation records (called by store.c under its locks, before the change is applied
 * or acknowledged). Anything but PERSIST_OK means nothing was recorded: the caller must
 * leave memory unchanged and fail the request. Expiries are wall-clock ms since the
 * epoch. */
persist_rc persist_cache(persist *p, bool create, const char *name);
persist_rc persist_push(persist *p, const char *cache, st_bytes key, const st_bytes *vals, size_t n,
                        bool front, bool fresh, uint32_t truncate, int64_t expires_wall);
persist_rc persist_list_set(persist *p, const char *cache, st_bytes key,
                            const ProtobufCBinaryData *v, size_t n, int64_t expires_wall);
persist_rc persist_pop(persist *p, const char *cache, st_bytes key, bool front);
/* A DictionarySet: n fields and values in request order (the last of a field wins);
 * fresh replaces whatever the key held. */
persist_rc persist_dict_set(persist *p, const char *cache, st_bytes key, const st_bytes *fields,
                            const st_bytes *values, size_t n, bool fresh, int64_t expires_wall);
persist_rc persist_item_delete(persist *p, const char *cache, st_bytes key);

/* Topic state: the page and the first sequence number to use after a restart. */
bool persist_topic_get(persist *p, const char *cache, const char *topic, uint64_t *page,
                       uint64_t *next_seq);
persist_rc persist_topic_set(persist *p, const char *cache, const char *topic, uint64_t page,
                             uint64_t next_seq);

/* The replay ring at a clean stop: n items, consecutive sequence numbers, each the
 * packed subscription item. */
void persist_topic_ring(persist *p, const char *cache, const char *topic, size_t n,
                        const uint64_t *seqs, const st_bytes *msgs);
/* Hands a kept ring to fn, oldest first, if it ends at last_seq (else drops it); the
 * copy here is freed either way. */
void persist_topic_take_ring(persist *p, const char *cache, const char *topic, uint64_t last_seq,
                             topic_ring_fn fn, void *ctx);

/* Replay of the topic records (recovery.c, during persist_open): fill the topic table
 * without recording anything. false: out of memory, or a malformed ring. */
bool persist_restore_topic(persist *p, const char *cache, const char *topic, uint64_t page,
                           uint64_t next_seq);
bool persist_restore_ring(persist *p, const char *cache, const char *topic, const uint8_t *body,
                          size_t len);
/* A cache-deleted record: its topics start afresh. */
void persist_restore_cache_deleted(persist *p, const char *cache);

/* Compaction, driven by store_compact: true when the log outgrew its threshold. */
bool persist_wants_compaction(persist *p);
/* Between begin and end the caller (holding the store exclusively) emits every cache
 * and live list; end adds the topics, fsyncs, renames and truncates the log. */
bool persist_snapshot_begin(persist *p);
void persist_snapshot_cache(persist *p, const char *name);
void persist_snapshot_list(persist *p, const char *cache, st_bytes key,
                           const ProtobufCBinaryData *v, size_t n, int64_t expires_wall);
void persist_snapshot_dict(persist *p, const char *cache, st_bytes key, const st_bytes *fields,
                           const st_bytes *values, size_t n, bool fresh, int64_t expires_wall);
bool persist_snapshot_end(persist *p);

#endif
