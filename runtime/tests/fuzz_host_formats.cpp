// fuzz_host_formats.cpp: fuzz target for the runtime's host-side readers (json.hpp and
// safetensors.hpp). Each input is parsed as JSON (and, when it parses, written back with
// JsonWriter and parsed again: the two trees must agree) and opened as a safetensors file
// image (every tensor's bytes are read, typed views built). The only acceptable outcomes are
// success, JsonError or FormatError; anything else (a crash, a sanitizer report, another
// exception, a round-trip mismatch) aborts.
//
// With libFuzzer (clang):
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iruntime/src
//     runtime/src/json.cpp runtime/src/safetensors.cpp runtime/tests/fuzz_host_formats.cpp -o fuzz_host
// Without it (g++), -DODYSSEY_FUZZ_MAIN adds a main() that runs the files named on the
// command line, or, given none, a deterministic random-mutation loop over built-in seeds:
//   g++ -std=c++17 -O1 -fsanitize=address,undefined -DODYSSEY_FUZZ_MAIN -Iruntime/src
//     runtime/src/json.cpp runtime/src/safetensors.cpp runtime/tests/fuzz_host_formats.cpp -o /tmp/fuzz_host
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "json.hpp"
#include "safetensors.hpp"

namespace {

using odyssey::Json;

void die(const char* what) {
  std::fprintf(stderr, "fuzz_host_formats: %s\n", what);
  std::abort();
}

// Writes j with w. Numbers: integers within int64/uint64 as integers, others as doubles
// (a number whose double overflows is written as its text would not be: use null).
void write(odyssey::JsonWriter& w, const Json& j) {
  switch (j.type()) {
    case Json::Type::Null: w.null(); return;
    case Json::Type::Bool: w.value(j.as_bool()); return;
    case Json::Type::String: w.value(j.as_string()); return;
    case Json::Type::Number:
      try {
        if (j.is_integer()) {
          if (j.number_text()[0] == '-') {
            w.value(j.as_int64());
          } else {
            w.value(j.as_uint64());
          }
          return;
        }
      } catch (const odyssey::JsonError&) {
      }
      try {
        w.value(j.as_double());
      } catch (const odyssey::JsonError&) {
        w.null();
      }
      return;
    case Json::Type::Array:
      w.begin_array();
      for (const Json& e : j.elems()) write(w, e);
      w.end_array();
      return;
    case Json::Type::Object:
      w.begin_object();
      for (const auto& m : j.items()) {
        w.key(m.first);
        write(w, m.second);
      }
      w.end_object();
      return;
  }
}

// Structural equality after a round trip (numbers compared as doubles where both convert).
bool same(const Json& a, const Json& b) {
  if (a.type() != b.type()) return a.is_number() && b.is_null();  // overflowing double → null
  switch (a.type()) {
    case Json::Type::Null: return true;
    case Json::Type::Bool: return a.as_bool() == b.as_bool();
    case Json::Type::String: return a.as_string() == b.as_string();
    case Json::Type::Number: {
      double x, y;
      try {
        x = a.as_double();
        y = b.as_double();
      } catch (const odyssey::JsonError&) {
        return true;
      }
      return x == y || (std::isnan(x) && std::isnan(y));
    }
    case Json::Type::Array: {
      if (a.elems().size() != b.elems().size()) return false;
      for (std::size_t i = 0; i < a.elems().size(); ++i) {
        if (!same(a.elems()[i], b.elems()[i])) return false;
      }
      return true;
    }
    case Json::Type::Object: {
      if (a.items().size() != b.items().size()) return false;
      for (std::size_t i = 0; i < a.items().size(); ++i) {
        if (a.items()[i].first != b.items()[i].first) return false;
        if (!same(a.items()[i].second, b.items()[i].second)) return false;
      }
      return true;
    }
  }
  return false;
}

void fuzz_json(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Json j;
  try {
    j = odyssey::parse_json(text);
  } catch (const odyssey::JsonError&) {
    return;
  }
  odyssey::JsonWriter w;
  write(w, j);
  Json k;
  try {
    k = odyssey::parse_json(w.str());
  } catch (const odyssey::JsonError& e) {
    std::fprintf(stderr, "%s\n%s\n", e.what(), w.str().c_str());
    die("JsonWriter output does not parse");
  }
  if (!same(j, k)) die("JSON round trip changed the value");
}

void fuzz_safetensors(const std::uint8_t* data, std::size_t size) {
  try {
    auto f = odyssey::SafetensorsFile::from_bytes(std::vector<std::uint8_t>(data, data + size), "fuzz");
    unsigned sum = 0;
    for (const odyssey::TensorInfo& t : f.tensors()) {
      const std::uint8_t* p = f.data(t);
      for (std::uint64_t i = 0; i < t.nbytes; ++i) sum += p[i];
      if (f.find(t.name) != &t) die("find() does not return the tensor");
      if (t.dtype == odyssey::DType::F32) {
        auto v = f.typed<float>(t.name, t.dtype, t.shape);
        for (float x : v) sum += static_cast<unsigned>(std::isnan(x));
      } else if (odyssey::dtype_size(t.dtype) == 8) {
        auto v = f.typed<std::uint64_t>(t.name, t.dtype);
        for (std::uint64_t x : v) sum += static_cast<unsigned>(x);
      }
    }
    for (const auto& kv : f.metadata()) sum += static_cast<unsigned>(kv.first.size() + kv.second.size());
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const odyssey::FormatError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    fuzz_json(data, size);
    fuzz_safetensors(data, size);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}

#ifdef ODYSSEY_FUZZ_MAIN
namespace {

std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

void run(const std::string& s) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) {
    for (int i = 1; i < argc; ++i) {
      std::string s = odyssey::read_small_file(argv[i], std::size_t{1} << 30);
      run(s);
    }
    std::printf("ran %d inputs\n", argc - 1);
    return 0;
  }
  const std::string hdr =
      "{\"__metadata__\":{\"kind\":\"w4a8\",\"m\":\"1\"},"
      "\"x\":{\"dtype\":\"I8\",\"shape\":[2,2],\"data_offsets\":[0,4]},"
      "\"s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
      "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[12,20]},"
      "\"e\":{\"dtype\":\"BF16\",\"shape\":[0,3],\"data_offsets\":[20,20]}}";
  const std::vector<std::string> seeds = {
      le64(hdr.size()) + hdr + std::string(20, '\x01'),
      R"({"a":[1,-0,2.5e-3,1e400,"\u00e9\ud83d\ude00",true,false,null,{"b":{}}],"c":"\n\t"})",
      R"({"version":1,"cases":[{"name":"w4a8_m1","file":"w4a8_m1.safetensors","kind":"w4a8"}]})",
  };
  const char tokens[] = "{}[]\":,0123456789-+.eE\\u \x00\xff\x80\xc3";
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  auto rnd = [&]() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const int iters = 200000;
  for (int it = 0; it < iters; ++it) {
    std::string s = seeds[static_cast<std::size_t>(rnd() % seeds.size())];
    int edits = 1 + static_cast<int>(rnd() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      std::size_t pos = static_cast<std::size_t>(rnd() % s.size());
      switch (rnd() % 4) {
        case 0: s[pos] = tokens[rnd() % (sizeof tokens - 1)]; break;
        case 1: s.insert(pos, 1, tokens[rnd() % (sizeof tokens - 1)]); break;
        case 2: s.erase(pos, 1 + rnd() % 3); break;
        default: s[pos] = static_cast<char>(rnd() & 0xFF); break;
      }
    }
    run(s);
  }
  std::printf("ran %d mutated inputs\n", iters);
  return 0;
}
#endif
