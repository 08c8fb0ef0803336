/*
 * Internal: the library's one unary call path. pack -> transport call -> unpack, in a
 * blocking form (mim_pb_call) and a callback form (mim_pb_call_async); list, topics,
 * token and client make every unary call through it, so deadlines, metadata and the
 * zeroing of secrets are decided here once.
 *
 * Every call goes over the client's transport (lib/transport.h) with the client's
 * default deadline (mim_client_deadline_ms); cache, when not NULL, travels as "cache"
 * metadata. The packed request is zeroed before it is freed (the token request carries
 * the caller's key).
 *
 *   static const mim_pb_method list_length = {MIM_HOST_CACHE, "/cache_client.Scs/ListLength",
 *                                             &cache_client____list_length_response__descriptor};
 *   ProtobufCMessage *resp;
 *   mim_status st = mim_pb_call(client, &list_length, cache, &req.base, &resp);
 *   ... read resp ...
 *   mim_pb_free(resp);
 */
#ifndef MIM_LIB_PB_CALL_H
#define MIM_LIB_PB_CALL_H

#include "pb.h"
#include "transport.h"

#include <momento/client.h>
#include <stdbool.h>

/* What to call and how to read the answer; usually a static const per method. */
typedef struct mim_pb_method {
  mim_host_kind host; /* the plane: cache, control or token */
  const char *path;   /* "/cache_client.Scs/ListFetch" */
  /* The response message; NULL when the answer is not read (common._Empty), so any
   * response bytes count as success, as the server sends nothing we would use. */
  const ProtobufCMessageDescriptor *response;
  /* The response carries a secret (a minted key): the blocking form zeroes its copy of
   * the bytes once decoded. The callback form decodes from the transport's buffer,
   * which it does not own, so it refuses secret methods (MIM_ERR_INVALID_ARGUMENT). */
  bool secret_response;
} mim_pb_method;

/* Blocking call. On MIM_OK *resp (when resp is not NULL) is the decoded response, owned
 * by the caller (mim_pb_free), NULL when method->response is NULL. With resp NULL the
 * response is still decoded (a malformed one fails) and then freed.
 * Errors: the transport's (with the server's message as detail), MIM_ERR_NO_MEMORY,
 * MIM_ERR_PROTOCOL ("could not decode <message>"); *resp is then NULL and the calling
 * thread's detail is set. From a transport callback (the client's event thread) it fails
 * with MIM_ERR_FAILED_PRECONDITION: waiting there would deadlock. Thread-safe. */
mim_status mim_pb_call(mim_client *client, const mim_pb_method *method, const char *cache,
                       const ProtobufCMessage *request, ProtobufCMessage **resp);

/* A module's own completion callback (mim_list_write_cb, mim_publish_cb, ...), stored
 * untyped for the call; the module's done function casts it back to its real type
 * before calling it (any function pointer may round-trip through another). */
typedef void (*mim_pb_user_fn)(void);

/* What a completion gets back: the module's callback and its user pointer, and the
 * method that was called. Owned by the helper; valid during the completion only. */
typedef struct mim_pb_pending {
  const mim_pb_method *method;
  mim_pb_user_fn user_fn; /* may be NULL: the user gave no callback */
  void *user;
} mim_pb_pending;

/* Completion, on the client's event thread (the rules of transport callbacks apply: do
 * not block, no blocking calls). status is MIM_OK or the failure; detail is "" on MIM_OK,
 * else the server's message or ours (never NULL). response is the decoded response on
 * MIM_OK (NULL when the method's response is NULL, and always on failure); like pending
 * it is borrowed: valid only during the call, freed by the helper afterwards. */
typedef void (*mim_pb_done_fn)(const mim_pb_pending *pending, mim_status status, const char *detail,
                               const ProtobufCMessage *response);

/* Starts a call; request is packed (copied) before this returns, so it may live on the
 * caller's stack. On MIM_OK done runs exactly once, possibly before this returns, with
 * user_fn and user as given. On any other return done will not run (detail set).
 * Errors: MIM_ERR_INVALID_ARGUMENT (a secret_response method), MIM_ERR_NO_MEMORY, and
 * the transport's (e.g. MIM_ERR_CANCELLED while the client is being freed).
 * Thread-safe; may be called from transport callbacks. */
mim_status mim_pb_call_async(mim_client *client, const mim_pb_method *method, const char *cache,
                             const ProtobufCMessage *request, mim_pb_done_fn done,
                             mim_pb_user_fn user_fn, void *user);

#endif
