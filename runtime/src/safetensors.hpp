// safetensors.hpp: reads safetensors files (one file, or a folder holding model.safetensors or
// a sharded set described by model.safetensors.index.json) for the Odyssey CUDA runtime's
// host code: the GEMM test cases (docs/gemm-cases.md) and the quantized artifact
// (docs/artifact.md).
//
// Format: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name
// to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data section
// that follows the header) plus an optional "__metadata__" object of strings; tensors are
// little-endian and row-major.
//
// Every file is treated as hostile, and opening validates the whole header before returning,
// with the same rules as the Go reader (formats/safetensors) and the reference
// implementation, so a file one side accepts the other accepts too:
//   - the header length is checked against a limit (100,000,000 bytes, the reference's) and
//     against the file size before anything is allocated; the JSON is parsed by the strict
//     parser of json.hpp (depth, element count and UTF-8 checked, duplicate keys refused);
//   - dtype is one of F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL F8_E4M3 F8_E5M2; dimensions
//     are non-negative integers (at most 64 of them); shape product x item size is computed
//     with overflow checks (at most 2^63-1 bytes) and must equal end - begin;
//   - offsets lie inside the data section, and the tensors sorted by offset tile it exactly:
//     no overlap (two tensors aliasing), no gap and no trailing bytes (the reference rejects
//     both: hidden data, or a truncated header);
//   - "__metadata__" is null or an object of string values; unknown keys inside a tensor entry
//     are ignored (as the reference does, for newer writers); tensor names are non-empty.
// Errors throw FormatError, one line: "<path>: tensor \"name\": message" or "<path>: message"
// (names are JSON-escaped and truncated, so a hostile name cannot garble a terminal).
//
// Data is mapped read-only (mmap, PROT_READ, MAP_PRIVATE); where mmap fails (or
// SafetensorsOptions::use_mmap is false) the file is read into memory with a bounded read
// (at most max_read_bytes). Opening reads only the header; pages are touched on use. A file
// truncated by another process while mapped can still raise SIGBUS: that is the price of
// mmap, and files the runtime reads are not being written. Big-endian hosts are refused at
// compile time.
//
// typed<T>() returns a TensorView<T> after checking dtype, shape (-1 matches any size) and
// that sizeof(T) is the dtype's size; if the tensor's data is not aligned for T (possible:
// the data section starts at 8 + N), the view holds an aligned copy instead of a pointer
// into the file.
//
// SafetensorsCheckpoint opens a folder. With model.safetensors.index.json, shard names must
// be plain file names in that folder (no '/', '\\', "..", NUL), every shard must open, every
// tensor of weight_map must be in the shard it names, and every tensor of a shard must be
// listed there (a tensor in two shards is an error). A folder holding both model.safetensors
// and the index is ambiguous and refused.
//
// read_small_file reads config.json or manifest.json: regular files only, at most max_bytes;
// read_json_file also parses it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "json.hpp"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.hpp: safetensors data is little-endian; this reader assumes a little-endian host"
#endif

namespace odyssey {

enum class DType : std::uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2 };

const char* dtype_name(DType d);        // "F32", ...
std::size_t dtype_size(DType d);        // bytes per element
bool parse_dtype(std::string_view s, DType* out);  // false for anything not listed above

// A malformed input file. what() is "<path>: tensor \"name\": message" or "<path>: message".
class FormatError : public std::runtime_error {
 public:
  explicit FormatError(const std::string& what) : std::runtime_error(what) {}
};

// What the header says about one tensor.
struct TensorInfo {
  std::string name;
  DType dtype = DType::U8;
  std::vector<std::int64_t> shape;  // every entry >= 0; empty for a scalar
  std::uint64_t offset = 0;         // data_offsets[0]: byte offset inside the data section
  std::uint64_t nbytes = 0;         // data_offsets[1] - data_offsets[0] = numel * item size
  std::uint64_t numel() const { return nbytes / dtype_size(dtype); }
};

struct SafetensorsOptions {
  std::uint64_t max_header_bytes = 100000000;  // the reference implementation's limit
  std::size_t max_json_elements = 1u << 20;    // JSON values in one header (~100 bytes of memory each)
  bool use_mmap = true;                        // false: always the bounded read
  std::uint64_t max_read_bytes = ~std::uint64_t{0};  // file size limit for the read path
};

// Elements of one tensor: a pointer into the file, or an aligned copy when the file's bytes
// are misaligned for T. Movable; valid while the file it came from is open.
template <class T>
class TensorView {
 public:
  static_assert(std::is_trivially_copyable<T>::value, "TensorView<T>: T must be trivially copyable");
  TensorView() = default;
  const T* data() const { return copied_ ? copy_.data() : ptr_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const T& operator[](std::size_t i) const { return data()[i]; }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size_; }
  const TensorInfo& info() const { return *info_; }
  const std::vector<std::int64_t>& shape() const { return info_->shape; }
  bool copied() const { return copied_; }  // true when the data was misaligned and copied

 private:
  friend class SafetensorsFile;
  const TensorInfo* info_ = nullptr;
  const T* ptr_ = nullptr;
  std::size_t size_ = 0;
  bool copied_ = false;
  std::vector<T> copy_;
};

class SafetensorsFile {
 public:
  // Opens and validates path. Throws FormatError.
  static SafetensorsFile open(const std::string& path, const SafetensorsOptions& opts = SafetensorsOptions{});
  // Validates a file image held in memory (tests, fuzzing); name is used in messages.
  static SafetensorsFile from_bytes(std::vector<std::uint8_t> bytes, const std::string& name,
                                    const SafetensorsOptions& opts = SafetensorsOptions{});

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  bool mapped() const { return map_len_ != 0; }
  std::uint64_t file_size() const { return file_size_; }
  std::uint64_t data_size() const { return data_size_; }

  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by offset
  const TensorInfo* find(std::string_view name) const;                 // nullptr when absent
  const TensorInfo& get(std::string_view name) const;                  // FormatError when absent
  // The tensor's first byte (nbytes of them). t must come from this file (std::invalid_argument
  // otherwise). Not aligned beyond 1 in general; use typed() for element access.
  const std::uint8_t* data(const TensorInfo& t) const;
  std::map<std::string, std::string> metadata() const { return metadata_; }
  const std::map<std::string, std::string>& metadata_ref() const { return metadata_; }

  // The tensor name, checked to have dtype expect and shape expect_shape (an entry of -1
  // matches any size; the rank must match). sizeof(T) must equal dtype_size(expect)
  // (std::invalid_argument otherwise: a programming error). FormatError when the tensor is
  // missing or differs.
  template <class T>
  TensorView<T> typed(std::string_view name, DType expect, std::initializer_list<std::int64_t> expect_shape) const {
    return make_view<T>(check_typed(name, expect, expect_shape.begin(), expect_shape.size(), true, sizeof(T)));
  }
  template <class T>
  TensorView<T> typed(std::string_view name, DType expect, const std::vector<std::int64_t>& expect_shape) const {
    return make_view<T>(check_typed(name, expect, expect_shape.data(), expect_shape.size(), true, sizeof(T)));
  }
  // Any shape.
  template <class T>
  TensorView<T> typed(std::string_view name, DType expect) const {
    return make_view<T>(check_typed(name, expect, nullptr, 0, false, sizeof(T)));
  }

  // Throws FormatError "<path>: message" / "<path>: tensor \"name\": message".
  [[noreturn]] void fail(const std::string& message) const;
  [[noreturn]] void fail_tensor(std::string_view name, const std::string& message) const;

 private:
  SafetensorsFile() = default;
  void release() noexcept;
  void load_header(const SafetensorsOptions& opts);
  const TensorInfo& check_typed(std::string_view name, DType expect, const std::int64_t* shape,
                                std::size_t rank, bool check_shape, std::size_t elem_size) const;

  template <class T>
  TensorView<T> make_view(const TensorInfo& t) const {
    TensorView<T> v;
    v.info_ = &t;
    v.size_ = static_cast<std::size_t>(t.nbytes / sizeof(T));
    if (v.size_ == 0) return v;
    const std::uint8_t* p = data(t);
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) == 0) {
      v.ptr_ = reinterpret_cast<const T*>(p);
    } else {
      v.copy_.resize(v.size_);
      std::memcpy(static_cast<void*>(v.copy_.data()), p, v.size_ * sizeof(T));
      v.copied_ = true;
    }
    return v;
  }

  std::string path_;
  const std::uint8_t* base_ = nullptr;  // whole file image
  std::size_t map_len_ = 0;             // nonzero when base_ is an mmap
  std::vector<std::uint8_t> buffer_;    // the file image when read, not mapped
  std::uint64_t file_size_ = 0;
  std::uint64_t header_len_ = 0;
  const std::uint8_t* data_ = nullptr;  // base_ + 8 + header_len_
  std::uint64_t data_size_ = 0;
  std::vector<TensorInfo> tensors_;     // sorted by offset
  std::vector<std::size_t> by_name_;    // indices into tensors_, sorted by name
  std::map<std::string, std::string> metadata_;
};

class SafetensorsCheckpoint {
 public:
  // Opens dir/model.safetensors or dir/model.safetensors.index.json and its shards. Throws
  // FormatError.
  static SafetensorsCheckpoint open(const std::string& dir, const SafetensorsOptions& opts = SafetensorsOptions{});
  // Opens one safetensors file as a checkpoint of one shard (the calibration server's layer
  // file, docs/gpu-calibration.md); dir() is then the file's path. Throws FormatError.
  static SafetensorsCheckpoint open_file(const std::string& path, const SafetensorsOptions& opts = SafetensorsOptions{});

  const std::string& dir() const { return dir_; }
  bool sharded() const { return sharded_; }
  const std::vector<SafetensorsFile>& shards() const { return shards_; }  // sorted by file name

  const TensorInfo* find(std::string_view name) const;  // nullptr when absent
  const TensorInfo& get(std::string_view name) const;   // FormatError when absent
  const SafetensorsFile& file_of(std::string_view name) const;  // FormatError when absent
  const std::uint8_t* data(const TensorInfo& t) const;  // t from find()/get() of this checkpoint
  std::vector<std::string> tensor_names() const;        // sorted

  template <class T>
  TensorView<T> typed(std::string_view name, DType expect, std::initializer_list<std::int64_t> expect_shape) const {
    return file_of(name).typed<T>(name, expect, expect_shape);
  }
  template <class T>
  TensorView<T> typed(std::string_view name, DType expect, const std::vector<std::int64_t>& expect_shape) const {
    return file_of(name).typed<T>(name, expect, expect_shape);
  }
  template <class T>
  TensorView<T> typed(std::string_view name, DType expect) const {
    return file_of(name).typed<T>(name, expect);
  }

 private:
  struct Entry {
    std::string name;
    std::size_t shard;
    const TensorInfo* info;
  };
  const Entry* lookup(std::string_view name) const;

  std::string dir_;
  bool sharded_ = false;
  std::vector<SafetensorsFile> shards_;
  std::vector<Entry> entries_;  // sorted by name
};

// Reads a whole small file (config.json, manifest.json). Refuses anything that is not a
// regular file and files over max_bytes. Throws FormatError "<path>: message".
std::string read_small_file(const std::string& path, std::size_t max_bytes);

// read_small_file then parse_json; a JSON error becomes FormatError "<path>: offset N: message".
Json read_json_file(const std::string& path, std::size_t max_bytes);

// For messages: s as a JSON string literal, cut to 200 bytes ("..." appended when cut).
std::string quote_for_message(std::string_view s);

}  // namespace odyssey
