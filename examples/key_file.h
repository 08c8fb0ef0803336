/* Shared by the example programs: reading a key or token from a file. */
#ifndef MIM_EXAMPLES_KEY_FILE_H
#define MIM_EXAMPLES_KEY_FILE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a small file holding a key (up to 16 KiB) without its trailing whitespace.
 * Returns a malloc'd string, or NULL when the file cannot be read or is empty. The
 * stack copy is wiped: it is a secret. */
static inline char *read_key_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return NULL;
  char buf[16384];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
    n--;
  buf[n] = '\0';
  char *key = n ? strdup(buf) : NULL;
  explicit_bzero(buf, sizeof buf);
  return key;
}

/* Wipes and frees a string returned by read_key_file. NULL is ignored. */
static inline void free_key(char *key) {
  if (key) {
    explicit_bzero(key, strlen(key));
    free(key);
  }
}

#endif
