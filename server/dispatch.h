/* mim-local: method dispatch. The top of the service layer: it knows every handler, and
 * nothing below calls back into it. */
#ifndef MIM_SERVER_DISPATCH_H
#define MIM_SERVER_DISPATCH_H

#include "rpc.h"
#include "svc.h"

/* srv_dispatch_fn: runs the handler of method (UNIMPLEMENTED for an unknown one). */
void dispatch_call(void *app, srv_call *call, const char *method, const uint8_t *req, size_t len);

/* Fills cfg's dispatch, app and hot_methods, so the rpc layer hands every call to
 * dispatch_call with a and registers the hot methods for its fast path. */
void dispatch_configure(srv_rpc_config *cfg, app *a);

#endif
