/* etcdreg/error.h - the library's one error space.
 *
 * Every function that can fail returns 0 or a negative ETCDREG_E... code, and every
 * asynchronous callback receives one `int status` that is 0 or such a code. The codes are
 * stable: new ones are only ever added. They never overlap libuv's or errno's values.
 * When the failure came from the server, the gRPC status and the server's own message are
 * available to the callback as well (see etcdreg_request_grpc_status() and
 * etcdreg_request_message() in etcdreg/client.h). */
#ifndef ETCDREG_ERROR_H
#define ETCDREG_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define ETCDREG_EXTERN __declspec(dllexport)
#elif defined(__GNUC__)
#define ETCDREG_EXTERN __attribute__((visibility("default")))
#else
#define ETCDREG_EXTERN
#endif

/* X(name, value, message). Values are grouped: 1000s generic, 1100s etcd, 1200s
 * auth, 1300s registry, 1400s TLS. */
#define ETCDREG_ERRNO_MAP(X)                                                              \
  X(EINVAL, -1001, "invalid argument")                                                 \
  X(ENOMEM, -1002, "out of memory")                                                    \
  X(ETIMEDOUT, -1003, "deadline exceeded")                                             \
  X(EUNAVAILABLE, -1004, "server unavailable")                                         \
  X(ECANCELED, -1005, "operation cancelled")                                           \
  X(ECLOSED, -1006, "client is closed")                                                \
  X(ETOOLARGE, -1007, "message too large")                                             \
  X(EPROTO, -1008, "protocol error")                                                   \
  X(EINTERNAL, -1009, "internal server error")                                         \
  X(EUNIMPLEMENTED, -1010, "method not implemented by the server")                     \
  X(EUNKNOWN, -1011, "unknown error")                                                  \
  X(EOUTCOMEUNKNOWN, -1012, "outcome unknown: the request may or may not have been applied") \
  X(ERESOURCE, -1013, "server resources exhausted")                                    \
  X(EDNS, -1014, "host name could not be resolved")                                    \
  X(ENOTSUP, -1015, "not supported")                                                   \
  X(EBUSY, -1016, "resource busy")                                                     \
  X(ENOTFOUND, -1101, "not found")                                                     \
  X(ECOMPACTED, -1102, "required revision has been compacted")                         \
  X(EFUTUREREV, -1103, "required revision is a future revision")                       \
  X(ELEASENOTFOUND, -1104, "requested lease not found")                                \
  X(ELEASELOST, -1105, "lease lost")                                                   \
  X(ENOLEADER, -1106, "no leader")                                                     \
  X(ENOSPACE, -1107, "database space exceeded")                                        \
  X(ETOOMANYOPS, -1108, "too many operations in transaction")                          \
  X(EDUPKEY, -1109, "duplicate key in transaction")                                    \
  X(EAUTHFAILED, -1201, "authentication failed: invalid user name or password")        \
  X(EINVALIDTOKEN, -1202, "invalid or expired auth token")                             \
  X(EPERM, -1203, "permission denied")                                                 \
  X(EAUTHNOTENABLED, -1204, "authentication is not enabled")                           \
  X(ECONFLICT, -1301, "conflict: the value was changed concurrently")                  \
  X(EEXIST, -1302, "already exists")                                                   \
  X(EDECODE, -1303, "stored value could not be decoded")                               \
  X(ETLS, -1401, "TLS failure")                                                        \
  X(ETLSUNKNOWNCA, -1402, "TLS: certificate signed by an unknown authority")           \
  X(ETLSNAME, -1403, "TLS: certificate name does not match")                           \
  X(ETLSEXPIRED, -1404, "TLS: certificate expired or not yet valid")                   \
  X(ETLSCERTREJECTED, -1405, "TLS: client certificate rejected by the server")         \
  X(ETLSNOALPN, -1406, "TLS: server did not negotiate HTTP/2 (ALPN h2)")

typedef enum {
#define ETCDREG_ERR_ENUM_(name, value, msg) ETCDREG_##name = value,
  ETCDREG_ERRNO_MAP(ETCDREG_ERR_ENUM_)
#undef ETCDREG_ERR_ENUM_
  ETCDREG_ERRNO_LAST_ = -1999
} etcdreg_errno_t;

/* A static, human-readable message for `err` ("unknown error code" for values this
 * version does not know; "success" for 0). Never NULL, never to be freed. */
ETCDREG_EXTERN const char *etcdreg_strerror(int err);

/* The code's name without the prefix' underscore, e.g. "ETCDREG_ETIMEDOUT". Never NULL,
 * never to be freed; "ETCDREG_UNKNOWN_CODE" for values this version does not know. */
ETCDREG_EXTERN const char *etcdreg_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
