// status.cpp: per-thread last-error message behind ody_last_error().
#include "status.hpp"

namespace odyssey {
namespace {
thread_local std::string last_error;
}

ody_status fail(ody_status s, const std::string& msg) {
  last_error = msg;
  return s;
}

void clear_error() { last_error.clear(); }

}  // namespace odyssey

extern "C" const char* ody_last_error(void) { return odyssey::last_error.c_str(); }
extern "C" const char* ody_version(void) { return ODY_RUNTIME_VERSION; }
