// report.hpp: the closing report of every `odyssey-rt test ...` command: one JSON object on
// stdout ({"ok": true, "cases": [...], "passed": N, "failed": M}; docs/gemm-cases.md), the count
// on stderr, and exit status 1 when a case failed. Each command writes its own fields per case.
#pragma once

#include <cstdio>
#include <iostream>
#include <vector>

#include "json.hpp"

namespace odyssey {

// fields(w, r) writes case r's fields inside its object; r.passed says whether it passed.
template <class Result, class Fields>
int report_cases(const char* what, const std::vector<Result>& results, Fields fields) {
  int passed = 0, failed = 0;
  JsonWriter w;
  w.begin_object();
  w.field("ok", true);
  w.key("cases").begin_array();
  for (const auto& r : results) {
    (r.passed ? passed : failed)++;
    w.begin_object();
    fields(w, r);
    w.end_object();
  }
  w.end_array();
  w.field("passed", passed);
  w.field("failed", failed);
  w.end_object();
  std::cout << w.str() << std::endl;
  std::fprintf(stderr, "%s: %d passed, %d failed\n", what, passed, failed);
  return failed ? 1 : 0;
}

}  // namespace odyssey
