// test_host_formats.cpp: standalone test of the runtime's host-side readers (json.hpp,
// safetensors.hpp). No framework: main() runs every check, prints the failures and returns
// non-zero if there was any. It writes small safetensors files (valid ones in every dtype,
// empty and scalar tensors, metadata, misaligned data, sharded folders) into a temporary
// directory, reads them back through both the mmap and the read path, and feeds a table of
// malformed inputs that must each fail with FormatError/JsonError naming the problem. Meant
// to run under -fsanitize=address,undefined:
//   g++ -std=c++17 -Wall -Wextra -Werror -O2 -fsanitize=address,undefined -Iruntime/src
//     runtime/src/json.cpp runtime/src/safetensors.cpp runtime/tests/test_host_formats.cpp
//     -o /tmp/thf && /tmp/thf
#include <clocale>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "json.hpp"
#include "safetensors.hpp"

using namespace odyssey;

namespace {

int g_checks = 0;
int g_failures = 0;

#define CHECK(cond)                                                         \
  do {                                                                      \
    ++g_checks;                                                             \
    if (!(cond)) {                                                          \
      ++g_failures;                                                         \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                       \
  } while (0)

void fail_msg(const std::string& what, const std::string& msg) {
  ++g_failures;
  std::fprintf(stderr, "FAIL %s: %s\n", what.c_str(), msg.c_str());
}

// Runs fn, which must throw E with a what() starting with prefix and containing expect.
template <class E>
void expect_throw(const std::string& what, const std::string& expect, const std::function<void()>& fn,
                  const std::string& prefix = "") {
  ++g_checks;
  try {
    fn();
  } catch (const E& e) {
    const std::string msg = e.what();
    if (msg.find(expect) == std::string::npos || msg.compare(0, prefix.size(), prefix) != 0) {
      fail_msg(what, "message \"" + msg + "\" lacks \"" + prefix + "..." + expect + "\"");
    }
    return;
  } catch (const std::exception& e) {
    fail_msg(what, std::string("wrong exception type: ") + e.what());
    return;
  }
  fail_msg(what, "no exception (expected one containing \"" + expect + "\")");
}

// ---------------------------------------------------------------------------------------
// Temporary files

std::string g_tmp;
std::vector<std::string> g_created_files, g_created_dirs;

std::string tmp_path(const std::string& rel) { return g_tmp + "/" + rel; }

void write_file(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::perror(path.c_str());
    std::exit(2);
  }
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
    std::perror(path.c_str());
    std::exit(2);
  }
  std::fclose(f);
  g_created_files.push_back(path);
}

std::string make_dir(const std::string& rel) {
  std::string p = tmp_path(rel);
  if (::mkdir(p.c_str(), 0700) != 0) {
    std::perror(p.c_str());
    std::exit(2);
  }
  g_created_dirs.push_back(p);
  return p;
}

void cleanup() {
  for (auto it = g_created_files.rbegin(); it != g_created_files.rend(); ++it) ::unlink(it->c_str());
  for (auto it = g_created_dirs.rbegin(); it != g_created_dirs.rend(); ++it) ::rmdir(it->c_str());
  ::rmdir(g_tmp.c_str());
}

// ---------------------------------------------------------------------------------------
// Building safetensors images

std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// 8-byte length, header, data.
std::string image(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

struct Spec {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

// A valid file: header written with JsonWriter, padded with spaces so that the data section
// starts at (8 + header) % 8 == misalign.
std::string build(const std::vector<Spec>& specs, const std::vector<std::pair<std::string, std::string>>& meta,
                  std::size_t misalign = 0) {
  JsonWriter w;
  w.begin_object();
  if (!meta.empty()) {
    w.key("__metadata__").begin_object();
    for (const auto& kv : meta) w.field(kv.first, kv.second);
    w.end_object();
  }
  std::string data;
  for (const Spec& s : specs) {
    w.key(s.name).begin_object();
    w.field("dtype", s.dtype);
    w.key("shape").begin_array();
    for (auto d : s.shape) w.value(d);
    w.end_array();
    w.key("data_offsets").begin_array().value(data.size()).value(data.size() + s.bytes.size()).end_array();
    w.end_object();
    data += s.bytes;
  }
  w.end_object();
  std::string header = w.str();
  while ((8 + header.size()) % 8 != misalign) header += ' ';
  return image(header, data);
}

std::string bytes_of(const void* p, std::size_t n) { return std::string(static_cast<const char*>(p), n); }

std::vector<std::uint8_t> vec(const std::string& s) { return std::vector<std::uint8_t>(s.begin(), s.end()); }

// ---------------------------------------------------------------------------------------
// JSON tests

void test_json_basic() {
  Json j = parse_json(R"( {"b": [1, 2.5, "x", true, false, null, {}], "a": {"k": "v"}, "c": []} )");
  CHECK(j.is_object());
  CHECK(j.items().size() == 3);
  CHECK(j.items()[0].first == "b");  // insertion order kept
  CHECK(j.items()[1].first == "a");
  CHECK(j.items()[2].first == "c");
  const Json* b = j.find("b");
  CHECK(b != nullptr && b->is_array() && b->elems().size() == 7);
  CHECK(b->elems()[0].as_int64() == 1);
  CHECK(b->elems()[1].as_double() == 2.5);
  CHECK(!b->elems()[1].is_integer());
  CHECK(b->elems()[2].as_string() == "x");
  CHECK(b->elems()[3].as_bool() == true);
  CHECK(b->elems()[4].as_bool() == false);
  CHECK(b->elems()[5].is_null());
  CHECK(b->elems()[6].is_object() && b->elems()[6].size() == 0);
  CHECK(j.find("a")->find("k")->as_string() == "v");
  CHECK(j.find("zz") == nullptr);
  CHECK(j.find("c")->elems().empty());
  expect_throw<JsonError>("as_string on number", "expected a string, found number",
                          [&] { (void)b->elems()[0].as_string(); });
  expect_throw<JsonError>("find on array", "expected an object", [&] { (void)b->find("x"); });
  expect_throw<JsonError>("as_int64 of 2.5", "expected an integer", [&] { (void)b->elems()[1].as_int64(); });

  // Strings and escapes.
  Json s = parse_json(R"("a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00\u0000z")");
  std::string want = std::string("a\"b\\c/d\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80") + std::string(1, '\0') + "z";
  CHECK(s.as_string() == want);
  CHECK(parse_json("\"\xE2\x82\xAC \xF0\x9F\x98\x80\"").as_string() == "\xE2\x82\xAC \xF0\x9F\x98\x80");

  // Numbers.
  CHECK(parse_json("9223372036854775807").as_int64() == std::numeric_limits<std::int64_t>::max());
  CHECK(parse_json("-9223372036854775808").as_int64() == std::numeric_limits<std::int64_t>::min());
  expect_throw<JsonError>("int64 max+1", "out of the int64 range", [] { (void)parse_json("9223372036854775808").as_int64(); });
  expect_throw<JsonError>("int64 min-1", "out of the int64 range", [] { (void)parse_json("-9223372036854775809").as_int64(); });
  CHECK(parse_json("9223372036854775808").as_uint64() == 9223372036854775808ull);
  CHECK(parse_json("18446744073709551615").as_uint64() == std::numeric_limits<std::uint64_t>::max());
  expect_throw<JsonError>("uint64 overflow", "out of the uint64 range", [] { (void)parse_json("18446744073709551616").as_uint64(); });
  expect_throw<JsonError>("uint64 negative", "negative", [] { (void)parse_json("-1").as_uint64(); });
  expect_throw<JsonError>("huge int", "out of the int64 range", [] { (void)parse_json("123456789012345678901234567890").as_int64(); });
  CHECK(parse_json("-0").as_int64() == 0);
  CHECK(parse_json("-0").as_uint64() == 0);
  {
    double d = parse_json("-0").as_double();
    CHECK(d == 0.0 && std::signbit(d));
    double e = parse_json("-0.0").as_double();
    CHECK(e == 0.0 && std::signbit(e));
  }
  expect_throw<JsonError>("1e400", "out of the double range", [] { (void)parse_json("1e400").as_double(); });
  expect_throw<JsonError>("-1e400", "out of the double range", [] { (void)parse_json("-1e400").as_double(); });
  CHECK(parse_json("1e400").number_text() == "1e400");  // parsing keeps the text
  CHECK(parse_json("1e-400").as_double() == 0.0);
  CHECK(std::signbit(parse_json("-1e-400").as_double()));
  CHECK(parse_json("4.9406564584124654e-324").as_double() == std::numeric_limits<double>::denorm_min());
  CHECK(parse_json("1.7976931348623157e308").as_double() == std::numeric_limits<double>::max());
  CHECK(parse_json("0.1").as_double() == 0.1);
  CHECK(parse_json("1E+2").as_double() == 100.0);
  CHECK(!parse_json("1E+2").is_integer());
  expect_throw<JsonError>("1e2 as int", "expected an integer", [] { (void)parse_json("1e2").as_int64(); });
  expect_throw<JsonError>("1.0 as int", "expected an integer", [] { (void)parse_json("1.0").as_uint64(); });
  CHECK(parse_json(" \t\r\n7 \n").as_int64() == 7);

  // Depth: 64 levels parse, 65 do not.
  std::string deep64 = std::string(64, '[') + std::string(64, ']');
  CHECK(parse_json(deep64).is_array());
  expect_throw<JsonError>("depth 65", "nesting deeper than 64", [] {
    (void)parse_json(std::string(65, '[') + std::string(65, ']'));
  });
  // Limits.
  JsonLimits lim;
  lim.max_elements = 3;
  CHECK(parse_json("[1,2]", lim).elems().size() == 2);
  expect_throw<JsonError>("max elements", "more than 3 values", [&] { (void)parse_json("[1,2,3]", lim); });
  lim = JsonLimits{};
  lim.max_input_bytes = 4;
  expect_throw<JsonError>("max input", "over the limit of 4", [&] { (void)parse_json("[1,2]", lim); });
  lim.max_depth = 2;
  lim.max_input_bytes = 100;
  CHECK(parse_json("[[1]]", lim).is_array());
  expect_throw<JsonError>("custom depth", "nesting deeper than 2", [&] { (void)parse_json("[[[1]]]", lim); });
}

void test_json_errors() {
  struct Case {
    std::string text;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"", "empty input"},
      {"   ", "only whitespace"},
      {"{", "expected a key"},
      {"[1,]", "expected a value"},
      {"{\"a\":1,}", "expected a string key"},
      {"[1 2]", "expected ',' or ']'"},
      {"{\"a\" 1}", "expected ':'"},
      {"{\"a\":1 \"b\":2}", "expected ',' or '}'"},
      {"{\"a\":1,\"a\":2}", "duplicate key \"a\""},
      {"{\"b\":1,\"a\":{\"x\":1,\"y\":2,\"x\":3}}", "offset 24: duplicate key \"x\""},
      {"01", "leading zero"},
      {"-", "expected a digit"},
      {"1.", "digit after '.'"},
      {".5", "expected a value"},
      {"+1", "expected a value"},
      {"1e", "digit in the exponent"},
      {"1e+", "digit in the exponent"},
      {"NaN", "expected a value"},
      {"Infinity", "expected a value"},
      {"-Infinity", "expected a digit"},
      {"tru", "expected 'true'"},
      {"nul", "expected 'null'"},
      {"[] []", "after the JSON value"},
      {"{}x", "after the JSON value"},
      {"\xEF\xBB\xBF{}", "expected a value"},  // BOM
      {"// c\n{}", "expected a value"},
      {"\"abc", "unterminated string"},
      {"\"a\tb\"", "unescaped control character"},
      {"\"\\x\"", "invalid escape"},
      {"\"\\u12\"", "invalid hex digit"},
      {"\"\\u12", "truncated \\u escape"},
      {"\"\\ud800\"", "lone high surrogate"},
      {"\"\\ud800\\u0041\"", "lone high surrogate"},
      {"\"\\udc00\"", "lone low surrogate"},
      {"\"\\ud800\\ud800\"", "lone high surrogate"},
      {"\"\xC0\x80\"", "invalid UTF-8"},           // overlong NUL
      {"\"\xE0\x80\xAF\"", "invalid UTF-8"},       // overlong '/'
      {"\"\xED\xA0\x80\"", "invalid UTF-8"},       // encoded surrogate
      {"\"\xF4\x90\x80\x80\"", "invalid UTF-8"},   // > U+10FFFF
      {"\"\xF8\x88\x80\x80\x80\"", "invalid UTF-8"},
      {"\"\x80\"", "invalid UTF-8"},               // stray continuation
      {"\"\xE2\x82\"", "invalid UTF-8"},           // truncated
      {"\"\xE2\x82", "invalid UTF-8"},
      {"\xC3\xA9", "expected a value"},            // non-ASCII outside a string
      {std::string("[1,\0]", 5), "expected a value"},
      {"'a'", "expected a value"},
      {"[\"a\":1]", "expected ',' or ']'"},
  };
  for (const Case& c : cases) {
    expect_throw<JsonError>("parse_json(" + quote_for_message(c.text) + ")", c.expect, [&] { (void)parse_json(c.text); });
  }
  // The offset is that of the problem.
  try {
    (void)parse_json("[1, 2, x]");
    fail_msg("offset", "no exception");
  } catch (const JsonError& e) {
    CHECK(e.offset() == 7);
    CHECK(std::string(e.what()).rfind("offset 7: ", 0) == 0);
  }
  // A large object with a duplicate at the end (sorting, not quadratic).
  std::string big = "{";
  for (int i = 0; i < 20000; ++i) big += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  big += "\"k123\":0}";
  expect_throw<JsonError>("big duplicate", "duplicate key \"k123\"", [&] { (void)parse_json(big); });
}

void test_json_writer() {
  {
    JsonWriter w;
    w.begin_object()
        .field("ok", true)
        .field("n", 3)
        .field("neg", -7)
        .field("u", std::uint64_t{18446744073709551615ull})
        .field("i64min", std::numeric_limits<std::int64_t>::min())
        .field("s", std::string("x"))
        .field("c", "lit")
        .key("null")
        .null()
        .key("arr")
        .begin_array()
        .value(1.5)
        .value(false)
        .begin_object()
        .end_object()
        .begin_array()
        .end_array()
        .end_array()
        .end_object();
    CHECK(w.done());
    CHECK(w.str() ==
          "{\"ok\":true,\"n\":3,\"neg\":-7,\"u\":18446744073709551615,\"i64min\":-9223372036854775808,"
          "\"s\":\"x\",\"c\":\"lit\",\"null\":null,\"arr\":[1.5,false,{},[]]}");
    Json back = parse_json(w.str());
    CHECK(back.find("u")->as_uint64() == 18446744073709551615ull);
    CHECK(back.find("i64min")->as_int64() == std::numeric_limits<std::int64_t>::min());
  }
  {
    // Escapes: every control character, quote, backslash, non-ASCII, invalid bytes.
    std::string s;
    for (int c = 0; c < 0x20; ++c) s += static_cast<char>(c);
    s += "\"\\/\x7F \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
    JsonWriter w;
    w.begin_array().value(s).value("bad\xFF\xC3(").end_array();
    const std::string& out = w.str();
    CHECK(out.find("\\u0000") != std::string::npos);
    CHECK(out.find("\\u001f") != std::string::npos);
    CHECK(out.find("\\n") != std::string::npos && out.find("\\t") != std::string::npos);
    CHECK(out.find("\\\"\\\\/") != std::string::npos);
    CHECK(out.find("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80") != std::string::npos);  // UTF-8 passed through
    for (char c : out) CHECK(static_cast<unsigned char>(c) >= 0x20);
    Json back = parse_json(out);
    CHECK(back.elems()[0].as_string() == s);
    CHECK(back.elems()[1].as_string() == "bad\xEF\xBF\xBD\xEF\xBF\xBD(");  // U+FFFD twice
    CHECK(is_valid_utf8(back.elems()[1].as_string()));
  }
  {
    // Doubles round-trip; non-finite become null.
    const double vals[] = {0.1, -0.0, 1e300, -2.5e-308, 4.9406564584124654e-324, 1.0 / 3.0,
                           std::numeric_limits<double>::max(), 123456789.0, 1.0};
    JsonWriter w;
    w.begin_array();
    for (double d : vals) w.value(d);
    w.value(std::nan("")).value(std::numeric_limits<double>::infinity()).value(-std::numeric_limits<double>::infinity());
    w.value(1.5f);
    w.end_array();
    Json back = parse_json(w.str());
    std::size_t i = 0;
    for (double d : vals) {
      double r = back.elems()[i++].as_double();
      CHECK(r == d && std::signbit(r) == std::signbit(d));
    }
    CHECK(back.elems()[i++].is_null());
    CHECK(back.elems()[i++].is_null());
    CHECK(back.elems()[i++].is_null());
    CHECK(back.elems()[i++].as_double() == 1.5);
    CHECK(w.str().find("0.10000000000000001") != std::string::npos);
  }
  {
    JsonWriter w;
    w.value("top");
    CHECK(w.str() == "\"top\"");
  }
  // Misuse.
  expect_throw<std::logic_error>("value without key", "without a key", [] {
    JsonWriter w;
    w.begin_object().value(1);
  });
  expect_throw<std::logic_error>("key in array", "key outside an object", [] {
    JsonWriter w;
    w.begin_array().key("k");
  });
  expect_throw<std::logic_error>("two keys", "two keys", [] {
    JsonWriter w;
    w.begin_object().key("a").key("b");
  });
  expect_throw<std::logic_error>("end_object after key", "after a key", [] {
    JsonWriter w;
    w.begin_object().key("a").end_object();
  });
  expect_throw<std::logic_error>("end_array in object", "end_array without", [] {
    JsonWriter w;
    w.begin_object().end_array();
  });
  expect_throw<std::logic_error>("end_object in array", "end_object without", [] {
    JsonWriter w;
    w.begin_array().end_object();
  });
  expect_throw<std::logic_error>("two roots", "after the top-level value", [] {
    JsonWriter w;
    w.value(1).value(2);
  });
  expect_throw<std::logic_error>("unfinished", "unfinished", [] {
    JsonWriter w;
    w.begin_array();
    (void)w.str();
  });
  expect_throw<std::logic_error>("empty", "unfinished", [] {
    JsonWriter w;
    (void)w.str();
  });
}

// ---------------------------------------------------------------------------------------
// Safetensors: valid files

std::vector<Spec> all_dtype_specs() {
  std::vector<Spec> s;
  double f64[3] = {1.5, -2.25, 1e300};
  float f32[4] = {0.5f, -1.0f, 3.25f, 1e-30f};
  std::uint16_t f16[2] = {0x3C00, 0xC000};
  std::uint16_t bf16[3] = {0x3F80, 0x4000, 0x0000};
  std::int64_t i64[2] = {std::numeric_limits<std::int64_t>::min(), 42};
  std::int32_t i32[3] = {-1, 7, std::numeric_limits<std::int32_t>::max()};
  std::int16_t i16[2] = {-300, 300};
  std::int8_t i8[5] = {-127, -1, 0, 1, 127};
  std::uint8_t u8[3] = {0, 128, 255};
  std::uint8_t bl[2] = {0, 1};
  std::uint8_t e4[2] = {0x38, 0xB8};
  std::uint8_t e5[1] = {0x3C};
  s.push_back({"f64", "F64", {3}, bytes_of(f64, sizeof f64)});
  s.push_back({"f32", "F32", {2, 2}, bytes_of(f32, sizeof f32)});
  s.push_back({"f16", "F16", {2}, bytes_of(f16, sizeof f16)});
  s.push_back({"bf16", "BF16", {1, 3}, bytes_of(bf16, sizeof bf16)});
  s.push_back({"i64", "I64", {2}, bytes_of(i64, sizeof i64)});
  s.push_back({"i32", "I32", {3}, bytes_of(i32, sizeof i32)});
  s.push_back({"i16", "I16", {2}, bytes_of(i16, sizeof i16)});
  s.push_back({"i8", "I8", {5}, bytes_of(i8, sizeof i8)});
  s.push_back({"u8", "U8", {3, 1}, bytes_of(u8, sizeof u8)});
  s.push_back({"bool", "BOOL", {2}, bytes_of(bl, sizeof bl)});
  s.push_back({"e4m3", "F8_E4M3", {2}, bytes_of(e4, sizeof e4)});
  s.push_back({"e5m2", "F8_E5M2", {1, 1, 1}, bytes_of(e5, sizeof e5)});
  s.push_back({"empty", "F32", {0}, ""});
  s.push_back({"empty3", "I16", {2, 0, 3}, ""});
  float sc = 7.0f;
  s.push_back({"scalar", "F32", {}, bytes_of(&sc, sizeof sc)});
  s.push_back({"name with \"quotes\" and \xC3\xA9", "U8", {1}, "z"});
  return s;
}

void check_all_dtypes(const SafetensorsFile& f, const std::string& label) {
  const std::vector<Spec> specs = all_dtype_specs();
  CHECK(f.tensors().size() == specs.size());
  for (const Spec& s : specs) {
    const TensorInfo* t = f.find(s.name);
    CHECK(t != nullptr);
    if (t == nullptr) {
      fail_msg(label, "missing " + s.name);
      continue;
    }
    CHECK(std::string(dtype_name(t->dtype)) == s.dtype);
    CHECK(t->shape == s.shape);
    CHECK(t->nbytes == s.bytes.size());
    CHECK(std::memcmp(f.data(*t), s.bytes.data(), s.bytes.size()) == 0);
  }
  auto f64 = f.typed<double>("f64", DType::F64, {3});
  CHECK(f64.size() == 3 && f64[0] == 1.5 && f64[1] == -2.25 && f64[2] == 1e300);
  auto f32 = f.typed<float>("f32", DType::F32, {2, -1});
  CHECK(f32.size() == 4 && f32[2] == 3.25f);
  auto i64 = f.typed<std::int64_t>("i64", DType::I64, {2});
  CHECK(i64[0] == std::numeric_limits<std::int64_t>::min() && i64[1] == 42);
  auto i32 = f.typed<std::int32_t>("i32", DType::I32);
  CHECK(i32.size() == 3 && i32[2] == std::numeric_limits<std::int32_t>::max());
  auto i8 = f.typed<std::int8_t>("i8", DType::I8, {5});
  CHECK(i8[0] == -127 && i8[4] == 127);
  auto bf = f.typed<std::uint16_t>("bf16", DType::BF16, {1, 3});
  CHECK(bf[0] == 0x3F80);
  auto e = f.typed<float>("empty", DType::F32, {0});
  CHECK(e.empty() && e.size() == 0);
  auto e3 = f.typed<std::int16_t>("empty3", DType::I16, {2, 0, 3});
  CHECK(e3.empty());
  auto sc = f.typed<float>("scalar", DType::F32, {});
  CHECK(sc.size() == 1 && sc[0] == 7.0f && sc.shape().empty());
  CHECK(f.find("nope") == nullptr);
  expect_throw<FormatError>(label + " typed missing", "tensor \"nope\": not found",
                            [&] { (void)f.typed<float>("nope", DType::F32, {1}); });
  expect_throw<FormatError>(label + " typed dtype", "tensor \"f32\": dtype F32, expected F16",
                            [&] { (void)f.typed<std::uint16_t>("f32", DType::F16, {2, 2}); });
  expect_throw<FormatError>(label + " typed shape", "tensor \"f32\": shape [2, 2], expected [2, 3]",
                            [&] { (void)f.typed<float>("f32", DType::F32, {2, 3}); });
  expect_throw<FormatError>(label + " typed rank", "shape [2, 2], expected [4]",
                            [&] { (void)f.typed<float>("f32", DType::F32, {4}); });
  expect_throw<std::invalid_argument>(label + " typed sizeof", "sizeof(T) = 8",
                                      [&] { (void)f.typed<double>("f32", DType::F32, {2, 2}); });
  auto m = f.metadata();
  CHECK(m.size() == 3);
  CHECK(m["kind"] == "w4a8");
  CHECK(m["note"] == "line\nbreak \"q\" \xC3\xA9");
  CHECK(m["empty"].empty());
}

void test_safetensors_valid() {
  const std::vector<std::pair<std::string, std::string>> meta = {
      {"kind", "w4a8"}, {"note", "line\nbreak \"q\" \xC3\xA9"}, {"empty", ""}};
  const std::string img = build(all_dtype_specs(), meta);
  const std::string p = tmp_path("all.safetensors");
  write_file(p, img);
  {
    SafetensorsFile f = SafetensorsFile::open(p);
    CHECK(f.mapped());
    CHECK(f.path() == p);
    CHECK(f.file_size() == img.size());
    check_all_dtypes(f, "mmap");
    // Aligned data section: no copies.
    CHECK(!f.typed<double>("f64", DType::F64).copied());
    // Moving keeps TensorInfo pointers and data valid.
    const TensorInfo* t = f.find("f64");
    SafetensorsFile g = std::move(f);
    CHECK(g.find("f64") == t);
    CHECK(std::memcmp(g.data(*t), all_dtype_specs()[0].bytes.data(), 24) == 0);
    CHECK(f.tensors().empty() && f.find("f64") == nullptr);
    expect_throw<std::invalid_argument>("data() of another file's tensor", "does not belong", [&] { (void)f.data(*t); });
  }
  {
    SafetensorsOptions o;
    o.use_mmap = false;
    SafetensorsFile f = SafetensorsFile::open(p, o);
    CHECK(!f.mapped());
    check_all_dtypes(f, "read");
    o.max_read_bytes = 100;
    expect_throw<FormatError>("read limit", "over the read limit of 100", [&] { (void)SafetensorsFile::open(p, o); });
  }
  {
    SafetensorsFile f = SafetensorsFile::from_bytes(vec(img), "mem");
    check_all_dtypes(f, "bytes");
  }
  // Misaligned data section: typed() copies, values unchanged.
  for (std::size_t mis = 1; mis < 8; ++mis) {
    const std::string q = tmp_path("mis" + std::to_string(mis) + ".safetensors");
    write_file(q, build(all_dtype_specs(), meta, mis));
    SafetensorsFile f = SafetensorsFile::open(q);
    check_all_dtypes(f, "misaligned " + std::to_string(mis));
    auto v = f.typed<double>("f64", DType::F64);
    CHECK(v.copied());
    CHECK(reinterpret_cast<std::uintptr_t>(v.data()) % alignof(double) == 0);
    auto v2 = std::move(v);  // the copy moves with the view
    CHECK(v2[2] == 1e300);
  }
  // A header with no tensors and no data, and one with an empty __metadata__ / null metadata.
  {
    SafetensorsFile f = SafetensorsFile::from_bytes(vec(image("{}", "")), "empty");
    CHECK(f.tensors().empty() && f.metadata().empty() && f.data_size() == 0);
    SafetensorsFile g = SafetensorsFile::from_bytes(vec(image("{\"__metadata__\":null}  ", "")), "nullmeta");
    CHECK(g.metadata().empty());
    // Unknown keys in a tensor entry are ignored, as the reference does.
    SafetensorsFile h = SafetensorsFile::from_bytes(
        vec(image("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":[1,{}]}}", "x")), "extra");
    CHECK(h.find("a") != nullptr && h.data(*h.find("a"))[0] == 'x');
    // Only zero-size tensors.
    SafetensorsFile z = SafetensorsFile::from_bytes(
        vec(image("{\"a\":{\"dtype\":\"F64\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}",
                  "")),
        "zeros");
    CHECK(z.tensors().size() == 2 && z.get("a").nbytes == 0);
  }
}

// ---------------------------------------------------------------------------------------
// Safetensors: malformed files

std::string tensor_json(const std::string& name, const std::string& dtype, const std::string& shape,
                        const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":" + dtype + ",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
}

void test_safetensors_malformed() {
  struct Case {
    const char* what;
    std::string bytes;
    std::string expect;
  };
  const std::string ok_a = tensor_json("a", "\"F32\"", "[2]", "[0,8]");
  const std::string data8(8, '\0');
  std::vector<Case> cases = {
      {"empty file", "", "too short for the 8-byte header length"},
      {"truncated length", std::string("\x02\x00\x00", 3), "3 bytes, too short"},
      {"length > file", le64(100) + std::string(50, ' '), "header length 100 exceeds the file size"},
      {"length > limit", le64(200000000) + "{}", "exceeds the limit of 100000000"},
      {"length 2^64-1", le64(~std::uint64_t{0}) + "{}", "exceeds the limit"},
      {"truncated header JSON", image("{\"a\":{\"dtype\":\"F32\"", ""), "header JSON: offset"},
      {"zero-length header", image("", ""), "header JSON: offset 0: empty input"},
      {"bad JSON", image("{\"a\" 1}", ""), "expected ':'"},
      {"header not object", image("[1]", ""), "header is a JSON array, expected an object"},
      {"duplicate tensor", image("{" + ok_a + "," + ok_a + "}", data8), "duplicate key \"a\""},
      {"overlapping tensors",
       image("{" + tensor_json("a", "\"F32\"", "[2]", "[0,8]") + "," + tensor_json("b", "\"F32\"", "[1]", "[4,8]") + "}",
             data8),
       "overlaps tensor \"a\""},
      {"gap between tensors",
       image("{" + tensor_json("a", "\"U8\"", "[2]", "[0,2]") + "," + tensor_json("b", "\"U8\"", "[2]", "[4,6]") + "}",
             std::string(6, 'x')),
       "tensor \"b\": data_offsets [4, 6]: gap of 2 bytes"},
      {"first tensor not at 0", image("{" + tensor_json("a", "\"U8\"", "[2]", "[2,4]") + "}", std::string(4, 'x')),
       "must begin at 0"},
      {"trailing bytes", image("{" + ok_a + "}", data8 + "xx"), "2 trailing bytes"},
      {"no tensors but data", image("{}", "abc"), "declares no tensors but 3 bytes"},
      {"shape x size mismatch", image("{" + tensor_json("a", "\"F32\"", "[3]", "[0,8]") + "}", data8),
       "tensor \"a\": data_offsets [0, 8] hold 8 bytes but shape [3] of F32 needs 12"},
      {"offsets out of range", image("{" + tensor_json("a", "\"F32\"", "[4]", "[0,16]") + "}", data8),
       "run past the end of the 8-byte data section"},
      {"begin after end", image("{" + tensor_json("a", "\"F32\"", "[2]", "[8,0]") + "}", data8), "begin is after end"},
      {"offset beyond uint64", image("{" + tensor_json("a", "\"F32\"", "[2]", "[0,18446744073709551616]") + "}", data8),
       "data_offsets: integer 18446744073709551616 is out of the uint64 range"},
      {"negative offset", image("{" + tensor_json("a", "\"F32\"", "[2]", "[-8,0]") + "}", data8), "negative"},
      {"offsets not two", image("{" + tensor_json("a", "\"F32\"", "[2]", "[0]") + "}", data8), "array of two integers"},
      {"offsets not array", image("{" + tensor_json("a", "\"F32\"", "[2]", "\"0-8\"") + "}", data8), "array of two integers"},
      {"huge shape overflowing int64",
       image("{" + tensor_json("a", "\"U8\"", "[4294967296,4294967296]", "[0,8]") + "}", data8),
       "overflows 63 bits"},
      {"shape x itemsize overflow", image("{" + tensor_json("a", "\"F64\"", "[2305843009213693952]", "[0,8]") + "}", data8),
       "shape [2305843009213693952] of F64 overflows"},
      {"overflow hidden by a zero", image("{" + tensor_json("a", "\"U8\"", "[4294967296,4294967296,0]", "[0,0]") + "}", ""),
       "overflows"},
      {"dimension beyond int64", image("{" + tensor_json("a", "\"U8\"", "[9223372036854775808]", "[0,8]") + "}", data8),
       "shape: integer 9223372036854775808 is out of the int64 range"},
      {"negative dimension", image("{" + tensor_json("a", "\"F32\"", "[-2]", "[0,8]") + "}", data8),
       "negative dimension -2"},
      {"fractional dimension", image("{" + tensor_json("a", "\"F32\"", "[2.0]", "[0,8]") + "}", data8),
       "shape: expected an integer, found 2.0"},
      {"dimension is a string", image("{" + tensor_json("a", "\"F32\"", "[\"2\"]", "[0,8]") + "}", data8),
       "expected an integer, found string"},
      {"shape not array", image("{" + tensor_json("a", "\"F32\"", "2", "[0,8]") + "}", data8), "shape is a JSON number"},
      {"rank 65", image("{" + tensor_json("a", "\"U8\"", "[" + [] { std::string s = "1"; for (int i = 0; i < 64; ++i) s += ",1"; return s; }() + "]", "[0,1]") + "}", "x"),
       "65 dimensions"},
      {"unknown dtype", image("{" + tensor_json("a", "\"F128\"", "[2]", "[0,8]") + "}", data8), "unsupported dtype \"F128\""},
      {"lowercase dtype", image("{" + tensor_json("a", "\"f32\"", "[2]", "[0,8]") + "}", data8), "unsupported dtype \"f32\""},
      {"dtype not string", image("{" + tensor_json("a", "4", "[2]", "[0,8]") + "}", data8), "dtype is a JSON number"},
      {"missing dtype", image("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", data8), "tensor \"a\": missing \"dtype\""},
      {"missing shape", image("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", data8), "missing \"shape\""},
      {"missing data_offsets", image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", data8), "missing \"data_offsets\""},
      {"entry not object", image("{\"a\":[1,2]}", ""), "tensor \"a\": entry is a JSON array"},
      {"empty name", image("{" + tensor_json("", "\"F32\"", "[2]", "[0,8]") + "}", data8), "empty tensor name"},
      {"metadata non-string", image("{\"__metadata__\":{\"k\":1}}", ""), "__metadata__ value for key \"k\" is a JSON number"},
      {"metadata nested", image("{\"__metadata__\":{\"k\":{}}}", ""), "expected a string"},
      {"metadata not object", image("{\"__metadata__\":[\"k\"]}", ""), "__metadata__ is a JSON array"},
      {"nested depth 100", image("{\"__metadata__\":" + std::string(100, '[') + std::string(100, ']') + "}", ""),
       "nesting deeper than 64"},
      {"invalid UTF-8 in name", image("{\"a\xFF\":{}}", ""), "invalid UTF-8"},
      {"invalid UTF-8 outside string", image("{\xC3\xA9:1}", ""), "expected a string key"},
      {"lone surrogate in name", image("{\"\\ud800\":{}}", ""), "lone high surrogate"},
      {"trailing garbage", image("{}x", ""), "after the JSON value"},
      {"NUL in header", image(std::string("{}\0", 3), ""), "after the JSON value"},
      {"number as header", image("12", ""), "header is a JSON number"},
  };
  // The hostile name appears escaped and cut in messages.
  cases.push_back({"escaped name in message",
                   image("{" + tensor_json("a\\nb\\u001b[31m", "\"F9\"", "[2]", "[0,8]") + "}", data8),
                   "tensor \"a\\nb\\u001b[31m\": unsupported dtype"});
  cases.push_back({"long name cut", image("{" + tensor_json(std::string(500, 'n'), "\"F9\"", "[2]", "[0,8]") + "}", data8),
                   "tensor \"" + std::string(200, 'n') + "\"...: unsupported dtype"});
  {
    SafetensorsOptions small;
    small.max_json_elements = 10;  // exercised below with from_bytes
    expect_throw<FormatError>("element limit", "mem: header JSON: offset",
                              [&] { (void)SafetensorsFile::from_bytes(vec(image("[1,2,3,4,5,6,7,8,9,10,11]", "")), "mem", small); });
    small.max_header_bytes = 4;
    expect_throw<FormatError>("custom header limit", "header length 5 exceeds the limit of 4",
                              [&] { (void)SafetensorsFile::from_bytes(vec(image("{}   ", "")), "mem", small); });
  }

  int n = 0;
  for (const Case& c : cases) {
    ++n;
    // From memory, from a mapped file and from a read file: the same message after the path.
    expect_throw<FormatError>(std::string("bytes: ") + c.what, c.expect,
                              [&] { (void)SafetensorsFile::from_bytes(vec(c.bytes), "case.safetensors"); },
                              "case.safetensors: ");
    const std::string p = tmp_path("bad" + std::to_string(n) + ".safetensors");
    write_file(p, c.bytes);
    expect_throw<FormatError>(std::string("mmap: ") + c.what, c.expect, [&] { (void)SafetensorsFile::open(p); },
                              p + ": ");
    SafetensorsOptions o;
    o.use_mmap = false;
    expect_throw<FormatError>(std::string("read: ") + c.what, c.expect, [&] { (void)SafetensorsFile::open(p, o); },
                              p + ": ");
  }
  std::printf("safetensors: %d malformed files rejected\n", n);

  // Not a file.
  expect_throw<FormatError>("missing file", "cannot open: No such file", [] {
    (void)SafetensorsFile::open(tmp_path("does-not-exist.safetensors"));
  });
  expect_throw<FormatError>("directory", "not a regular file", [] { (void)SafetensorsFile::open(g_tmp); });
  expect_throw<FormatError>("device", "/dev/null: not a regular file", [] { (void)SafetensorsFile::open("/dev/null"); });
  {
    const std::string fifo = tmp_path("fifo");
    if (::mkfifo(fifo.c_str(), 0600) == 0) {
      g_created_files.push_back(fifo);
      expect_throw<FormatError>("fifo (must not block)", "not a regular file", [&] { (void)SafetensorsFile::open(fifo); });
      expect_throw<FormatError>("fifo small file", "not a regular file", [&] { (void)read_small_file(fifo, 100); });
    }
  }
}

// ---------------------------------------------------------------------------------------
// Checkpoints

void test_checkpoint() {
  float a[2] = {1.0f, 2.0f};
  std::int8_t b[3] = {-1, 0, 1};
  std::uint16_t h16[1] = {0x3C00};
  const Spec sa{"model.layers.0.w", "F32", {2}, bytes_of(a, sizeof a)};
  const Spec sb{"model.layers.1.w", "I8", {3}, bytes_of(b, sizeof b)};
  const Spec sc{"lm_head.weight", "F16", {1, 1}, bytes_of(h16, sizeof h16)};

  // Single file.
  {
    std::string d = make_dir("single");
    write_file(d + "/model.safetensors", build({sa, sb, sc}, {{"format", "pt"}}));
    SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(d);
    CHECK(!ck.sharded());
    CHECK(ck.shards().size() == 1);
    CHECK(ck.tensor_names() == std::vector<std::string>({"lm_head.weight", "model.layers.0.w", "model.layers.1.w"}));
    auto v = ck.typed<std::int8_t>("model.layers.1.w", DType::I8, {3});
    CHECK(v[0] == -1 && v[2] == 1);
    CHECK(ck.shards()[0].metadata().at("format") == "pt");
    CHECK(ck.find("x") == nullptr);
    // Trailing slash on the folder.
    SafetensorsCheckpoint ck2 = SafetensorsCheckpoint::open(d + "/");
    CHECK(ck2.find("lm_head.weight") != nullptr);
  }
  // Sharded.
  const std::string index_ok =
      R"({"metadata":{"total_size":15},"weight_map":{"model.layers.0.w":"model-00001-of-00002.safetensors",)"
      R"("lm_head.weight":"model-00001-of-00002.safetensors","model.layers.1.w":"model-00002-of-00002.safetensors"}})";
  {
    std::string d = make_dir("sharded");
    write_file(d + "/model-00001-of-00002.safetensors", build({sa, sc}, {}));
    write_file(d + "/model-00002-of-00002.safetensors", build({sb}, {{"layer", "1"}}));
    write_file(d + "/model.safetensors.index.json", index_ok);
    SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(d);
    CHECK(ck.sharded());
    CHECK(ck.shards().size() == 2);
    const TensorInfo* t0 = ck.find("model.layers.0.w");
    const TensorInfo* t1 = ck.find("model.layers.1.w");
    CHECK(t0 != nullptr && t1 != nullptr);
    CHECK(std::memcmp(ck.data(*t0), a, sizeof a) == 0);
    CHECK(std::memcmp(ck.data(*t1), b, sizeof b) == 0);
    CHECK(ck.file_of("model.layers.1.w").metadata().at("layer") == "1");
    auto h = ck.typed<std::uint16_t>("lm_head.weight", DType::F16, {1, 1});
    CHECK(h[0] == 0x3C00);
    expect_throw<FormatError>("checkpoint missing tensor", "tensor \"nope\": not found",
                              [&] { (void)ck.get("nope"); });
    expect_throw<FormatError>("checkpoint typed dtype", "dtype I8, expected U8",
                              [&] { (void)ck.typed<std::uint8_t>("model.layers.1.w", DType::U8, {3}); });
    TensorInfo fake = *t0;
    expect_throw<std::invalid_argument>("checkpoint data of a copy", "does not belong", [&] { (void)ck.data(fake); });
    SafetensorsCheckpoint moved = std::move(ck);
    CHECK(moved.data(*t0) != nullptr);
  }

  struct Case {
    const char* what;
    std::string index;                                 // empty: no index file
    std::vector<std::pair<std::string, std::string>> files;  // name → contents
    std::string expect;
  };
  const std::string s1 = build({sa, sc}, {});
  const std::string s2 = build({sb}, {});
  const std::vector<Case> cases = {
      {"index pointing to ../x", R"({"weight_map":{"model.layers.0.w":"../x.safetensors"}})", {},
       "tensor \"model.layers.0.w\": invalid shard name \"../x.safetensors\""},
      {"index with slash", R"({"weight_map":{"w":"sub/x.safetensors"}})", {}, "invalid shard name \"sub/x.safetensors\""},
      {"index absolute", R"({"weight_map":{"w":"/etc/passwd"}})", {}, "invalid shard name \"/etc/passwd\""},
      {"index dotdot", R"({"weight_map":{"w":".."}})", {}, "invalid shard name \"..\""},
      {"index backslash", R"({"weight_map":{"w":"..\\x"}})", {}, "invalid shard name"},
      {"index empty shard", R"({"weight_map":{"w":""}})", {}, "invalid shard name \"\""},
      {"index NUL", R"({"weight_map":{"w":"a\u0000b"}})", {}, "invalid shard name \"a\\u0000b\""},
      {"missing shard", index_ok, {{"model-00001-of-00002.safetensors", s1}},
       "tensor \"model.layers.1.w\": shard \"model-00002-of-00002.safetensors\" named in weight_map is missing"},
      {"tensor missing from its shard",
       R"({"weight_map":{"model.layers.0.w":"a.safetensors","lm_head.weight":"a.safetensors","ghost":"a.safetensors"}})",
       {{"a.safetensors", s1}},
       "tensor \"ghost\": not in shard \"a.safetensors\""},
      {"shard tensor not in index", R"({"weight_map":{"model.layers.0.w":"a.safetensors"}})", {{"a.safetensors", s1}},
       "a.safetensors: tensor \"lm_head.weight\": the shard holds the tensor but the index"},
      {"tensor in two shards",
       R"({"weight_map":{"model.layers.0.w":"a.safetensors","lm_head.weight":"a.safetensors","model.layers.1.w":"b.safetensors"}})",
       {{"a.safetensors", s1}, {"b.safetensors", build({sb, sa}, {})}},
       "b.safetensors: tensor \"model.layers.0.w\": the tensor is in two shards"},
      {"bad shard", R"({"weight_map":{"w":"a.safetensors"}})", {{"a.safetensors", image("{\"w\":1}", "")}},
       "a.safetensors: tensor \"w\": entry is a JSON number"},
      {"no weight_map", R"({"metadata":{}})", {}, "index has no \"weight_map\""},
      {"weight_map not object", R"({"weight_map":[]})", {}, "weight_map is a JSON array"},
      {"weight_map value not string", R"({"weight_map":{"w":1}})", {}, "tensor \"w\": weight_map value is a JSON number"},
      {"index duplicate key", R"({"weight_map":{"w":"a","w":"b"}})", {}, "index JSON: offset 23: duplicate key \"w\""},
      {"index bad JSON", R"({"weight_map":)", {}, "index JSON: offset"},
      {"index not object", "[]", {}, "index is a JSON array"},
      {"neither file", "", {}, "no model.safetensors or model.safetensors.index.json"},
      {"both files", R"({"weight_map":{}})", {{"model.safetensors", s2}}, "both model.safetensors and"},
  };
  int n = 0;
  for (const Case& c : cases) {
    std::string d = make_dir("ck" + std::to_string(++n));
    if (!c.index.empty()) write_file(d + "/model.safetensors.index.json", c.index);
    for (const auto& f : c.files) write_file(d + "/" + f.first, f.second);
    expect_throw<FormatError>(std::string("checkpoint: ") + c.what, c.expect, [&] { (void)SafetensorsCheckpoint::open(d); });
  }
  // The index must be a regular file.
  {
    std::string d = make_dir("ckdir");
    make_dir("ckdir/model.safetensors.index.json");
    expect_throw<FormatError>("index is a directory", "model.safetensors.index.json: not a regular file",
                              [&] { (void)SafetensorsCheckpoint::open(d); });
  }
  std::printf("checkpoint: %d malformed folders rejected\n", n + 1);
}

void test_read_small_file() {
  const std::string p = tmp_path("config.json");
  write_file(p, "{\"a\":1}");
  CHECK(read_small_file(p, 100) == "{\"a\":1}");
  CHECK(read_small_file(p, 7) == "{\"a\":1}");
  expect_throw<FormatError>("small file over limit", "config.json: file is 7 bytes, over the limit of 6",
                            [&] { (void)read_small_file(p, 6); });
  const std::string e = tmp_path("empty.json");
  write_file(e, "");
  CHECK(read_small_file(e, 0).empty());
  expect_throw<FormatError>("small file directory", "not a regular file", [] { (void)read_small_file(g_tmp, 100); });
  expect_throw<FormatError>("small file missing", "cannot open", [] { (void)read_small_file(tmp_path("nope.json"), 100); });
}

// The GEMM cases' manifest.json as docs/gemm-cases.md shows it, read as the CLI will.
void test_manifest() {
  const std::string p = tmp_path("manifest.json");
  write_file(p, R"({"version": 1, "cases": [{"name": "w4a8_m1_n8_k128_g128", "file": "w4a8_m1_n8_k128_g128.safetensors", "kind": "w4a8"},
                   {"name": "act_m2_k256", "file": "act_m2_k256.safetensors", "kind": "act"}]})");
  Json m = read_json_file(p, 1 << 20);
  CHECK(m.find("version")->as_int64() == 1);
  const Json* cases = m.find("cases");
  CHECK(cases != nullptr && cases->elems().size() == 2);
  CHECK(cases->elems()[0].find("file")->as_string() == "w4a8_m1_n8_k128_g128.safetensors");
  CHECK(cases->elems()[1].find("kind")->as_string() == "act");
  const std::string bad = tmp_path("bad-manifest.json");
  write_file(bad, "{\"version\": 1,}");
  expect_throw<FormatError>("manifest bad JSON", "bad-manifest.json: offset 14: unexpected '}'",
                            [&] { (void)read_json_file(bad, 1 << 20); });
  expect_throw<FormatError>("manifest too big", "over the limit of 4", [&] { (void)read_json_file(bad, 4); });
}

// Numbers are read and written with '.' whatever LC_NUMERIC says (only checked where a
// comma-decimal locale is installed).
void test_locale() {
  const char* names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8"};
  for (const char* n : names) {
    if (std::setlocale(LC_NUMERIC, n) == nullptr) continue;
    CHECK(parse_json("2.5").as_double() == 2.5);
    JsonWriter w;
    w.value(2.5);
    CHECK(w.str() == "2.5");
    std::setlocale(LC_NUMERIC, "C");
    std::printf("locale: checked under %s\n", n);
    return;
  }
}

// A cheap mutation sweep: every single-byte change and every truncation of a valid image must
// either open or throw FormatError (ASan/UBSan catch the rest).
void test_mutations() {
  const std::string img = build(all_dtype_specs(), {{"kind", "act"}});
  std::size_t ok = 0, rejected = 0;
  auto run = [&](const std::string& bytes) {
    try {
      SafetensorsFile f = SafetensorsFile::from_bytes(vec(bytes), "m");
      for (const TensorInfo& t : f.tensors()) {
        const std::uint8_t* p = f.data(t);
        volatile std::uint8_t sink = 0;
        for (std::uint64_t i = 0; i < t.nbytes; ++i) sink = static_cast<std::uint8_t>(sink ^ p[i]);
        (void)sink;
      }
      ++ok;
    } catch (const FormatError&) {
      ++rejected;
    }
  };
  const unsigned char subst[] = {0x00, '0', '9', '-', '"', '\\', '[', '{', '}', ',', 0xFF, 0x80, 'e'};
  for (std::size_t i = 0; i < img.size(); ++i) {
    for (unsigned char s : subst) {
      std::string m = img;
      m[i] = static_cast<char>(s);
      run(m);
    }
    run(img.substr(0, i));
  }
  CHECK(ok > 0 && rejected > 0);
  std::printf("mutations: %zu opened, %zu rejected\n", ok, rejected);
}

}  // namespace

int main() {
  char tmpl[] = "/tmp/odyssey-thf-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 2;
  }
  g_tmp = tmpl;
  try {
    test_json_basic();
    test_json_errors();
    test_json_writer();
    test_safetensors_valid();
    test_safetensors_malformed();
    test_checkpoint();
    test_read_small_file();
    test_manifest();
    test_locale();
    test_mutations();
  } catch (const std::exception& e) {
    ++g_failures;
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
  }
  cleanup();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
