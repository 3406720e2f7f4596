// json.hpp: a small, strict JSON (RFC 8259) DOM parser and a compact JSON writer for the
// Odyssey CUDA runtime's host code.
//
// What it reads: safetensors headers, model.safetensors.index.json, the GEMM cases'
// manifest.json and config.json. All of these come from files the runtime did not write,
// so the parser treats its input as hostile:
//   - the input size is bounded by the caller (JsonLimits::max_input_bytes) before anything
//     is allocated; nesting is bounded (max_depth, default 64) so the recursive descent cannot
//     exhaust the stack; the number of values is bounded (max_elements) so a small file of
//     "[[],[],..." cannot make it allocate gigabytes of nodes;
//   - it is strict: no comments, no trailing commas, no byte order mark, no leading zeros,
//     no NaN/Infinity, whitespace only between tokens, nothing after the value; strings must
//     be valid UTF-8 (no overlong forms, no encoded surrogates, nothing above U+10FFFF), raw
//     control characters are refused, \uXXXX escapes are decoded to UTF-8 and surrogate
//     pairs combined (a lone surrogate is an error);
//   - duplicate object keys are an error (other parsers silently keep the last one, which
//     lets two tensors claim one name); object members keep their order in the source.
// Numbers keep their source text; as_int64/as_uint64 accept only integer syntax and check
// the range, as_double refuses a finite literal that overflows a double (1e400) and rounds
// underflow to a signed zero. Errors throw JsonError, whose what() is "offset N: message"
// (N the byte offset in the parsed text). find() is a linear scan: fine for the small
// objects looked up by key; iterate items() for large ones.
//
// JsonWriter produces compact JSON for the runtime CLI's one-object-per-command output:
// strings are escaped (quote, backslash, control characters; valid non-ASCII UTF-8 passes
// through, invalid bytes become U+FFFD so the output is always valid JSON), doubles are
// printed with "%.17g" (round-trips exactly) and NaN/Inf are written as null. Structural
// misuse (a value in an object without a key, a key in an array, unbalanced end_*, a second
// top-level value, reading an unfinished document) throws std::logic_error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace odyssey {

// Bounds on what parse_json accepts; exceeding one is a JsonError.
struct JsonLimits {
  std::size_t max_input_bytes = 64u << 20;  // length of the text
  int max_depth = 64;                        // nesting of arrays/objects
  std::size_t max_elements = 1u << 20;       // values of any kind (members, elements, scalars)
};

// A parse or access error. what() is "offset N: message".
class JsonError : public std::runtime_error {
 public:
  JsonError(std::size_t offset, const std::string& message);
  std::size_t offset() const { return offset_; }
  const std::string& message() const { return message_; }

 private:
  std::size_t offset_;
  std::string message_;
};

// One parsed JSON value. Accessors of the wrong type throw JsonError naming the value's
// offset in the source and its actual type.
class Json {
 public:
  enum class Type : std::uint8_t { Null, Bool, Number, String, Array, Object };
  using Member = std::pair<std::string, Json>;

  Json() = default;  // null

  Type type() const { return type_; }
  const char* type_name() const;  // "null", "boolean", "number", "string", "array", "object"
  std::size_t offset() const { return offset_; }  // byte offset of the value in the source

  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }
  // A number written without fraction or exponent ("12", "-0"; not "12.0" or "1e3").
  bool is_integer() const;

  bool as_bool() const;
  const std::string& as_string() const;
  const std::string& number_text() const;  // the number exactly as written
  std::int64_t as_int64() const;           // integer syntax, within int64
  std::uint64_t as_uint64() const;         // integer syntax, within uint64 ("-0" is 0)
  double as_double() const;                // finite; overflow is an error, underflow gives ±0

  const std::vector<Json>& elems() const;    // array elements
  const std::vector<Member>& items() const;  // object members in source order
  std::size_t size() const;                  // elements or members; throws for scalars

  // The member named key, or nullptr when absent. Throws if this is not an object.
  const Json* find(std::string_view key) const;

 private:
  friend class JsonParser;
  [[noreturn]] void type_error(const char* wanted) const;

  Type type_ = Type::Null;
  bool bool_ = false;
  std::size_t offset_ = 0;
  std::string text_;  // string value, or the number's source text
  std::vector<Json> array_;
  std::vector<Member> object_;
};

// Parses text as one JSON value. Throws JsonError.
Json parse_json(std::string_view text, const JsonLimits& limits = JsonLimits{});

// True when s is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view s);

// Appends s to out as a JSON string literal (with quotes). Invalid UTF-8 bytes are written
// as \ufffd.
void append_json_string(std::string& out, std::string_view s);

// Writes one compact JSON document. Example:
//   JsonWriter w; w.begin_object().key("ok").value(true).key("n").value(3).end_object();
//   puts(w.str().c_str());   // {"ok":true,"n":3}
class JsonWriter {
 public:
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  JsonWriter& key(std::string_view k);

  JsonWriter& value(std::string_view s);
  JsonWriter& value(const char* s);  // nullptr writes null
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(bool b);
  JsonWriter& value(double d);  // "%.17g"; NaN and infinities are written as null
  JsonWriter& value(std::nullptr_t) { return null(); }
  template <class T, typename std::enable_if<std::is_integral<T>::value &&
                                                 !std::is_same<T, bool>::value,
                                             int>::type = 0>
  JsonWriter& value(T v) {
    if constexpr (std::is_signed<T>::value) {
      return value_i64(static_cast<std::int64_t>(v));
    } else {
      return value_u64(static_cast<std::uint64_t>(v));
    }
  }
  JsonWriter& null();

  // key(k) then value(v).
  template <class T>
  JsonWriter& field(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }

  bool done() const { return stack_.empty() && has_root_; }
  // The document; throws std::logic_error while it is unfinished.
  const std::string& str() const;

 private:
  struct Frame {
    bool object;
    bool have_key;  // object: a key was written and its value is pending
    std::size_t count;
  };
  JsonWriter& value_i64(std::int64_t v);
  JsonWriter& value_u64(std::uint64_t v);
  void before_value(const char* what);
  void raw(const std::string& s);

  std::string out_;
  std::vector<Frame> stack_;
  bool has_root_ = false;
};

}  // namespace odyssey
