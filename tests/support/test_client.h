/* Clients for tests against a local mim-local. */
#ifndef MIM_TESTS_TEST_CLIENT_H
#define MIM_TESTS_TEST_CLIENT_H

#include "mim_local.h"
#include "time_scale.h"

#include <momento/client.h>

/* A plaintext client built from key with a 10 s default deadline (times
 * test_time_scale()). Fails the running cmocka test (with the library's detail) when the
 * client cannot be created. */
mim_client *test_client_from_key(const char *key);

/* The usual group set-up: a mim-local with `caches` (NULL-terminated) on a free port and
 * a client with its root key. 0 with *srv and *root set, else -1. */
int test_local_start(const char *const *caches, mim_local **srv, mim_client **root);

/* The matching tear-down: frees *root, stops *srv, sets both to NULL. 0 when the server
 * stopped cleanly (mim_local_stop), else -1. */
int test_local_stop(mim_local **srv, mim_client **root);

#endif
