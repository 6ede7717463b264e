/* etcd's errors as ETCDREG codes: the gRPC code first, the message only to split cases
 * that share a code (etcd's rpctypes/error.go). */
#include <string.h>

#include "../grpc/framing.h"
#include "internal.h"

static int has(const char *message, const char *needle) {
  return message && strstr(message, needle) != NULL;
}

int etcdreg__map_grpc_status(int code, const char *m) {
  /* etcd 3.4 sends this one with code 2 (it is not in its error table). */
  if (code != ETCDREG_GRPC_OK && has(m, "too many requests")) return ETCDREG_ERESOURCE;
  switch (code) {
  case ETCDREG_GRPC_OK: return 0;
  case ETCDREG_GRPC_CANCELLED: return ETCDREG_ECANCELED;
  case ETCDREG_GRPC_DEADLINE_EXCEEDED: return ETCDREG_ETIMEDOUT;
  case ETCDREG_GRPC_INVALID_ARGUMENT:
    if (has(m, "authentication failed")) return ETCDREG_EAUTHFAILED;
    if (has(m, "user name is empty") || has(m, "revision of auth store is old"))
      return ETCDREG_EINVALIDTOKEN;
    if (has(m, "request is too large")) return ETCDREG_ETOOLARGE;
    if (has(m, "too many operations in txn request")) return ETCDREG_ETOOMANYOPS;
    if (has(m, "duplicate key given in txn request")) return ETCDREG_EDUPKEY;
    if (has(m, "authentication is not enabled")) return ETCDREG_EAUTHNOTENABLED;
    return ETCDREG_EINVAL;
  case ETCDREG_GRPC_NOT_FOUND:
    if (has(m, "lease not found")) return ETCDREG_ELEASENOTFOUND;
    return ETCDREG_ENOTFOUND;
  case ETCDREG_GRPC_ALREADY_EXISTS: return ETCDREG_EEXIST;
  case ETCDREG_GRPC_PERMISSION_DENIED: return ETCDREG_EPERM;
  case ETCDREG_GRPC_RESOURCE_EXHAUSTED:
    if (has(m, "database space exceeded")) return ETCDREG_ENOSPACE;
    if (has(m, "larger than max") || has(m, "message too large")) return ETCDREG_ETOOLARGE;
    return ETCDREG_ERESOURCE;
  case ETCDREG_GRPC_FAILED_PRECONDITION:
    if (has(m, "already exists")) return ETCDREG_EEXIST; /* "lease already exists" */
    return ETCDREG_EINVAL;
  case ETCDREG_GRPC_ABORTED: return ETCDREG_ECONFLICT;
  case ETCDREG_GRPC_OUT_OF_RANGE:
    if (has(m, "compacted")) return ETCDREG_ECOMPACTED;
    if (has(m, "future revision")) return ETCDREG_EFUTUREREV;
    return ETCDREG_EINVAL;
  case ETCDREG_GRPC_UNIMPLEMENTED: return ETCDREG_EUNIMPLEMENTED;
  case ETCDREG_GRPC_INTERNAL:
  case ETCDREG_GRPC_DATA_LOSS: return ETCDREG_EINTERNAL;
  case ETCDREG_GRPC_UNAVAILABLE:
    if (has(m, "no leader")) return ETCDREG_ENOLEADER;
    return ETCDREG_EUNAVAILABLE;
  case ETCDREG_GRPC_UNAUTHENTICATED: return ETCDREG_EINVALIDTOKEN;
  default: return ETCDREG_EUNKNOWN;
  }
}
