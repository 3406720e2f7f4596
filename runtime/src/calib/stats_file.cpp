// stats_file.cpp: see stats_file.hpp.
#include "calib/stats_file.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "safetensors.hpp"

namespace odyssey::calibgpu {

StatsFileWriter::StatsFileWriter(const std::string& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) throw std::runtime_error(path + ": " + std::strerror(errno));
}

StatsFileWriter::~StatsFileWriter() {
  if (f_) std::fclose(f_);
}

void StatsFileWriter::put(const void* p, std::size_t n) {
  if (n && std::fwrite(p, 1, n, f_) != n) throw std::runtime_error(path_ + ": write failed: " + std::strerror(errno));
}

// The host is little-endian (x86-64, aarch64), as the format: values are written as they are.
void StatsFileWriter::header(std::uint32_t layer, std::uint32_t n_inputs, std::uint32_t n_outputs, std::int64_t rows) {
  const std::uint32_t zero = 0;
  put("ODYCALS1", 8);
  put(&layer, 4);
  put(&n_inputs, 4);
  put(&n_outputs, 4);
  put(&zero, 4);
  put(&rows, 8);
}

void StatsFileWriter::input(std::uint32_t kind, std::uint32_t in, std::uint32_t xtx, double token_sum, float token_min,
                            const float* mn, const float* mx, const double* sumsq) {
  const std::uint32_t zero = 0;
  put(&kind, 4);
  put(&in, 4);
  put(&xtx, 4);
  put(&zero, 4);
  put(&token_sum, 8);
  put(&token_min, 4);
  put(&zero, 4);
  put(mn, 4 * (std::size_t)in);
  put(mx, 4 * (std::size_t)in);
  put(sumsq, 8 * (std::size_t)in);
}

void StatsFileWriter::xtx_f32(const float* v, std::size_t n) { put(v, 4 * n); }

void StatsFileWriter::xtx_f64(const double* v, std::size_t n) { put(v, 8 * n); }

void StatsFileWriter::output(std::uint32_t kind, double sumsq) {
  const std::uint32_t zero = 0;
  put(&kind, 4);
  put(&zero, 4);
  put(&sumsq, 8);
}

void StatsFileWriter::finish() {
  put("ODYCALE1", 8);
  std::FILE* f = f_;
  f_ = nullptr;
  if (std::fclose(f) != 0) throw std::runtime_error(path_ + ": close failed: " + std::strerror(errno));
}

namespace {
struct Cursor {
  const std::uint8_t* p;
  std::size_t left;
  const std::string& name;
  void take(void* dst, std::size_t n, const char* what) {
    if (n > left) throw FormatError(name + ": truncated in " + what);
    std::memcpy(dst, p, n);
    p += n;
    left -= n;
  }
  template <class T>
  T get(const char* what) {
    T v;
    take(&v, sizeof v, what);
    return v;
  }
};
}  // namespace

StatsFile parse_stats_file(const std::uint8_t* data, std::size_t size, std::uint32_t max_width, const std::string& name) {
  Cursor c{data, size, name};
  char magic[8];
  c.take(magic, 8, "the header");
  if (std::memcmp(magic, "ODYCALS1", 8) != 0) throw FormatError(name + ": not a statistics file");
  StatsFile f;
  f.layer = c.get<std::uint32_t>("the header");
  const auto n_in = c.get<std::uint32_t>("the header");
  const auto n_out = c.get<std::uint32_t>("the header");
  c.get<std::uint32_t>("the header");
  f.rows = c.get<std::int64_t>("the header");
  if (n_in > 4 || n_out > 7) throw FormatError(name + ": " + std::to_string(n_in) + " inputs, " + std::to_string(n_out) + " outputs");
  for (std::uint32_t i = 0; i < n_in; i++) {
    StatsInput s;
    s.kind = c.get<std::uint32_t>("an input record");
    s.in = c.get<std::uint32_t>("an input record");
    s.xtx = c.get<std::uint32_t>("an input record");
    c.get<std::uint32_t>("an input record");
    s.token_sum = c.get<double>("an input record");
    s.token_min = c.get<float>("an input record");
    c.get<std::uint32_t>("an input record");
    if (s.in == 0 || s.in > max_width || s.xtx > 2) throw FormatError(name + ": input of width " + std::to_string(s.in));
    s.mn.resize(s.in);
    s.mx.resize(s.in);
    s.sumsq.resize(s.in);
    c.take(s.mn.data(), 4 * (std::size_t)s.in, "min");
    c.take(s.mx.data(), 4 * (std::size_t)s.in, "max");
    c.take(s.sumsq.data(), 8 * (std::size_t)s.in, "sumsq");
    if (s.xtx) {
      const std::size_t n = (std::size_t)s.in * s.in, w = s.xtx == 1 ? 4 : 8;
      if (n * w > c.left) throw FormatError(name + ": truncated in XᵀX");
      s.xtx_values.resize(n);
      for (std::size_t j = 0; j < n; j++)
        s.xtx_values[j] = w == 4 ? (double)c.get<float>("XᵀX") : c.get<double>("XᵀX");
    }
    f.inputs.push_back(std::move(s));
  }
  for (std::uint32_t i = 0; i < n_out; i++) {
    const auto kind = c.get<std::uint32_t>("an output record");
    c.get<std::uint32_t>("an output record");
    f.outputs.emplace_back(kind, c.get<double>("an output record"));
  }
  c.take(magic, 8, "the trailer");
  if (std::memcmp(magic, "ODYCALE1", 8) != 0) throw FormatError(name + ": bad trailer");
  if (c.left) throw FormatError(name + ": " + std::to_string(c.left) + " bytes after the trailer");
  return f;
}

}  // namespace odyssey::calibgpu
