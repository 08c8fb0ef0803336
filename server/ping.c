/* mim-local: cache_client.Ping. */
#include "handlers.h"

#include "cacheping.pb-c.h"

/* No token needed: the official SDKs ping without an authorization header. */
void ping_handle(app *a, srv_call *call, const uint8_t *req, size_t len) {
  (void)a;
  (void)req;
  (void)len;
  CacheClient__PingResponse resp = CACHE_CLIENT____PING_RESPONSE__INIT;
  srv_call_reply(call, &resp.base);
}
