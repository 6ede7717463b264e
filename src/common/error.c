/* Error messages and names for the ETCDREG_E... space. */
#include "etcdreg/error.h"

const char *etcdreg_strerror(int err) {
  switch (err) {
  case 0: return "success";
#define ETCDREG_ERR_MSG_(name, value, msg) case value: return msg;
    ETCDREG_ERRNO_MAP(ETCDREG_ERR_MSG_)
#undef ETCDREG_ERR_MSG_
  default: return "unknown error code";
  }
}

const char *etcdreg_err_name(int err) {
  switch (err) {
  case 0: return "OK";
#define ETCDREG_ERR_NAME_(name, value, msg) case value: return "ETCDREG_" #name;
    ETCDREG_ERRNO_MAP(ETCDREG_ERR_NAME_)
#undef ETCDREG_ERR_NAME_
  default: return "ETCDREG_UNKNOWN_CODE";
  }
}
