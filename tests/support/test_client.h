/* Clients for tests against a local mim-local. */
#ifndef MIM_TESTS_TEST_CLIENT_H
#define MIM_TESTS_TEST_CLIENT_H

#include "time_scale.h"

#include <momento/client.h>

/* A plaintext client built from key with a 10 s default deadline (times
 * test_time_scale()). Fails the running cmocka test (with the library's detail) when the
 * client cannot be created. */
mim_client *test_client_from_key(const char *key);

#endif
