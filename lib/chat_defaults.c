/* The chat names shared by sessions, the moderator and the token policies: see
 * chat_defaults.h. */
#include "chat_defaults.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *mim_chat_input_topic(const char *chat_id) {
  size_t n = strlen(chat_id) + sizeof MIM_INPUT_TOPIC_SUFFIX;
  char *name = malloc(n);
  if (name)
    snprintf(name, n, "%s" MIM_INPUT_TOPIC_SUFFIX, chat_id);
  return name;
}

char *mim_chat_read_dictionary(const char *chat_id) {
  size_t n = strlen(chat_id) + sizeof MIM_READ_DICTIONARY_SUFFIX;
  char *name = malloc(n);
  if (name)
    snprintf(name, n, "%s" MIM_READ_DICTIONARY_SUFFIX, chat_id);
  return name;
}
