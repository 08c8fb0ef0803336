/* Internal: typing and presence signals (docs/PROTOCOL.md section 5), the ephemeral JSON
 * values published on a chat's topic and never stored:
 *   {"v":2,"t":"typing","from":…,"uid":…,"sid":…,"ts":…,"on":true}
 *   {"v":2,"t":"presence","from":…,"uid":…,"sid":…,"ts":…,"state":"here","ttl":75000}
 * (a moderator's relay adds "pub" after "uid"). Building is strict; parsing tells a signal
 * from anything else cheaply, so the other values of the topic pay almost nothing. */
#ifndef MIM_LIB_SIGNAL_H
#define MIM_LIB_SIGNAL_H

#include <momento/common.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A signal is at most this large (hosted Momento's topic payload limit). */
#define MIM_SIGNAL_MAX_BYTES 4096u
/* Longest sid and uid / pub accepted (PROTOCOL 3.4: uid 1..128 bytes). */
#define MIM_SIGNAL_MAX_SID 64u
#define MIM_SIGNAL_MAX_UID 128u
/* Bounds of a presence signal's ttl (ms): a larger one would keep a silent member for too
 * long. */
#define MIM_SIGNAL_TTL_MAX 300000

typedef enum mim_signal_kind { MIM_SIGNAL_TYPING = 1, MIM_SIGNAL_PRESENCE = 2 } mim_signal_kind;

/* A parsed signal. Strings point into storage the signal owns (mim_signal_clear). */
typedef struct mim_signal {
  mim_signal_kind kind;
  char *from;
  char *uid; /* "" when absent (a sender then falls back to from) */
  char *pub; /* "" when absent */
  char *sid;
  int64_t ts;
  bool on;        /* typing: started (true) or stopped */
  bool here;      /* presence: "here" (true) or "left" */
  int64_t ttl_ms; /* presence: the sender's expiry (0 = absent: the reader's default) */
} mim_signal;

typedef enum mim_signal_parse_result {
  MIM_SIGNAL_NONE = 0, /* not a signal: some other value (an envelope, foreign bytes) */
  MIM_SIGNAL_OK = 1,   /* *sig filled */
  MIM_SIGNAL_BAD = 2   /* says it is a signal but breaks the rules: drop it */
} mim_signal_parse_result;

/* Parses bytes; *sig is filled only on MIM_SIGNAL_OK (free with mim_signal_clear), else
 * zeroed. *reason (may be NULL) names why for MIM_SIGNAL_BAD (static string). Values that
 * cannot hold a signal's type name are told apart without parsing JSON. */
mim_signal_parse_result mim_signal_parse(const uint8_t *data, size_t len, mim_signal *sig,
                                         const char **reason);

/* Serializes sig (compact JSON, members in the protocol's order; pub and ttl only when
 * set) into a malloc'd NUL-terminated *out of *out_len bytes. Errors:
 * MIM_ERR_INVALID_ARGUMENT (a string not valid UTF-8 or too long, sid empty, result over
 * MIM_SIGNAL_MAX_BYTES), MIM_ERR_NO_MEMORY. */
mim_status mim_signal_build(const mim_signal *sig, char **out, size_t *out_len);

/* Frees the strings of *sig and zeroes it. NULL is ignored. */
void mim_signal_clear(mim_signal *sig);

#endif
