#include "framing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdreg/error.h"

void etcdreg_grpc_framer_init(etcdreg_grpc_framer_t *f, size_t max_len) {
  memset(f, 0, sizeof(*f));
  f->max_len = max_len;
}

void etcdreg_grpc_framer_reset(etcdreg_grpc_framer_t *f) {
  free(f->msg);
  size_t max = f->max_len;
  etcdreg_grpc_framer_init(f, max);
}

int etcdreg_grpc_framer_partial(const etcdreg_grpc_framer_t *f) {
  return f->prefix_have > 0;
}

size_t etcdreg_grpc_framer_pending_len(const etcdreg_grpc_framer_t *f) {
  return f->msg_len;
}

static size_t prefix_length(const uint8_t *p) {
  return ((size_t)p[1] << 24) | ((size_t)p[2] << 16) | ((size_t)p[3] << 8) | (size_t)p[4];
}

int etcdreg_grpc_framer_feed(etcdreg_grpc_framer_t *f, const uint8_t *data, size_t len,
                             etcdreg_grpc_msg_fn fn, void *ctx) {
  while (len > 0) {
    if (f->prefix_have < ETCDREG_GRPC_PREFIX) {
      /* Fast path: a whole prefix and message inside this chunk, handed over in place. */
      if (f->prefix_have == 0 && len >= ETCDREG_GRPC_PREFIX) {
        size_t mlen = prefix_length(data);
        if (data[0] != 0) return ETCDREG_EPROTO;
        if (mlen > f->max_len) {
          f->msg_len = mlen;
          return ETCDREG_ETOOLARGE;
        }
        if (len - ETCDREG_GRPC_PREFIX >= mlen) {
          int rv = fn(ctx, data + ETCDREG_GRPC_PREFIX, mlen);
          if (rv) return rv;
          data += ETCDREG_GRPC_PREFIX + mlen;
          len -= ETCDREG_GRPC_PREFIX + mlen;
          continue;
        }
      }
      size_t take = ETCDREG_GRPC_PREFIX - f->prefix_have;
      if (take > len) take = len;
      memcpy(f->prefix + f->prefix_have, data, take);
      f->prefix_have += take;
      data += take;
      len -= take;
      if (f->prefix_have < ETCDREG_GRPC_PREFIX) break;
      if (f->prefix[0] != 0) return ETCDREG_EPROTO;
      f->msg_len = prefix_length(f->prefix);
      if (f->msg_len > f->max_len) return ETCDREG_ETOOLARGE;
      f->msg_have = 0;
      if (f->msg_len > 0 && len >= f->msg_len) {
        /* The rest of the message is here in one piece: no copy. */
        size_t mlen = f->msg_len;
        f->prefix_have = 0;
        f->msg_len = 0;
        int rv = fn(ctx, data, mlen);
        if (rv) return rv;
        data += mlen;
        len -= mlen;
        continue;
      }
      if (f->msg_len == 0) {
        f->prefix_have = 0;
        int rv = fn(ctx, (const uint8_t *)"", 0);
        if (rv) return rv;
        continue;
      }
      f->msg = malloc(f->msg_len);
      if (!f->msg) return ETCDREG_ENOMEM;
    }
    size_t take = f->msg_len - f->msg_have;
    if (take > len) take = len;
    memcpy(f->msg + f->msg_have, data, take);
    f->msg_have += take;
    data += take;
    len -= take;
    if (f->msg_have == f->msg_len) {
      uint8_t *msg = f->msg;
      size_t mlen = f->msg_len;
      f->msg = NULL;
      f->msg_len = f->msg_have = 0;
      f->prefix_have = 0;
      int rv = fn(ctx, msg, mlen);
      free(msg);
      if (rv) return rv;
    }
  }
  return 0;
}

void etcdreg_grpc_write_prefix(uint8_t out[ETCDREG_GRPC_PREFIX], size_t len) {
  out[0] = 0;
  out[1] = (uint8_t)(len >> 24);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 8);
  out[4] = (uint8_t)len;
}

size_t etcdreg_grpc_timeout_encode(uint64_t ms, char *out) {
  static const struct { char unit; uint64_t ms; } units[] = {
      {'m', 1}, {'S', 1000}, {'M', 60000}, {'H', 3600000}};
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    uint64_t v = ms / units[i].ms + (ms % units[i].ms != 0); /* rounds up, no overflow */
    if (v <= 99999999ULL) return (size_t)snprintf(out, 16, "%llu%c", (unsigned long long)v, units[i].unit);
  }
  return (size_t)snprintf(out, 16, "99999999H");
}

int64_t etcdreg_grpc_timeout_decode(const char *s, size_t len) {
  if (len < 2 || len > 9) return -1;
  uint64_t v = 0;
  for (size_t i = 0; i + 1 < len; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  switch (s[len - 1]) {
  case 'H': return (int64_t)(v * 3600000);
  case 'M': return (int64_t)(v * 60000);
  case 'S': return (int64_t)(v * 1000);
  case 'm': return (int64_t)v;
  case 'u': return (int64_t)((v + 999) / 1000);
  case 'n': return (int64_t)((v + 999999) / 1000000);
  default: return -1;
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char *etcdreg_grpc_percent_decode(const char *in, size_t len) {
  char *out = malloc(len + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    if (in[i] == '%' && i + 2 < len + 0 && i + 2 <= len - 1) {
      int hi = hexval(in[i + 1]), lo = hexval(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out[o++] = in[i];
  }
  out[o] = '\0';
  return out;
}

int etcdreg_grpc_status_from_http(int http_status) {
  switch (http_status) {
  case 400: return ETCDREG_GRPC_INTERNAL;
  case 401: return ETCDREG_GRPC_UNAUTHENTICATED;
  case 403: return ETCDREG_GRPC_PERMISSION_DENIED;
  case 404: return ETCDREG_GRPC_UNIMPLEMENTED;
  case 429:
  case 502:
  case 503:
  case 504: return ETCDREG_GRPC_UNAVAILABLE;
  case 431: return ETCDREG_GRPC_INTERNAL;
  default: return ETCDREG_GRPC_UNKNOWN;
  }
}
