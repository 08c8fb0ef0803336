/* mim-local: the method table. Maps a gRPC method to its service handler, and names
 * the hot methods the rpc layer registers for the fast path. */
#include "dispatch.h"

#include "handlers.h"
#include "util.h"

#include <string.h>

/* What clients call most: ping, publish, subscribe, and the IM list calls. */
static const char *const g_hot_methods[] = {
    "/cache_client.Ping/Ping",
    "/cache_client.pubsub.Pubsub/Publish",
    "/cache_client.pubsub.Pubsub/Subscribe",
    "/cache_client.Scs/ListPushBack",
    "/cache_client.Scs/ListFetch",
    NULL,
};

typedef void (*handler_fn)(app *a, srv_call *call, const uint8_t *req, size_t len);

static const struct {
  const char *path;
  handler_fn fn;
} g_methods[] = {
    {"/cache_client.Ping/Ping", ping_handle},
    {"/control_client.ScsControl/CreateCache", control_create_cache},
    {"/control_client.ScsControl/DeleteCache", control_delete_cache},
    {"/control_client.ScsControl/ListCaches", control_list_caches},
    {"/token.Token/GenerateDisposableToken", tokens_generate},
    {"/cache_client.pubsub.Pubsub/Publish", topics_publish},
    {"/cache_client.pubsub.Pubsub/Subscribe", topics_subscribe},
};

void dispatch_call(void *user, srv_call *call, const char *method, const uint8_t *req, size_t len) {
  app *a = user;
  static const char scs[] = "/cache_client.Scs/";
  if (strncmp(method, scs, sizeof scs - 1) == 0) {
    scs_handle(a, call, method + sizeof scs - 1, req, len);
    return;
  }
  for (size_t i = 0; i < sizeof g_methods / sizeof g_methods[0]; i++) {
    if (strcmp(method, g_methods[i].path) == 0) {
      g_methods[i].fn(a, call, req, len);
      return;
    }
  }
  srv_log(LOG_DEBUG, "unknown method %s", method);
  srv_call_fail(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method %s", method);
}

void dispatch_configure(srv_rpc_config *cfg, app *a) {
  cfg->dispatch = dispatch_call;
  cfg->app = a;
  cfg->hot_methods = g_hot_methods;
}
