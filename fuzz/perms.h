/* Fuzz support: the permission sets of the two instant-messaging policies, built as
 * protobuf-c structs (what a minting request carries), for minting test tokens. */
#ifndef MIM_FUZZ_PERMS_H
#define MIM_FUZZ_PERMS_H

#include "permissionmessages.pb-c.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct fuzz_perms {
  PermissionMessages__Permissions perms;
  PermissionMessages__ExplicitPermissions expl;
  PermissionMessages__PermissionsType grants[3];
  PermissionMessages__PermissionsType *ptrs[3];
  PermissionMessages__PermissionsType__CachePermissions cache_grant;
  PermissionMessages__PermissionsType__TopicPermissions topic_grants[2];
  PermissionMessages__PermissionsType__CacheSelector cache_sels[3];
  PermissionMessages__PermissionsType__CacheItemSelector item_sel;
  PermissionMessages__PermissionsType__TopicSelector topic_sels[2];
  char input_topic[128];
} fuzz_perms;

/* moderated false: readwrite on item chat, publishsubscribe on topic chat; true: read on
 * item chat, publishonly on "<chat>-input", subscribeonly on chat. All pointers point
 * into *p (and to the strings given), so p must stay put while it is used. */
static inline PermissionMessages__Permissions *fuzz_policy(fuzz_perms *p, const char *cache,
                                                           const char *chat, bool moderated) {
  memset(p, 0, sizeof *p);
  permission_messages__permissions__init(&p->perms);
  permission_messages__explicit_permissions__init(&p->expl);
  for (int i = 0; i < 3; i++) {
    permission_messages__permissions_type__init(&p->grants[i]);
    permission_messages__permissions_type__cache_selector__init(&p->cache_sels[i]);
    p->cache_sels[i].kind_case =
        PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_SELECTOR__KIND_CACHE_NAME;
    p->cache_sels[i].cache_name = (char *)cache;
    p->ptrs[i] = &p->grants[i];
  }
  PermissionMessages__PermissionsType__CachePermissions *cg = &p->cache_grant;
  permission_messages__permissions_type__cache_permissions__init(cg);
  cg->role = moderated ? PERMISSION_MESSAGES__CACHE_ROLE__CacheReadOnly
                       : PERMISSION_MESSAGES__CACHE_ROLE__CacheReadWrite;
  cg->cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_CACHE_SELECTOR;
  cg->cache_selector = &p->cache_sels[0];
  permission_messages__permissions_type__cache_item_selector__init(&p->item_sel);
  p->item_sel.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__KIND_KEY;
  p->item_sel.key.data = (uint8_t *)chat;
  p->item_sel.key.len = strlen(chat);
  cg->cache_item_case =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ITEM_ITEM_SELECTOR;
  cg->item_selector = &p->item_sel;
  p->grants[0].kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_CACHE_PERMISSIONS;
  p->grants[0].cache_permissions = cg;

  snprintf(p->input_topic, sizeof p->input_topic, "%s-input", chat);
  size_t n = moderated ? 2 : 1;
  for (size_t i = 0; i < n; i++) {
    PermissionMessages__PermissionsType__TopicPermissions *tg = &p->topic_grants[i];
    permission_messages__permissions_type__topic_permissions__init(tg);
    permission_messages__permissions_type__topic_selector__init(&p->topic_sels[i]);
    p->topic_sels[i].kind_case =
        PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__KIND_TOPIC_NAME;
    p->topic_sels[i].topic_name = (char *)(i == 1 ? p->input_topic : chat);
    tg->role = !moderated ? PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadWrite
               : i == 0   ? PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadOnly
                          : PERMISSION_MESSAGES__TOPIC_ROLE__TopicWriteOnly;
    tg->cache_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__CACHE_CACHE_SELECTOR;
    tg->cache_selector = &p->cache_sels[1 + i];
    tg->topic_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__TOPIC_TOPIC_SELECTOR;
    tg->topic_selector = &p->topic_sels[i];
    p->grants[1 + i].kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_TOPIC_PERMISSIONS;
    p->grants[1 + i].topic_permissions = tg;
  }
  p->expl.n_permissions = 1 + n;
  p->expl.permissions = p->ptrs;
  p->perms.kind_case = PERMISSION_MESSAGES__PERMISSIONS__KIND_EXPLICIT;
  p->perms.explicit_ = &p->expl;
  return &p->perms;
}

#endif
