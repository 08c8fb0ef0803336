/* mim-local: a borrowed byte range (list names, values, packed items), the one type the
 * store, the record format and pubsub's persisted rings all pass around. */
#ifndef MIM_SERVER_BYTES_H
#define MIM_SERVER_BYTES_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_bytes {
  const uint8_t *data;
  size_t len;
} st_bytes;

#endif
