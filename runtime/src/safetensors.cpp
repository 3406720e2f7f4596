// safetensors.cpp: the safetensors reader declared in safetensors.hpp (see there for the rules
// enforced and why). POSIX only (open/fstat/pread/mmap), like the CUDA runtime it serves.
// Every size read from a file is checked before it is used in arithmetic or to allocate:
// the header length against the limit and the file size, dimensions against overflow, the
// offsets against the data section; files are opened O_NONBLOCK and checked to be regular
// before any read, so a FIFO or a device named as a model cannot hang or flood the reader.
#include "safetensors.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.hpp"

namespace odyssey {

namespace {

constexpr std::size_t kMaxRank = 64;
constexpr std::size_t kMaxShards = 100000;
constexpr std::size_t kMaxIndexBytes = 100000000;  // as the Go reader: the header limit

struct DTypeRow {
  DType dtype;
  const char* name;
  std::size_t size;
};

constexpr DTypeRow kDTypes[] = {
    {DType::F64, "F64", 8},          {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},        {DType::I64, "I64", 8},         {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},          {DType::I8, "I8", 1},           {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},        {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};

std::string errno_text(int e) { return std::strerror(e); }

// An owned file descriptor.
struct Fd {
  int fd = -1;
  Fd() = default;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

[[noreturn]] void fail_path(const std::string& path, const std::string& msg) {
  throw FormatError(path + ": " + msg);
}

// Opens path for reading without blocking (a FIFO would block a plain open) and checks that
// it is a regular file; returns its size.
std::uint64_t open_regular(const std::string& path, Fd* fd) {
  fd->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd->fd < 0) fail_path(path, "cannot open: " + errno_text(errno));
  struct stat st;
  if (::fstat(fd->fd, &st) != 0) fail_path(path, "cannot stat: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) fail_path(path, "not a regular file");
  if (st.st_size < 0) fail_path(path, "negative file size");
  // Regular files ignore O_NONBLOCK, but clear it anyway so reads behave as usual.
  int flags = ::fcntl(fd->fd, F_GETFL);
  if (flags >= 0) (void)::fcntl(fd->fd, F_SETFL, flags & ~O_NONBLOCK);
  return static_cast<std::uint64_t>(st.st_size);
}

// Reads exactly n bytes at offset off; false when the file ends first.
bool pread_full(int fd, std::uint8_t* out, std::size_t n, std::uint64_t off, const std::string& path) {
  std::size_t done = 0;
  while (done < n) {
    std::size_t chunk = std::min<std::size_t>(n - done, std::size_t{1} << 30);
    ssize_t r = ::pread(fd, out + done, chunk, static_cast<off_t>(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      fail_path(path, "read error: " + errno_text(errno));
    }
    if (r == 0) return false;
    done += static_cast<std::size_t>(r);
  }
  return true;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string shape_text(const std::int64_t* shape, std::size_t rank) {
  return shape_text(std::vector<std::int64_t>(shape, shape + rank));
}

// Bytes of a tensor: false when a dimension is negative or the product exceeds 2^63-1 (a zero
// dimension makes the tensor empty, but the other dimensions must still not overflow, as in
// the Go reader).
bool byte_size(DType d, const std::vector<std::int64_t>& shape, std::uint64_t* out) {
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  std::int64_t n = static_cast<std::int64_t>(dtype_size(d));
  bool zero = false;
  for (std::int64_t s : shape) {
    if (s < 0) return false;
    if (s == 0) {
      zero = true;
      continue;
    }
    if (n > max / s) return false;
    n *= s;
  }
  *out = zero ? 0 : static_cast<std::uint64_t>(n);
  return true;
}

bool valid_shard_name(const std::string& s) {
  if (s.empty() || s == "." || s == "..") return false;
  if (s.find('/') != std::string::npos || s.find('\\') != std::string::npos) return false;
  if (s.find("..") != std::string::npos) return false;
  if (s.find('\0') != std::string::npos) return false;
  return true;
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

bool exists_entry(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

const char* dtype_name(DType d) {
  for (const auto& r : kDTypes) {
    if (r.dtype == d) return r.name;
  }
  return "?";
}

std::size_t dtype_size(DType d) {
  for (const auto& r : kDTypes) {
    if (r.dtype == d) return r.size;
  }
  return 1;
}

bool parse_dtype(std::string_view s, DType* out) {
  for (const auto& r : kDTypes) {
    if (s == r.name) {
      *out = r.dtype;
      return true;
    }
  }
  return false;
}

std::string quote_for_message(std::string_view s) {
  const std::size_t max = 200;
  std::string out;
  append_json_string(out, s.substr(0, max));
  if (s.size() > max) out += "...";
  return out;
}

// ---------------------------------------------------------------------------------------
// SafetensorsFile

void SafetensorsFile::fail(const std::string& message) const { fail_path(path_, message); }

void SafetensorsFile::fail_tensor(std::string_view name, const std::string& message) const {
  throw FormatError(path_ + ": tensor " + quote_for_message(name) + ": " + message);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept { *this = std::move(o); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    base_ = o.base_;
    map_len_ = o.map_len_;
    buffer_ = std::move(o.buffer_);  // moves the heap block: base_/data_ stay valid
    file_size_ = o.file_size_;
    header_len_ = o.header_len_;
    data_ = o.data_;
    data_size_ = o.data_size_;
    tensors_ = std::move(o.tensors_);  // moves the block: TensorInfo pointers stay valid
    by_name_ = std::move(o.by_name_);
    metadata_ = std::move(o.metadata_);
    o.base_ = nullptr;
    o.map_len_ = 0;
    o.data_ = nullptr;
    o.file_size_ = o.header_len_ = o.data_size_ = 0;
    o.tensors_.clear();
    o.by_name_.clear();
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { release(); }

void SafetensorsFile::release() noexcept {
  if (map_len_ != 0 && base_ != nullptr) {
    ::munmap(const_cast<std::uint8_t*>(base_), map_len_);
  }
  base_ = nullptr;
  map_len_ = 0;
  data_ = nullptr;
  buffer_.clear();
  buffer_.shrink_to_fit();
}

SafetensorsFile SafetensorsFile::open(const std::string& path, const SafetensorsOptions& opts) {
  SafetensorsFile f;
  f.path_ = path;
  Fd fd;
  const std::uint64_t size = open_regular(path, &fd);
  f.file_size_ = size;
  if (size < 8) {
    f.fail("file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  }
  std::uint8_t prefix[8];
  if (!pread_full(fd.fd, prefix, 8, 0, path)) f.fail("file shrank while reading the header length");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
  if (n > opts.max_header_bytes) {
    f.fail("header length " + std::to_string(n) + " exceeds the limit of " +
           std::to_string(opts.max_header_bytes) + " bytes");
  }
  if (n > size - 8) {
    f.fail("header length " + std::to_string(n) + " exceeds the file size (" + std::to_string(size - 8) +
           " bytes follow the length; truncated file?)");
  }
  if (size > std::numeric_limits<std::size_t>::max()) f.fail("file too large for this address space");

  if (opts.use_mmap) {
    void* p = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, fd.fd, 0);
    if (p != MAP_FAILED) {
      f.base_ = static_cast<const std::uint8_t*>(p);
      f.map_len_ = static_cast<std::size_t>(size);
    }
  }
  if (f.base_ == nullptr) {
    // Not mapped (disabled, or mmap refused): read the file, within the caller's bound.
    if (size > opts.max_read_bytes) {
      f.fail("file is " + std::to_string(size) + " bytes, over the read limit of " +
             std::to_string(opts.max_read_bytes));
    }
    try {
      f.buffer_.resize(static_cast<std::size_t>(size));
    } catch (const std::bad_alloc&) {
      f.fail("cannot allocate " + std::to_string(size) + " bytes to read the file");
    } catch (const std::length_error&) {
      f.fail("cannot allocate " + std::to_string(size) + " bytes to read the file");
    }
    if (!pread_full(fd.fd, f.buffer_.data(), f.buffer_.size(), 0, path)) {
      f.fail("file shrank while reading");
    }
    f.base_ = f.buffer_.data();
  }
  f.header_len_ = n;
  f.load_header(opts);
  return f;
}

SafetensorsFile SafetensorsFile::from_bytes(std::vector<std::uint8_t> bytes, const std::string& name,
                                            const SafetensorsOptions& opts) {
  SafetensorsFile f;
  f.path_ = name;
  f.buffer_ = std::move(bytes);
  const std::uint64_t size = f.buffer_.size();
  f.file_size_ = size;
  if (size < 8) {
    f.fail("file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  }
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | f.buffer_[static_cast<std::size_t>(i)];
  if (n > opts.max_header_bytes) {
    f.fail("header length " + std::to_string(n) + " exceeds the limit of " +
           std::to_string(opts.max_header_bytes) + " bytes");
  }
  if (n > size - 8) {
    f.fail("header length " + std::to_string(n) + " exceeds the file size (" + std::to_string(size - 8) +
           " bytes follow the length; truncated file?)");
  }
  f.base_ = f.buffer_.data();
  f.header_len_ = n;
  f.load_header(opts);
  return f;
}

void SafetensorsFile::load_header(const SafetensorsOptions& opts) {
  // Caller checked 8 + header_len_ <= file_size_.
  data_ = base_ + 8 + header_len_;
  data_size_ = file_size_ - 8 - header_len_;
  std::string_view text(reinterpret_cast<const char*>(base_ + 8), static_cast<std::size_t>(header_len_));

  JsonLimits lim;
  lim.max_input_bytes = text.size();
  lim.max_depth = 64;
  lim.max_elements = opts.max_json_elements;
  Json root;
  try {
    root = parse_json(text, lim);
  } catch (const JsonError& e) {
    fail(std::string("header JSON: ") + e.what());
  }
  if (!root.is_object()) {
    fail(std::string("header is a JSON ") + root.type_name() + ", expected an object");
  }

  std::vector<TensorInfo> tensors;
  tensors.reserve(root.items().size());
  for (const auto& member : root.items()) {
    const std::string& name = member.first;
    const Json& v = member.second;
    if (name == "__metadata__") {
      if (v.is_null()) continue;
      if (!v.is_object()) {
        fail(std::string("__metadata__ is a JSON ") + v.type_name() + ", expected an object of strings");
      }
      for (const auto& kv : v.items()) {
        if (!kv.second.is_string()) {
          fail("__metadata__ value for key " + quote_for_message(kv.first) + " is a JSON " +
               kv.second.type_name() + ", expected a string");
        }
        metadata_.emplace(kv.first, kv.second.as_string());
      }
      continue;
    }
    if (name.empty()) fail_tensor(name, "empty tensor name");
    if (!v.is_object()) {
      fail_tensor(name, std::string("entry is a JSON ") + v.type_name() + ", expected an object");
    }
    TensorInfo t;
    t.name = name;

    const Json* dt = v.find("dtype");
    if (dt == nullptr) fail_tensor(name, "missing \"dtype\"");
    if (!dt->is_string()) fail_tensor(name, std::string("dtype is a JSON ") + dt->type_name() + ", expected a string");
    if (!parse_dtype(dt->as_string(), &t.dtype)) {
      fail_tensor(name, "unsupported dtype " + quote_for_message(dt->as_string()));
    }

    const Json* sh = v.find("shape");
    if (sh == nullptr) fail_tensor(name, "missing \"shape\"");
    if (!sh->is_array()) fail_tensor(name, std::string("shape is a JSON ") + sh->type_name() + ", expected an array");
    if (sh->elems().size() > kMaxRank) {
      fail_tensor(name, "shape has " + std::to_string(sh->elems().size()) + " dimensions, more than " +
                            std::to_string(kMaxRank));
    }
    for (const Json& d : sh->elems()) {
      std::int64_t x;
      try {
        x = d.as_int64();
      } catch (const JsonError& e) {
        fail_tensor(name, "shape: " + e.message());
      }
      if (x < 0) fail_tensor(name, "shape has a negative dimension " + std::to_string(x));
      t.shape.push_back(x);
    }

    const Json* off = v.find("data_offsets");
    if (off == nullptr) fail_tensor(name, "missing \"data_offsets\"");
    if (!off->is_array() || off->elems().size() != 2) {
      fail_tensor(name, "data_offsets must be an array of two integers [begin, end]");
    }
    std::uint64_t begin, end;
    try {
      begin = off->elems()[0].as_uint64();
      end = off->elems()[1].as_uint64();
    } catch (const JsonError& e) {
      fail_tensor(name, "data_offsets: " + e.message());
    }
    const std::string offs = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "]";
    if (begin > end) fail_tensor(name, offs + ": begin is after end");
    if (end > data_size_) {
      fail_tensor(name, offs + " run past the end of the " + std::to_string(data_size_) +
                            "-byte data section (truncated file?)");
    }
    std::uint64_t need = 0;
    if (!byte_size(t.dtype, t.shape, &need)) {
      fail_tensor(name, "shape " + shape_text(t.shape) + " of " + dtype_name(t.dtype) + " overflows 63 bits of bytes");
    }
    if (need != end - begin) {
      fail_tensor(name, offs + " hold " + std::to_string(end - begin) + " bytes but shape " + shape_text(t.shape) +
                            " of " + dtype_name(t.dtype) + " needs " + std::to_string(need) +
                            " (does not match)");
    }
    t.offset = begin;
    t.nbytes = end - begin;
    tensors.push_back(std::move(t));
  }

  // The tensors sorted by offset must tile the data section: no overlap (aliasing), no gap
  // (hidden data) and no trailing bytes (a truncated header or appended payload).
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    if (a.offset != b.offset) return a.offset < b.offset;
    if (a.nbytes != b.nbytes) return a.nbytes < b.nbytes;
    return a.name < b.name;
  });
  std::uint64_t pos = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    const std::string offs =
        "data_offsets [" + std::to_string(t.offset) + ", " + std::to_string(t.offset + t.nbytes) + "]";
    if (t.offset > pos) {
      if (i == 0) {
        fail_tensor(t.name, offs + ": the first tensor must begin at 0 (" + std::to_string(t.offset) + " unused bytes)");
      }
      fail_tensor(t.name, offs + ": gap of " + std::to_string(t.offset - pos) + " bytes after tensor " +
                              quote_for_message(tensors[i - 1].name));
    }
    if (t.offset < pos) {
      fail_tensor(t.name, offs + " overlaps tensor " + quote_for_message(tensors[i - 1].name) +
                              ", which ends at " + std::to_string(pos));
    }
    pos = t.offset + t.nbytes;
  }
  if (pos != data_size_) {
    if (tensors.empty()) {
      fail("header declares no tensors but " + std::to_string(data_size_) + " bytes of data follow it");
    }
    fail("tensors cover " + std::to_string(pos) + " bytes of the " + std::to_string(data_size_) +
         "-byte data section: " + std::to_string(data_size_ - pos) + " trailing bytes");
  }

  tensors_ = std::move(tensors);
  by_name_.resize(tensors_.size());
  for (std::size_t i = 0; i < by_name_.size(); ++i) by_name_[i] = i;
  std::sort(by_name_.begin(), by_name_.end(),
            [&](std::size_t a, std::size_t b) { return tensors_[a].name < tensors_[b].name; });
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                             [&](std::size_t i, std::string_view n) { return std::string_view(tensors_[i].name) < n; });
  if (it == by_name_.end() || tensors_[*it].name != name) return nullptr;
  return &tensors_[*it];
}

const TensorInfo& SafetensorsFile::get(std::string_view name) const {
  const TensorInfo* t = find(name);
  if (t == nullptr) fail_tensor(name, "not found");
  return *t;
}

const std::uint8_t* SafetensorsFile::data(const TensorInfo& t) const {
  if (tensors_.empty() || &t < tensors_.data() || &t >= tensors_.data() + tensors_.size()) {
    throw std::invalid_argument("SafetensorsFile::data: tensor " + quote_for_message(t.name) +
                                " does not belong to " + path_);
  }
  return data_ + t.offset;  // offset + nbytes <= data_size_ was checked on open
}

const TensorInfo& SafetensorsFile::check_typed(std::string_view name, DType expect, const std::int64_t* shape,
                                               std::size_t rank, bool check_shape, std::size_t elem_size) const {
  if (elem_size != dtype_size(expect)) {
    throw std::invalid_argument("typed<T>(" + quote_for_message(name) + "): sizeof(T) = " +
                                std::to_string(elem_size) + " but " + dtype_name(expect) + " has " +
                                std::to_string(dtype_size(expect)) + "-byte elements");
  }
  const TensorInfo& t = get(name);
  if (t.dtype != expect) {
    fail_tensor(name, std::string("dtype ") + dtype_name(t.dtype) + ", expected " + dtype_name(expect));
  }
  if (check_shape) {
    bool ok = t.shape.size() == rank;
    for (std::size_t i = 0; ok && i < rank; ++i) {
      if (shape[i] != -1 && shape[i] != t.shape[i]) ok = false;
    }
    if (!ok) {
      fail_tensor(name, "shape " + shape_text(t.shape) + ", expected " + shape_text(shape, rank) +
                            " (-1: any size)");
    }
  }
  if (t.nbytes > std::numeric_limits<std::size_t>::max()) fail_tensor(name, "too large for this address space");
  return t;
}

// ---------------------------------------------------------------------------------------
// SafetensorsCheckpoint

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& dir, const SafetensorsOptions& opts) {
  SafetensorsCheckpoint c;
  c.dir_ = dir;
  const std::string single = join_path(dir, "model.safetensors");
  const std::string index = join_path(dir, "model.safetensors.index.json");
  const bool have_single = exists_entry(single);
  const bool have_index = exists_entry(index);
  if (have_single && have_index) {
    fail_path(dir, "both model.safetensors and model.safetensors.index.json exist; which one is the model is ambiguous");
  }
  if (!have_single && !have_index) {
    fail_path(dir, "no model.safetensors or model.safetensors.index.json");
  }

  if (have_single) {
    c.shards_.push_back(SafetensorsFile::open(single, opts));
  } else {
    c.sharded_ = true;
    const std::string text = read_small_file(index, kMaxIndexBytes);
    Json root;
    try {
      JsonLimits lim;
      lim.max_input_bytes = text.size();
      lim.max_elements = opts.max_json_elements;
      root = parse_json(text, lim);
    } catch (const JsonError& e) {
      fail_path(index, std::string("index JSON: ") + e.what());
    }
    if (!root.is_object()) fail_path(index, std::string("index is a JSON ") + root.type_name() + ", expected an object");
    const Json* wm = root.find("weight_map");
    if (wm == nullptr) fail_path(index, "index has no \"weight_map\"");
    if (!wm->is_object()) fail_path(index, std::string("weight_map is a JSON ") + wm->type_name() + ", expected an object");

    // Shard file name → the tensors the index places there.
    std::map<std::string, std::vector<std::string>> by_shard;
    std::map<std::string_view, std::string_view> placed;  // tensor → shard, views into root
    for (const auto& m : wm->items()) {
      auto tensor_fail = [&](const std::string& msg) {
        throw FormatError(index + ": tensor " + quote_for_message(m.first) + ": " + msg);
      };
      if (m.first.empty()) tensor_fail("empty tensor name in weight_map");
      if (!m.second.is_string()) {
        tensor_fail(std::string("weight_map value is a JSON ") + m.second.type_name() + ", expected a shard file name");
      }
      const std::string& shard = m.second.as_string();
      if (!valid_shard_name(shard)) {
        tensor_fail("invalid shard name " + quote_for_message(shard) +
                    ": not a plain file name inside the index's folder");
      }
      by_shard[shard].push_back(m.first);
      placed.emplace(m.first, shard);
    }
    if (by_shard.size() > kMaxShards) {
      fail_path(index, "weight_map names " + std::to_string(by_shard.size()) + " shards, more than " +
                           std::to_string(kMaxShards));
    }
    c.shards_.reserve(by_shard.size());
    for (const auto& s : by_shard) {
      const std::string p = join_path(dir, s.first);
      if (!exists_entry(p)) {
        throw FormatError(index + ": tensor " + quote_for_message(s.second.front()) + ": shard " +
                          quote_for_message(s.first) + " named in weight_map is missing (" + p + ")");
      }
      c.shards_.push_back(SafetensorsFile::open(p, opts));  // FormatError names the shard
    }
    // Both directions: every weight_map entry is in its shard, every shard tensor is listed
    // in weight_map, for that shard.
    std::size_t i = 0;
    for (const auto& s : by_shard) {
      const SafetensorsFile& f = c.shards_[i++];
      for (const std::string& name : s.second) {
        if (f.find(name) == nullptr) {
          throw FormatError(index + ": tensor " + quote_for_message(name) + ": not in shard " +
                            quote_for_message(s.first) + ", where weight_map places it");
        }
      }
      for (const TensorInfo& t : f.tensors()) {
        auto where = placed.find(t.name);
        if (where == placed.end()) {
          f.fail_tensor(t.name, "the shard holds the tensor but the index " + index + " does not list it in weight_map");
        }
        if (where->second != s.first) {
          f.fail_tensor(t.name, "the tensor is in two shards: here and in " + quote_for_message(where->second) +
                                    ", where weight_map places it");
        }
      }
    }
  }

  for (std::size_t s = 0; s < c.shards_.size(); ++s) {
    for (const TensorInfo& t : c.shards_[s].tensors()) c.entries_.push_back(Entry{t.name, s, &t});
  }
  std::sort(c.entries_.begin(), c.entries_.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return c;
}

SafetensorsCheckpoint SafetensorsCheckpoint::open_file(const std::string& path, const SafetensorsOptions& opts) {
  SafetensorsCheckpoint c;
  c.dir_ = path;
  c.shards_.push_back(SafetensorsFile::open(path, opts));
  for (const TensorInfo& t : c.shards_[0].tensors()) c.entries_.push_back(Entry{t.name, 0, &t});
  std::sort(c.entries_.begin(), c.entries_.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return c;
}

const SafetensorsCheckpoint::Entry* SafetensorsCheckpoint::lookup(std::string_view name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const Entry& e, std::string_view n) { return std::string_view(e.name) < n; });
  if (it == entries_.end() || it->name != name) return nullptr;
  return &*it;
}

const TensorInfo* SafetensorsCheckpoint::find(std::string_view name) const {
  const Entry* e = lookup(name);
  return e ? e->info : nullptr;
}

const SafetensorsFile& SafetensorsCheckpoint::file_of(std::string_view name) const {
  const Entry* e = lookup(name);
  if (e == nullptr) fail_path(dir_, "tensor " + quote_for_message(name) + ": not found");
  return shards_[e->shard];
}

const TensorInfo& SafetensorsCheckpoint::get(std::string_view name) const {
  const Entry* e = lookup(name);
  if (e == nullptr) fail_path(dir_, "tensor " + quote_for_message(name) + ": not found");
  return *e->info;
}

const std::uint8_t* SafetensorsCheckpoint::data(const TensorInfo& t) const {
  const Entry* e = lookup(t.name);
  if (e == nullptr || e->info != &t) {
    throw std::invalid_argument("SafetensorsCheckpoint::data: tensor " + quote_for_message(t.name) +
                                " does not belong to " + dir_);
  }
  return shards_[e->shard].data(t);
}

std::vector<std::string> SafetensorsCheckpoint::tensor_names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const Entry& e : entries_) out.push_back(e.name);
  return out;
}

// ---------------------------------------------------------------------------------------

std::string read_small_file(const std::string& path, std::size_t max_bytes) {
  Fd fd;
  const std::uint64_t size = open_regular(path, &fd);
  if (size > max_bytes) {
    fail_path(path, "file is " + std::to_string(size) + " bytes, over the limit of " + std::to_string(max_bytes));
  }
  // Read up to max_bytes + 1 so that a file growing after fstat is still caught.
  std::string out;
  const std::size_t cap = max_bytes == std::numeric_limits<std::size_t>::max() ? max_bytes : max_bytes + 1;
  std::size_t want = static_cast<std::size_t>(size);
  out.resize(want);
  std::size_t done = 0;
  for (;;) {
    if (done == out.size()) {
      if (out.size() >= cap) break;
      out.resize(std::min(cap, out.size() + 4096));
    }
    ssize_t r = ::read(fd.fd, &out[done], out.size() - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail_path(path, "read error: " + errno_text(errno));
    }
    if (r == 0) break;
    done += static_cast<std::size_t>(r);
  }
  out.resize(done);
  if (done > max_bytes) fail_path(path, "file grew past the limit of " + std::to_string(max_bytes) + " bytes while reading");
  return out;
}

Json read_json_file(const std::string& path, std::size_t max_bytes) {
  const std::string text = read_small_file(path, max_bytes);
  JsonLimits lim;
  lim.max_input_bytes = text.size();
  try {
    return parse_json(text, lim);
  } catch (const JsonError& e) {
    fail_path(path, e.what());
  }
}

}  // namespace odyssey
