// json.cpp: the strict JSON parser and compact writer declared in json.hpp. See there for the
// accepted grammar, the limits and why they exist. Implementation notes:
//   - recursive descent over a string_view; recursion depth is bounded by JsonLimits::max_depth
//     before descending, the value count by max_elements before allocating a node;
//   - duplicate keys are found once an object is complete by sorting its key indices, so an
//     object with n members costs O(n log n), not O(n^2), on hostile input;
//   - numbers are converted with strtod after replacing '.' by the current locale's decimal
//     point (the writer undoes the same for snprintf), so a program that calls setlocale
//     still reads and writes JSON correctly.
#include "json.hpp"

#include <algorithm>
#include <cerrno>
#include <clocale>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace odyssey {

namespace {

std::string make_what(std::size_t offset, const std::string& message) {
  return "offset " + std::to_string(offset) + ": " + message;
}

// Length of the well-formed UTF-8 sequence starting at p (n bytes available, n >= 1), or 0
// when it is not one (RFC 3629 table 3-7: no overlong forms, no surrogates, <= U+10FFFF).
std::size_t utf8_sequence_length(const unsigned char* p, std::size_t n) {
  unsigned char c = p[0];
  if (c < 0x80) return 1;
  std::size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;       // overlong
    if (c == 0xED) hi = 0x9F;       // surrogates U+D800..U+DFFF
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;       // overlong
    if (c == 0xF4) hi = 0x8F;       // above U+10FFFF
  } else {
    return 0;  // continuation byte, C0/C1 (overlong), F5..FF
  }
  if (n < len) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (std::size_t i = 2; i < len; ++i) {
    if (p[i] < 0x80 || p[i] > 0xBF) return 0;
  }
  return len;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// A character for an error message: printable ASCII as 'c', anything else as byte 0xNN.
std::string describe_char(unsigned char c) {
  char buf[32];
  if (c >= 0x20 && c < 0x7F) {
    std::snprintf(buf, sizeof buf, "'%c'", static_cast<char>(c));
  } else {
    std::snprintf(buf, sizeof buf, "byte 0x%02X", static_cast<unsigned>(c));
  }
  return buf;
}

const char* locale_decimal_point() {
  const std::lconv* lc = std::localeconv();
  if (lc == nullptr || lc->decimal_point == nullptr || lc->decimal_point[0] == '\0') return ".";
  return lc->decimal_point;
}

// Splits an integer-syntax number text into sign and magnitude; false when the magnitude
// exceeds uint64.
bool integer_magnitude(const std::string& t, bool* negative, std::uint64_t* magnitude) {
  std::size_t i = 0;
  *negative = false;
  if (i < t.size() && t[i] == '-') {
    *negative = true;
    ++i;
  }
  std::uint64_t m = 0;
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  for (; i < t.size(); ++i) {
    auto d = static_cast<std::uint64_t>(t[i] - '0');
    if (m > (max - d) / 10) return false;
    m = m * 10 + d;
  }
  *magnitude = m;
  return true;
}

}  // namespace

JsonError::JsonError(std::size_t offset, const std::string& message)
    : std::runtime_error(make_what(offset, message)), offset_(offset), message_(message) {}

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    std::size_t len = utf8_sequence_length(p + i, n - i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Json accessors

const char* Json::type_name() const {
  switch (type_) {
    case Type::Null: return "null";
    case Type::Bool: return "boolean";
    case Type::Number: return "number";
    case Type::String: return "string";
    case Type::Array: return "array";
    case Type::Object: return "object";
  }
  return "?";
}

void Json::type_error(const char* wanted) const {
  throw JsonError(offset_, std::string("expected ") + wanted + ", found " + type_name());
}

bool Json::is_integer() const {
  return type_ == Type::Number && text_.find_first_of(".eE") == std::string::npos;
}

bool Json::as_bool() const {
  if (type_ != Type::Bool) type_error("a boolean");
  return bool_;
}

const std::string& Json::as_string() const {
  if (type_ != Type::String) type_error("a string");
  return text_;
}

const std::string& Json::number_text() const {
  if (type_ != Type::Number) type_error("a number");
  return text_;
}

std::int64_t Json::as_int64() const {
  if (!is_integer()) {
    if (type_ != Type::Number) type_error("an integer");
    throw JsonError(offset_, "expected an integer, found " + text_);
  }
  bool neg;
  std::uint64_t mag;
  const std::uint64_t lim = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (!integer_magnitude(text_, &neg, &mag) || mag > lim + (neg ? 1 : 0)) {
    throw JsonError(offset_, "integer " + text_ + " is out of the int64 range");
  }
  if (!neg) return static_cast<std::int64_t>(mag);
  if (mag == lim + 1) return std::numeric_limits<std::int64_t>::min();
  return -static_cast<std::int64_t>(mag);
}

std::uint64_t Json::as_uint64() const {
  if (!is_integer()) {
    if (type_ != Type::Number) type_error("a non-negative integer");
    throw JsonError(offset_, "expected an integer, found " + text_);
  }
  bool neg;
  std::uint64_t mag;
  if (!integer_magnitude(text_, &neg, &mag)) {
    throw JsonError(offset_, "integer " + text_ + " is out of the uint64 range");
  }
  if (neg && mag != 0) throw JsonError(offset_, "integer " + text_ + " is negative");
  return mag;
}

double Json::as_double() const {
  if (type_ != Type::Number) type_error("a number");
  std::string t = text_;
  const char* dp = locale_decimal_point();
  if (std::strcmp(dp, ".") != 0) {
    std::size_t p = t.find('.');
    if (p != std::string::npos) t.replace(p, 1, dp);
  }
  errno = 0;
  char* end = nullptr;
  double d = std::strtod(t.c_str(), &end);
  int err = errno;
  if (end != t.c_str() + t.size()) {
    throw JsonError(offset_, "number " + text_ + " cannot be converted");  // not reached
  }
  if (err == ERANGE && std::isinf(d)) {
    throw JsonError(offset_, "number " + text_ + " is out of the double range");
  }
  // Underflow (ERANGE with a tiny or zero result) is rounding, not an error.
  return d;
}

const std::vector<Json>& Json::elems() const {
  if (type_ != Type::Array) type_error("an array");
  return array_;
}

const std::vector<Json::Member>& Json::items() const {
  if (type_ != Type::Object) type_error("an object");
  return object_;
}

std::size_t Json::size() const {
  if (type_ != Type::Array && type_ != Type::Object) type_error("an array or object");
  return type_ == Type::Array ? array_.size() : object_.size();
}

const Json* Json::find(std::string_view key) const {
  if (type_ != Type::Object) type_error("an object");
  for (const auto& m : object_) {
    if (m.first == key) return &m.second;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------
// Parser

class JsonParser {
 public:
  JsonParser(std::string_view text, const JsonLimits& limits) : s_(text), lim_(limits) {}

  Json parse() {
    if (s_.size() > lim_.max_input_bytes) {
      fail(0, "input is " + std::to_string(s_.size()) + " bytes, over the limit of " +
                  std::to_string(lim_.max_input_bytes));
    }
    Json root;
    skip_ws();
    if (pos_ == s_.size()) fail(pos_, s_.empty() ? "empty input" : "no value, only whitespace");
    parse_value(root, 0);
    skip_ws();
    if (pos_ != s_.size()) {
      fail(pos_, "unexpected " + describe_char(byte(pos_)) + " after the JSON value");
    }
    return root;
  }

 private:
  [[noreturn]] void fail(std::size_t at, const std::string& msg) const { throw JsonError(at, msg); }

  unsigned char byte(std::size_t i) const { return static_cast<unsigned char>(s_[i]); }

  void skip_ws() {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  void expect_more(const char* what) const {
    if (pos_ >= s_.size()) fail(pos_, std::string("unexpected end of input, expected ") + what);
  }

  void parse_value(Json& out, int depth) {
    expect_more("a value");
    if (++count_ > lim_.max_elements) {
      fail(pos_, "more than " + std::to_string(lim_.max_elements) + " values");
    }
    out.offset_ = pos_;
    char c = s_[pos_];
    switch (c) {
      case '{': parse_object(out, depth + 1); return;
      case '[': parse_array(out, depth + 1); return;
      case '"':
        out.type_ = Json::Type::String;
        parse_string(out.text_);
        return;
      case 't': literal("true", out, Json::Type::Bool, true); return;
      case 'f': literal("false", out, Json::Type::Bool, false); return;
      case 'n': literal("null", out, Json::Type::Null, false); return;
      default:
        if (c == '-' || (c >= '0' && c <= '9')) {
          parse_number(out);
          return;
        }
        fail(pos_, "unexpected " + describe_char(static_cast<unsigned char>(c)) + ", expected a value");
    }
  }

  void literal(const char* word, Json& out, Json::Type type, bool b) {
    std::size_t n = std::strlen(word);
    if (s_.substr(pos_, n) != std::string_view(word, n)) {
      fail(pos_, std::string("invalid literal, expected '") + word + "'");
    }
    pos_ += n;
    out.type_ = type;
    out.bool_ = b;
  }

  void enter(int depth) const {
    if (depth > lim_.max_depth) {
      fail(pos_, "nesting deeper than " + std::to_string(lim_.max_depth) + " levels");
    }
  }

  void parse_array(Json& out, int depth) {
    enter(depth);
    out.type_ = Json::Type::Array;
    ++pos_;  // '['
    skip_ws();
    expect_more("a value or ']'");
    if (s_[pos_] == ']') {
      ++pos_;
      return;
    }
    for (;;) {
      skip_ws();
      out.array_.emplace_back();
      parse_value(out.array_.back(), depth);
      skip_ws();
      expect_more("',' or ']'");
      char c = s_[pos_];
      if (c == ',') {
        ++pos_;
        continue;
      }
      if (c == ']') {
        ++pos_;
        return;
      }
      fail(pos_, "unexpected " + describe_char(static_cast<unsigned char>(c)) + " in array, expected ',' or ']'");
    }
  }

  void parse_object(Json& out, int depth) {
    enter(depth);
    out.type_ = Json::Type::Object;
    ++pos_;  // '{'
    skip_ws();
    expect_more("a key or '}'");
    if (s_[pos_] == '}') {
      ++pos_;
      return;
    }
    std::vector<std::size_t> key_offsets;
    for (;;) {
      skip_ws();
      expect_more("a key");
      if (s_[pos_] != '"') {
        fail(pos_, "unexpected " + describe_char(byte(pos_)) + ", expected a string key");
      }
      key_offsets.push_back(pos_);
      std::string key;
      parse_string(key);
      skip_ws();
      expect_more("':'");
      if (s_[pos_] != ':') fail(pos_, "unexpected " + describe_char(byte(pos_)) + ", expected ':' after the key");
      ++pos_;
      skip_ws();
      out.object_.emplace_back(std::move(key), Json());
      parse_value(out.object_.back().second, depth);
      skip_ws();
      expect_more("',' or '}'");
      char c = s_[pos_];
      if (c == ',') {
        ++pos_;
        continue;
      }
      if (c == '}') {
        ++pos_;
        break;
      }
      fail(pos_, "unexpected " + describe_char(static_cast<unsigned char>(c)) + " in object, expected ',' or '}'");
    }
    check_duplicates(out.object_, key_offsets);
  }

  void check_duplicates(const std::vector<Json::Member>& members,
                        const std::vector<std::size_t>& key_offsets) const {
    std::size_t n = members.size();
    if (n < 2) return;
    std::vector<std::size_t> idx(n);
    for (std::size_t i = 0; i < n; ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
      int c = members[a].first.compare(members[b].first);
      return c != 0 ? c < 0 : a < b;
    });
    // Report the duplicate that comes first in the source (after its original).
    std::size_t worst = n;
    for (std::size_t i = 1; i < n; ++i) {
      if (members[idx[i]].first == members[idx[i - 1]].first) worst = std::min(worst, idx[i]);
    }
    if (worst != n) {
      std::string shown;
      append_json_string(shown, members[worst].first.substr(0, 200));
      fail(key_offsets[worst], "duplicate key " + shown);
    }
  }

  unsigned hex4(std::size_t at) const {
    unsigned v = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      if (at + i >= s_.size()) fail(at, "truncated \\u escape");
      char c = s_[at + i];
      unsigned d;
      if (c >= '0' && c <= '9') {
        d = static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        d = static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        d = static_cast<unsigned>(c - 'A' + 10);
      } else {
        fail(at + i, "invalid hex digit " + describe_char(static_cast<unsigned char>(c)) + " in \\u escape");
      }
      v = v * 16 + d;
    }
    return v;
  }

  void parse_string(std::string& out) {
    std::size_t start = pos_;
    ++pos_;  // '"'
    const auto* p = reinterpret_cast<const unsigned char*>(s_.data());
    const std::size_t n = s_.size();
    for (;;) {
      // Copy a run of plain ASCII at once.
      std::size_t run = pos_;
      while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\') ++run;
      out.append(s_.data() + pos_, run - pos_);
      pos_ = run;
      if (pos_ >= n) fail(start, "unterminated string");
      unsigned char c = p[pos_];
      if (c == '"') {
        ++pos_;
        return;
      }
      if (c < 0x20) fail(pos_, "unescaped control character " + describe_char(c) + " in string");
      if (c >= 0x80) {
        std::size_t len = utf8_sequence_length(p + pos_, n - pos_);
        if (len == 0) fail(pos_, "invalid UTF-8 in string");
        out.append(s_.data() + pos_, len);
        pos_ += len;
        continue;
      }
      // Backslash escape.
      std::size_t esc = pos_;
      ++pos_;
      if (pos_ >= n) fail(start, "unterminated string");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4(pos_);
          pos_ += 4;
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail(esc, "lone low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (n - pos_ < 2 || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') {
              fail(esc, "lone high surrogate in \\u escape (no low surrogate follows)");
            }
            std::uint32_t lo = hex4(pos_ + 2);
            if (lo < 0xDC00 || lo > 0xDFFF) {
              fail(esc, "lone high surrogate in \\u escape (followed by a non-low-surrogate)");
            }
            pos_ += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          fail(esc, "invalid escape \\" + std::string(1, e >= 0x20 && e < 0x7F ? e : '?') + " in string");
      }
    }
  }

  void parse_number(Json& out) {
    std::size_t start = pos_;
    auto digit = [&](std::size_t i) { return i < s_.size() && s_[i] >= '0' && s_[i] <= '9'; };
    if (s_[pos_] == '-') ++pos_;
    if (!digit(pos_)) fail(pos_, "invalid number: expected a digit");
    if (s_[pos_] == '0') {
      ++pos_;
      if (digit(pos_)) fail(start, "invalid number: leading zero");
    } else {
      while (digit(pos_)) ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!digit(pos_)) fail(pos_, "invalid number: expected a digit after '.'");
      while (digit(pos_)) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digit(pos_)) fail(pos_, "invalid number: expected a digit in the exponent");
      while (digit(pos_)) ++pos_;
    }
    out.type_ = Json::Type::Number;
    out.text_.assign(s_.data() + start, pos_ - start);
  }

  std::string_view s_;
  const JsonLimits& lim_;
  std::size_t pos_ = 0;
  std::size_t count_ = 0;
};

Json parse_json(std::string_view text, const JsonLimits& limits) {
  JsonParser p(text, limits);
  return p.parse();
}

// ---------------------------------------------------------------------------------------
// Writer

void append_json_string(std::string& out, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  out += '"';
  std::size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c >= 0x80) {
      std::size_t len = utf8_sequence_length(p + i, n - i);
      if (len == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(s.data() + i, len);
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

void JsonWriter::before_value(const char* what) {
  if (stack_.empty()) {
    if (has_root_) throw std::logic_error(std::string("JsonWriter: ") + what + " after the top-level value");
    has_root_ = true;
    return;
  }
  Frame& f = stack_.back();
  if (f.object) {
    if (!f.have_key) throw std::logic_error(std::string("JsonWriter: ") + what + " in an object without a key");
    f.have_key = false;
  } else {
    if (f.count > 0) out_ += ',';
    ++f.count;
  }
}

void JsonWriter::raw(const std::string& s) { out_ += s; }

JsonWriter& JsonWriter::begin_object() {
  before_value("begin_object");
  stack_.push_back(Frame{true, false, 0});
  out_ += '{';
  return *this;
}

JsonWriter& JsonWriter::end_object() {
  if (stack_.empty() || !stack_.back().object) throw std::logic_error("JsonWriter: end_object without an open object");
  if (stack_.back().have_key) throw std::logic_error("JsonWriter: end_object after a key without a value");
  stack_.pop_back();
  out_ += '}';
  return *this;
}

JsonWriter& JsonWriter::begin_array() {
  before_value("begin_array");
  stack_.push_back(Frame{false, false, 0});
  out_ += '[';
  return *this;
}

JsonWriter& JsonWriter::end_array() {
  if (stack_.empty() || stack_.back().object) throw std::logic_error("JsonWriter: end_array without an open array");
  stack_.pop_back();
  out_ += ']';
  return *this;
}

JsonWriter& JsonWriter::key(std::string_view k) {
  if (stack_.empty() || !stack_.back().object) throw std::logic_error("JsonWriter: key outside an object");
  Frame& f = stack_.back();
  if (f.have_key) throw std::logic_error("JsonWriter: two keys without a value");
  if (f.count > 0) out_ += ',';
  ++f.count;
  append_json_string(out_, k);
  out_ += ':';
  f.have_key = true;
  return *this;
}

JsonWriter& JsonWriter::value(std::string_view s) {
  before_value("value");
  append_json_string(out_, s);
  return *this;
}

JsonWriter& JsonWriter::value(const char* s) {
  if (s == nullptr) return null();
  return value(std::string_view(s));
}

JsonWriter& JsonWriter::value(bool b) {
  before_value("value");
  out_ += b ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::value(double d) {
  before_value("value");
  if (!std::isfinite(d)) {
    out_ += "null";
    return *this;
  }
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%.17g", d);
  std::string s(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  const char* dp = locale_decimal_point();
  if (std::strcmp(dp, ".") != 0) {
    std::size_t p = s.find(dp);
    if (p != std::string::npos) s.replace(p, std::strlen(dp), ".");
  }
  raw(s);
  return *this;
}

JsonWriter& JsonWriter::value_i64(std::int64_t v) {
  before_value("value");
  raw(std::to_string(v));
  return *this;
}

JsonWriter& JsonWriter::value_u64(std::uint64_t v) {
  before_value("value");
  raw(std::to_string(v));
  return *this;
}

JsonWriter& JsonWriter::null() {
  before_value("null");
  out_ += "null";
  return *this;
}

const std::string& JsonWriter::str() const {
  if (!done()) throw std::logic_error("JsonWriter: the document is unfinished");
  return out_;
}

}  // namespace odyssey
