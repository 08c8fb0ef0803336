/* mim-local: the service handlers, one file per service (ping.c, control.c, tokens.c,
 * topics.c, scs.c). Each finishes the call it is given (reply, fail, or for Subscribe a
 * stream owned by pubsub). Called by dispatch.c on a CQ thread. */
#ifndef MIM_SERVER_HANDLERS_H
#define MIM_SERVER_HANDLERS_H

#include "svc.h"

void ping_handle(app *a, srv_call *call, const uint8_t *req, size_t len);

void control_create_cache(app *a, srv_call *call, const uint8_t *req, size_t len);
void control_delete_cache(app *a, srv_call *call, const uint8_t *req, size_t len);
void control_list_caches(app *a, srv_call *call, const uint8_t *req, size_t len);

void tokens_generate(app *a, srv_call *call, const uint8_t *req, size_t len);

void topics_publish(app *a, srv_call *call, const uint8_t *req, size_t len);
void topics_subscribe(app *a, srv_call *call, const uint8_t *req, size_t len);

/* method is what follows "/cache_client.Scs/". */
void scs_handle(app *a, srv_call *call, const char *method, const uint8_t *req, size_t len);

#endif
