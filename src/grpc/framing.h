/* gRPC length-prefixed message framing and small wire helpers (no I/O). */
#ifndef ETCDREG_GRPC_FRAMING_H
#define ETCDREG_GRPC_FRAMING_H

#include <stddef.h>
#include <stdint.h>

#define ETCDREG_GRPC_PREFIX 5

/* Reassembles messages from DATA chunks of any size: a message may span many chunks,
 * a chunk may hold many messages, and the 5-byte prefix itself may be split. A message
 * that lies whole inside one chunk is handed over without a copy. */
typedef struct {
  uint8_t prefix[ETCDREG_GRPC_PREFIX];
  size_t prefix_have;
  uint8_t *msg;        /* partial message being collected, or NULL */
  size_t msg_len, msg_have;
  size_t max_len;      /* receive limit, checked from the prefix before allocating */
} etcdreg_grpc_framer_t;

/* Called for each whole message; `msg` is borrowed. Return 0 to go on, or a negative
 * code to stop feeding (returned from etcdreg_grpc_framer_feed). */
typedef int (*etcdreg_grpc_msg_fn)(void *ctx, const uint8_t *msg, size_t len);

void etcdreg_grpc_framer_init(etcdreg_grpc_framer_t *f, size_t max_len);
void etcdreg_grpc_framer_reset(etcdreg_grpc_framer_t *f);
/* 0, ETCDREG_ETOOLARGE (declared length over the limit), ETCDREG_EPROTO (compressed flag,
 * which we never negotiate), ETCDREG_ENOMEM, or what `fn` returned. */
int etcdreg_grpc_framer_feed(etcdreg_grpc_framer_t *f, const uint8_t *data, size_t len,
                             etcdreg_grpc_msg_fn fn, void *ctx);
/* Nonzero while a message is half received (a stream ending now is truncated). */
int etcdreg_grpc_framer_partial(const etcdreg_grpc_framer_t *f);
/* The declared length of the message that failed the limit, for error messages. */
size_t etcdreg_grpc_framer_pending_len(const etcdreg_grpc_framer_t *f);

/* Writes the 5-byte prefix for an uncompressed message of `len` bytes. */
void etcdreg_grpc_write_prefix(uint8_t out[ETCDREG_GRPC_PREFIX], size_t len);

/* grpc-timeout value for `ms` milliseconds: at most 8 digits and a unit, rounded up to
 * the next unit when milliseconds do not fit ("100m", "12345678m", "100000S", ...).
 * `out` must hold 16 bytes. Returns the length. */
size_t etcdreg_grpc_timeout_encode(uint64_t ms, char *out);
/* Parses a grpc-timeout value into ms (rounded up); -1 when malformed. */
int64_t etcdreg_grpc_timeout_decode(const char *s, size_t len);

/* Percent-decodes a grpc-message value. Malformed escapes are kept as they are (the spec
 * says never to fail or drop the message). Returns a malloc'd NUL-terminated string or
 * NULL when out of memory. */
char *etcdreg_grpc_percent_decode(const char *in, size_t len);

/* gRPC status when grpc-status is missing, from the HTTP status (http-grpc-status-mapping). */
int etcdreg_grpc_status_from_http(int http_status);

/* gRPC status codes. */
enum {
  ETCDREG_GRPC_OK = 0,
  ETCDREG_GRPC_CANCELLED = 1,
  ETCDREG_GRPC_UNKNOWN = 2,
  ETCDREG_GRPC_INVALID_ARGUMENT = 3,
  ETCDREG_GRPC_DEADLINE_EXCEEDED = 4,
  ETCDREG_GRPC_NOT_FOUND = 5,
  ETCDREG_GRPC_ALREADY_EXISTS = 6,
  ETCDREG_GRPC_PERMISSION_DENIED = 7,
  ETCDREG_GRPC_RESOURCE_EXHAUSTED = 8,
  ETCDREG_GRPC_FAILED_PRECONDITION = 9,
  ETCDREG_GRPC_ABORTED = 10,
  ETCDREG_GRPC_OUT_OF_RANGE = 11,
  ETCDREG_GRPC_UNIMPLEMENTED = 12,
  ETCDREG_GRPC_INTERNAL = 13,
  ETCDREG_GRPC_UNAVAILABLE = 14,
  ETCDREG_GRPC_DATA_LOSS = 15,
  ETCDREG_GRPC_UNAUTHENTICATED = 16
};

#endif
