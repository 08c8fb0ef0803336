/* Internal: the rules for the names the library sends to Momento (cache names, list keys,
 * topic names), checked before a request leaves, so a name the server would refuse fails
 * up front with a detail that says which name is wrong and why.
 *
 * Where the rules come from (see also README.md, "Names"):
 * - Every official SDK refuses an empty or blank (whitespace-only) name of each kind.
 * - Cache names travel in the "cache" gRPC metadata entry: printable ASCII only (what the
 *   library already required), at most 255 bytes as mim-local accepts.
 * - Topic names are proto3 strings: valid UTF-8; mim-local accepts at most 255 bytes
 *   (hosted Momento publishes no figure; a chat's "<chat>-input" topic must fit too).
 * - List keys are bytes on the wire; mim-local accepts at most 4096 bytes.
 * The checks never allocate and read at most the limit plus one byte of a valid name, so
 * they are cheap enough for every call. */
#ifndef MIM_LIB_NAMES_H
#define MIM_LIB_NAMES_H

#include <momento/common.h>
#include <stdbool.h>

#define MIM_MAX_CACHE_NAME 255
#define MIM_MAX_TOPIC_NAME 255
#define MIM_MAX_LIST_NAME 4096
/* Bytes of a wrong name quoted in a detail (then "..."): enough to recognise it, never
 * a whole megabyte. */
#define MIM_NAME_ECHO 40

typedef enum mim_name_kind { MIM_NAME_CACHE, MIM_NAME_LIST, MIM_NAME_TOPIC } mim_name_kind;

/* Checks the name made of name followed by suffix (suffix NULL: none; the suffix is a
 * library constant, so it is assumed valid) against the rules of kind. what names it in
 * the detail ("topic name", "list key"). MIM_OK, or MIM_ERR_INVALID_ARGUMENT with a
 * detail quoting at most MIM_NAME_ECHO bytes of name (escaped) plus the suffix.
 * Thread-safe; no allocation. */
mim_status mim_check_name_as(mim_name_kind kind, const char *what, const char *name,
                             const char *suffix);

/* The three kinds with their usual wording. */
mim_status mim_check_cache_name(const char *cache);
mim_status mim_check_topic_name(const char *topic);
mim_status mim_check_list_name(const char *what, const char *key);

/* Every name a chat id becomes: list key and topic <chat>, and in moderated mode topic
 * "<chat>-input". fn names the caller in the detail ("mim_join"). MIM_OK or
 * MIM_ERR_INVALID_ARGUMENT naming the name that does not fit. */
mim_status mim_check_chat_names(const char *fn, const char *chat_id, bool moderated);

#endif
